//! One row per unfinished tus upload; its bytes are in `.xiaowo/uploads/<id>.part`.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "uploads")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub upload_id: String,
    pub user_id: String,
    /// The room it is uploaded in; empty when none.
    pub room_id: String,
    /// The name the browser gave (metadata `filename`), cleaned.
    pub file_name: String,
    pub length_bytes: i64,
    /// Bytes stored and synced so far.
    pub offset_bytes: i64,
    pub created_at: i64,
    /// Moved forward by every PATCH; past it the upload is deleted.
    pub expires_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
