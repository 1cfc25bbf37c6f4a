use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum RoomStates {
    Table,
    RoomId,
    Version,
    MediaId,
    MediaUrl,
    MediaTitle,
    MediaDurationMs,
    Paused,
    Rate,
    PositionMs,
    AnchorMs,
    WaitForEveryone,
    WaitingFor,
    LastAction,
    LastActionUserId,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum QueueItems {
    Table,
    ItemId,
    RoomId,
    Ordinal,
    Url,
    Title,
    DurationMs,
    AddedByUserId,
    AddedAt,
}

#[derive(DeriveIden)]
enum SyncLogs {
    Table,
    SyncLogId,
    RoomId,
    UserId,
    Action,
    PositionMs,
    Version,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(RoomStates::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(RoomStates::RoomId).string_len(64).not_null().primary_key())
                    .col(ColumnDef::new(RoomStates::Version).big_integer().not_null())
                    .col(ColumnDef::new(RoomStates::MediaId).string().not_null())
                    .col(ColumnDef::new(RoomStates::MediaUrl).text().not_null())
                    .col(ColumnDef::new(RoomStates::MediaTitle).string().not_null())
                    .col(ColumnDef::new(RoomStates::MediaDurationMs).big_integer().not_null())
                    .col(ColumnDef::new(RoomStates::Paused).boolean().not_null())
                    .col(ColumnDef::new(RoomStates::Rate).double().not_null())
                    .col(ColumnDef::new(RoomStates::PositionMs).big_integer().not_null())
                    .col(ColumnDef::new(RoomStates::AnchorMs).big_integer().not_null())
                    .col(ColumnDef::new(RoomStates::WaitForEveryone).boolean().not_null())
                    .col(ColumnDef::new(RoomStates::WaitingFor).text().not_null())
                    .col(ColumnDef::new(RoomStates::LastAction).string().not_null())
                    .col(ColumnDef::new(RoomStates::LastActionUserId).string().not_null())
                    .col(ColumnDef::new(RoomStates::UpdatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(QueueItems::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(QueueItems::ItemId).string_len(36).not_null().primary_key())
                    .col(ColumnDef::new(QueueItems::RoomId).string_len(64).not_null())
                    .col(ColumnDef::new(QueueItems::Ordinal).integer().not_null())
                    .col(ColumnDef::new(QueueItems::Url).text().not_null())
                    .col(ColumnDef::new(QueueItems::Title).string().not_null())
                    .col(ColumnDef::new(QueueItems::DurationMs).big_integer().not_null())
                    .col(ColumnDef::new(QueueItems::AddedByUserId).string().not_null())
                    .col(ColumnDef::new(QueueItems::AddedAt).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_queue_items_room")
                            .from(QueueItems::Table, QueueItems::RoomId)
                            .to(RoomStates::Table, RoomStates::RoomId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_queue_items_room")
                    .table(QueueItems::Table)
                    .col(QueueItems::RoomId)
                    .col(QueueItems::Ordinal)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SyncLogs::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(SyncLogs::SyncLogId).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(SyncLogs::RoomId).string_len(64).not_null())
                    .col(ColumnDef::new(SyncLogs::UserId).string().not_null())
                    .col(ColumnDef::new(SyncLogs::Action).string().not_null())
                    .col(ColumnDef::new(SyncLogs::PositionMs).big_integer().not_null())
                    .col(ColumnDef::new(SyncLogs::Version).big_integer().not_null())
                    .col(ColumnDef::new(SyncLogs::CreatedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sync_logs_room_created")
                    .table(SyncLogs::Table)
                    .col(SyncLogs::RoomId)
                    .col(SyncLogs::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(SyncLogs::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(QueueItems::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(RoomStates::Table).to_owned()).await
    }
}
