//! When each room closed, as heard from room-svc, so that the chat of rooms closed longer than
//! the retention period can be found and deleted.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ClosedRooms {
    Table,
    RoomId,
    ClosedAt,
}

const INDEX: &str = "idx_closed_rooms_time";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ClosedRooms::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(ClosedRooms::RoomId).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(ClosedRooms::ClosedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(ClosedRooms::Table)
                    .col(ClosedRooms::ClosedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(ClosedRooms::Table).to_owned()).await
    }
}
