//! The seed's `user_sessions` table. Times are Unix milliseconds.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "user_sessions")]
pub struct Model {
    /// The public user id (a UUID).
    #[sea_orm(primary_key, auto_increment = false)]
    pub session_id: String,
    /// SHA-256 of the bearer token; the token itself is never stored.
    #[sea_orm(unique)]
    pub token_hash: String,
    pub display_name: String,
    pub created_at: i64,
    pub last_accessed: i64,
    /// Sliding expiry: `min(last_accessed + idle limit, absolute_expires_at)`.
    pub expires_at: i64,
    /// `created_at` + the absolute lifetime; no amount of use extends a session past it.
    pub absolute_expires_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
