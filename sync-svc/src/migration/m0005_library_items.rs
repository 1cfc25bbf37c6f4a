//! Media of the media library: a room's timeline and queue items may name a library item
//! (media-svc) instead of a URL.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RoomStates {
    Table,
    MediaLibraryItemId,
}

#[derive(DeriveIden)]
enum QueueItems {
    Table,
    LibraryItemId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(RoomStates::Table)
                    .add_column(ColumnDef::new(RoomStates::MediaLibraryItemId).string_len(36).not_null().default(""))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(QueueItems::Table)
                    .add_column(ColumnDef::new(QueueItems::LibraryItemId).string_len(36).not_null().default(""))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(QueueItems::Table).drop_column(QueueItems::LibraryItemId).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(RoomStates::Table).drop_column(RoomStates::MediaLibraryItemId).to_owned())
            .await
    }
}
