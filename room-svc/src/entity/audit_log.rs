//! The seed's `audit_logs` table: one row per mutation, written in the mutation's transaction.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_logs")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub created_at: i64,
    /// e.g. `room.create`, `member.kick`.
    pub action: String,
    /// Who did it; `None` for the system (the idle janitor).
    pub user_id: Option<String>,
    pub room_id: String,
    /// The member acted upon, if any.
    pub target_user_id: Option<String>,
    /// A small JSON object describing the change; never a password.
    pub detail: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
