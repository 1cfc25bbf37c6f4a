//! A rate change is scheduled a moment ahead like a start: until its anchor the timeline moves
//! at the previous rate, stored here (0, a held frame, for every earlier row).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RoomStates {
    Table,
    LeadInRate,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(RoomStates::Table)
                    .add_column(ColumnDef::new(RoomStates::LeadInRate).double().not_null().default(0.0))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(RoomStates::Table).drop_column(RoomStates::LeadInRate).to_owned())
            .await
    }
}
