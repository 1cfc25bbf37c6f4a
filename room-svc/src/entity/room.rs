//! The seed's `rooms` table. Times are Unix milliseconds; enums are stored as readable words.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "rooms")]
pub struct Model {
    /// A UUID.
    #[sea_orm(primary_key, auto_increment = false)]
    pub room_id: String,
    pub name: String,
    pub description: String,
    /// `public` or `unlisted`.
    pub visibility: String,
    /// `everyone`, `moderators` or `owner`.
    pub control_mode: String,
    /// bcrypt hash; `None` for a room without a password.
    pub password_hash: Option<String>,
    /// `active` or `closed`.
    pub status: String,
    /// Who opened the room (the seed's `creator_id`); never changes.
    pub creator_id: String,
    /// The current owner; changes on transfer or when the owner leaves.
    pub owner_id: String,
    pub created_at: i64,
    pub last_active_at: i64,
    pub closed_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
