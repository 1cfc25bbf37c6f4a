//! One row per room that has ever changed: the timeline, settings and the version that the
//! optimistic lock compares. Times are Unix milliseconds.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "room_states")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub room_id: String,
    /// Incremented by every accepted change; updates are conditional on it.
    pub version: i64,
    /// Empty when nothing is loaded (then the other media columns are empty too).
    pub media_id: String,
    pub media_url: String,
    pub media_title: String,
    pub media_duration_ms: i64,
    /// The media library item (media-svc) when the media is one; empty for a URL.
    pub media_library_item_id: String,
    pub paused: bool,
    pub rate: f64,
    pub position_ms: i64,
    pub anchor_ms: i64,
    /// While playing, the rate before a future `anchor_ms` (0: the frame holds).
    pub lead_in_rate: f64,
    pub wait_for_everyone: bool,
    /// Comma-separated user ids the room is paused for (user ids are UUIDs).
    pub waiting_for: String,
    pub last_action: String,
    pub last_action_user_id: String,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
