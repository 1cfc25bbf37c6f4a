//! Lets the open-rooms-per-owner limit count a session's open rooms without scanning every
//! active room on each create.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Rooms {
    Table,
    OwnerId,
    Status,
}

const INDEX: &str = "idx_rooms_owner_status";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Rooms::Table)
                    .col(Rooms::OwnerId)
                    .col(Rooms::Status)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(INDEX).table(Rooms::Table).to_owned()).await
    }
}
