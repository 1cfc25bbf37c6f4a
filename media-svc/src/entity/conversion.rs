//! One row per item that needs converting to HLS: where its conversion stands. The files are
//! under `.xiaowo/hls/<id>/`. Times are Unix milliseconds; the state is a readable word.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "conversions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub media_item_id: String,
    /// `queued`, `converting`, `playable`, `complete` or `failed`.
    pub state: String,
    /// How much of the item is converted, in milliseconds from its start.
    pub converted_ms: i64,
    /// Why it failed; empty otherwise.
    pub error: String,
    /// Conversions started for this item (an interrupted one is started again, a few times).
    pub attempts: i32,
    /// While converting: until when the worker that runs it is trusted to be alive. A
    /// conversion whose lease ran out (its process died) is started again by any instance.
    pub lease_expires_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
