//! A room's queue, ordered by `ordinal`; rewritten with the room's row when the queue changes.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "queue_items")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub item_id: String,
    pub room_id: String,
    pub ordinal: i32,
    pub url: String,
    pub title: String,
    pub duration_ms: i64,
    /// The media library item (media-svc) when the item is one; empty for a URL.
    pub library_item_id: String,
    pub added_by_user_id: String,
    pub added_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
