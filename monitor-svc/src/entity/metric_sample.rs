//! The seed's `metrics` table: one aggregated figure of one target at one time (Unix ms).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "metrics")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The scrape target's name.
    pub service: String,
    /// The series (`requests_per_second`, `up`, `<counter>:rate`…).
    pub name: String,
    pub value: f64,
    pub recorded_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
