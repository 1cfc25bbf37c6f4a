//! One row per subtitle track of a media item, with its WebVTT. Deleted with its item.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "subtitle_tracks")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub track_id: String,
    pub media_item_id: String,
    /// A BCP 47 tag.
    pub language: String,
    pub label: String,
    /// `upload` or `embedded`.
    pub source: String,
    pub original_format: String,
    pub encoding: String,
    pub cue_count: i32,
    /// The file's stream it was extracted from; -1 for uploads.
    pub stream_index: i32,
    pub added_by_user_id: String,
    /// The WebVTT served, as media-svc wrote it.
    #[sea_orm(column_type = "Text")]
    pub vtt: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
