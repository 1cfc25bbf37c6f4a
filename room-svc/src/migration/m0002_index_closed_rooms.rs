//! Lets the retention janitor find rooms closed before a time without scanning every closed
//! room on each batch.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Rooms {
    Table,
    Status,
    ClosedAt,
}

const INDEX: &str = "idx_rooms_closed";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Rooms::Table)
                    .col(Rooms::Status)
                    .col(Rooms::ClosedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(INDEX).table(Rooms::Table).to_owned()).await
    }
}
