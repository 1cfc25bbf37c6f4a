//! The `notifications` table: the outcome of delivering one alert change over one channel.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub alert_id: i64,
    /// `webhook`, `email` or `sms`.
    pub channel: String,
    /// `firing` or `resolved`.
    pub event: String,
    /// Tries made.
    pub attempts: i32,
    pub delivered: bool,
    /// Why the last try failed; empty when delivered.
    pub last_error: String,
    pub recorded_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
