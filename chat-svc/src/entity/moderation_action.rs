//! The moderation log: every deletion and mute, for audit.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "moderation_actions")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub moderation_action_id: i64,
    pub room_id: String,
    pub actor_id: String,
    /// `message.delete`, `member.mute` or `member.unmute`.
    pub kind: String,
    pub target_user_id: String,
    pub seq: Option<i64>,
    pub mute_until: Option<i64>,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
