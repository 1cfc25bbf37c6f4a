use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Rooms {
    Table,
    RoomId,
    Name,
    Description,
    Visibility,
    ControlMode,
    PasswordHash,
    Status,
    CreatorId,
    OwnerId,
    CreatedAt,
    LastActiveAt,
    ClosedAt,
}

#[derive(DeriveIden)]
enum RoomMembers {
    Table,
    RoomId,
    UserId,
    Role,
    JoinedAt,
}

#[derive(DeriveIden)]
enum RoomBans {
    Table,
    RoomId,
    UserId,
    BannedUntil,
}

#[derive(DeriveIden)]
enum AuditLogs {
    Table,
    Id,
    CreatedAt,
    Action,
    UserId,
    RoomId,
    TargetUserId,
    Detail,
}

fn index(name: &str, table: impl IntoIden, columns: &[&'static str]) -> IndexCreateStatement {
    let mut index = Index::create();
    index.name(name).table(table).if_not_exists();
    for column in columns {
        index.col(Alias::new(*column));
    }
    index.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Rooms::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Rooms::RoomId).string_len(36).not_null().primary_key())
                    .col(ColumnDef::new(Rooms::Name).string().not_null())
                    .col(ColumnDef::new(Rooms::Description).text().not_null())
                    .col(ColumnDef::new(Rooms::Visibility).string_len(16).not_null())
                    .col(ColumnDef::new(Rooms::ControlMode).string_len(16).not_null())
                    .col(ColumnDef::new(Rooms::PasswordHash).string_len(60).null())
                    .col(ColumnDef::new(Rooms::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Rooms::CreatorId).string_len(36).not_null())
                    .col(ColumnDef::new(Rooms::OwnerId).string_len(36).not_null())
                    .col(ColumnDef::new(Rooms::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Rooms::LastActiveAt).big_integer().not_null())
                    .col(ColumnDef::new(Rooms::ClosedAt).big_integer().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RoomMembers::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(RoomMembers::RoomId).string_len(36).not_null())
                    .col(ColumnDef::new(RoomMembers::UserId).string_len(36).not_null())
                    .col(ColumnDef::new(RoomMembers::Role).string_len(16).not_null())
                    .col(ColumnDef::new(RoomMembers::JoinedAt).big_integer().not_null())
                    .primary_key(Index::create().col(RoomMembers::RoomId).col(RoomMembers::UserId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RoomMembers::Table, RoomMembers::RoomId)
                            .to(Rooms::Table, Rooms::RoomId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RoomBans::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(RoomBans::RoomId).string_len(36).not_null())
                    .col(ColumnDef::new(RoomBans::UserId).string_len(36).not_null())
                    .col(ColumnDef::new(RoomBans::BannedUntil).big_integer().not_null())
                    .primary_key(Index::create().col(RoomBans::RoomId).col(RoomBans::UserId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(RoomBans::Table, RoomBans::RoomId)
                            .to(Rooms::Table, Rooms::RoomId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // No foreign key to rooms: the audit trail outlives whatever it describes.
        manager
            .create_table(
                Table::create()
                    .table(AuditLogs::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(AuditLogs::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(AuditLogs::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(AuditLogs::Action).string_len(64).not_null())
                    .col(ColumnDef::new(AuditLogs::UserId).string_len(36).null())
                    .col(ColumnDef::new(AuditLogs::RoomId).string_len(36).not_null())
                    .col(ColumnDef::new(AuditLogs::TargetUserId).string_len(36).null())
                    .col(ColumnDef::new(AuditLogs::Detail).text().not_null())
                    .to_owned(),
            )
            .await?;
        for statement in [
            // Listings: public active rooms by recent activity; the janitor: active by activity.
            index("idx_rooms_listing", Rooms::Table, &["status", "visibility", "last_active_at", "room_id"]),
            index("idx_rooms_activity", Rooms::Table, &["status", "last_active_at"]),
            index("idx_room_members_user", RoomMembers::Table, &["user_id"]),
            index("idx_audit_logs_time", AuditLogs::Table, &["created_at", "id"]),
            index("idx_audit_logs_room", AuditLogs::Table, &["room_id", "created_at"]),
            index("idx_audit_logs_user", AuditLogs::Table, &["user_id", "created_at"]),
            index("idx_audit_logs_target", AuditLogs::Table, &["target_user_id", "created_at"]),
        ] {
            manager.create_index(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [AuditLogs::Table.into_iden(), RoomBans::Table.into_iden(), RoomMembers::Table.into_iden()] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        manager.drop_table(Table::drop().table(Rooms::Table).to_owned()).await
    }
}
