//! One row per playable file: found in the media directory or uploaded. Times are Unix
//! milliseconds; enums are stored as readable words.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "media_items")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub media_item_id: String,
    pub title: String,
    /// The title in lower case, what searches compare with.
    pub title_folded: String,
    /// The file's path relative to the media directory, `/`-separated; unique.
    pub relative_path: String,
    pub size_bytes: i64,
    /// The file's modification time when it was probed, to notice changes.
    pub modified_ms: i64,
    pub duration_ms: i64,
    pub container: String,
    pub video_codec: String,
    pub audio_codec: String,
    pub width: i32,
    pub height: i32,
    /// `browser` or `needs_conversion`.
    pub playability: String,
    pub content_type: String,
    /// `directory` or `upload`.
    pub source: String,
    /// Empty for files of the media directory.
    pub added_by_user_id: String,
    /// The room it was uploaded in; empty when none.
    pub room_id: String,
    /// Whether `.xiaowo/thumbnails/<id>.jpg` exists.
    pub has_thumbnail: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
