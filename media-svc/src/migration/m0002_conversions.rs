use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Conversions {
    Table,
    MediaItemId,
    State,
    ConvertedMs,
    Error,
    Attempts,
    LeaseExpiresAt,
    CreatedAt,
    UpdatedAt,
}

/// Named here rather than imported: migrations never depend on entities.
#[derive(DeriveIden)]
enum MediaItems {
    Table,
    MediaItemId,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Conversions::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Conversions::MediaItemId).string_len(36).not_null().primary_key())
                    .col(ColumnDef::new(Conversions::State).string().not_null())
                    .col(ColumnDef::new(Conversions::ConvertedMs).big_integer().not_null())
                    .col(ColumnDef::new(Conversions::Error).string().not_null())
                    .col(ColumnDef::new(Conversions::Attempts).integer().not_null())
                    .col(ColumnDef::new(Conversions::LeaseExpiresAt).big_integer().not_null())
                    .col(ColumnDef::new(Conversions::CreatedAt).big_integer().not_null())
                    .col(ColumnDef::new(Conversions::UpdatedAt).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_conversions_media_item")
                            .from(Conversions::Table, Conversions::MediaItemId)
                            .to(MediaItems::Table, MediaItems::MediaItemId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Workers look for the oldest waiting conversion, and for ones whose lease ran out.
        manager
            .create_index(
                Index::create()
                    .name("idx_conversions_state")
                    .table(Conversions::Table)
                    .col(Conversions::State)
                    .col(Conversions::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Conversions::Table).to_owned()).await
    }
}
