//! The seed's `messages` table. Times are Unix milliseconds.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub message_id: i64,
    pub room_id: String,
    /// Gap-free per room, assigned from `room_sequences` in the inserting transaction.
    pub seq: i64,
    pub sender_id: String,
    /// Plain text; emptied when the message is deleted.
    pub text: String,
    pub client_message_id: String,
    /// `stored` or `delivered`.
    pub status: String,
    pub created_at: i64,
    pub deleted_at: Option<i64>,
    pub deleted_by: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
