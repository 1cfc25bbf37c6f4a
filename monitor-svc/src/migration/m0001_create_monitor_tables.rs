use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Metrics {
    Table,
    Id,
    Service,
    Name,
    Value,
    RecordedAt,
}

#[derive(DeriveIden)]
enum Alerts {
    Table,
    Id,
    Rule,
    Service,
    Severity,
    State,
    Message,
    Value,
    Threshold,
    StartedAt,
    FiredAt,
    ResolvedAt,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    AlertId,
    Channel,
    Event,
    Attempts,
    Delivered,
    LastError,
    RecordedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Metrics::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Metrics::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(Metrics::Service).string().not_null())
                    .col(ColumnDef::new(Metrics::Name).string().not_null())
                    .col(ColumnDef::new(Metrics::Value).double().not_null())
                    .col(ColumnDef::new(Metrics::RecordedAt).big_integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_metrics_series_time")
                    .table(Metrics::Table)
                    .col(Metrics::Service)
                    .col(Metrics::Name)
                    .col(Metrics::RecordedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_metrics_recorded_at")
                    .table(Metrics::Table)
                    .col(Metrics::RecordedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alerts::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Alerts::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(Alerts::Rule).string().not_null())
                    .col(ColumnDef::new(Alerts::Service).string().not_null())
                    .col(ColumnDef::new(Alerts::Severity).string_len(16).not_null())
                    .col(ColumnDef::new(Alerts::State).string_len(16).not_null())
                    .col(ColumnDef::new(Alerts::Message).string().not_null())
                    .col(ColumnDef::new(Alerts::Value).double().not_null())
                    .col(ColumnDef::new(Alerts::Threshold).double().not_null())
                    .col(ColumnDef::new(Alerts::StartedAt).big_integer().not_null())
                    .col(ColumnDef::new(Alerts::FiredAt).big_integer().null())
                    .col(ColumnDef::new(Alerts::ResolvedAt).big_integer().null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_alerts_state")
                    .table(Alerts::Table)
                    .col(Alerts::State)
                    .col(Alerts::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Notifications::Id).big_integer().not_null().auto_increment().primary_key())
                    .col(ColumnDef::new(Notifications::AlertId).big_integer().not_null())
                    .col(ColumnDef::new(Notifications::Channel).string_len(16).not_null())
                    .col(ColumnDef::new(Notifications::Event).string_len(16).not_null())
                    .col(ColumnDef::new(Notifications::Attempts).integer().not_null())
                    .col(ColumnDef::new(Notifications::Delivered).boolean().not_null())
                    .col(ColumnDef::new(Notifications::LastError).string().not_null())
                    .col(ColumnDef::new(Notifications::RecordedAt).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_notifications_alert")
                            .from(Notifications::Table, Notifications::AlertId)
                            .to(Alerts::Table, Alerts::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Notifications::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Alerts::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(Metrics::Table).to_owned()).await
    }
}
