use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum UserSessions {
    Table,
    SessionId,
    TokenHash,
    DisplayName,
    CreatedAt,
    LastAccessed,
    ExpiresAt,
    AbsoluteExpiresAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UserSessions::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(UserSessions::SessionId).string_len(36).not_null().primary_key())
                    .col(ColumnDef::new(UserSessions::TokenHash).string_len(64).not_null().unique_key())
                    .col(ColumnDef::new(UserSessions::DisplayName).string().not_null())
                    .col(ColumnDef::new(UserSessions::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(UserSessions::LastAccessed).big_integer().not_null())
                    .col(ColumnDef::new(UserSessions::ExpiresAt).big_integer().not_null())
                    .col(ColumnDef::new(UserSessions::AbsoluteExpiresAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_user_sessions_expires_at")
                    .table(UserSessions::Table)
                    .col(UserSessions::ExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_user_sessions_created_at")
                    .table(UserSessions::Table)
                    .col(UserSessions::CreatedAt)
                    .col(UserSessions::SessionId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(UserSessions::Table).to_owned()).await
    }
}
