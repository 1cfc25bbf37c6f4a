//! The seed's `sync_logs`: one row per accepted change, written in the change's transaction.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sync_logs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub sync_log_id: i64,
    pub room_id: String,
    /// Empty for the server itself (auto-advance, wait for everyone).
    pub user_id: String,
    pub action: String,
    /// The timeline position right after the change.
    pub position_ms: i64,
    /// The version the change produced.
    pub version: i64,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
