use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum MediaItems {
    Table,
    MediaItemId,
}

#[derive(DeriveIden)]
enum SubtitleTracks {
    Table,
    TrackId,
    MediaItemId,
    Language,
    Label,
    Source,
    OriginalFormat,
    Encoding,
    CueCount,
    StreamIndex,
    AddedByUserId,
    Vtt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum RoomSubtitleDefaults {
    Table,
    RoomId,
    MediaItemId,
    TrackId,
    SetByUserId,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SubtitleTracks::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(SubtitleTracks::TrackId).string_len(36).not_null().primary_key())
                    .col(ColumnDef::new(SubtitleTracks::MediaItemId).string_len(36).not_null())
                    .col(ColumnDef::new(SubtitleTracks::Language).string_len(35).not_null())
                    .col(ColumnDef::new(SubtitleTracks::Label).string().not_null())
                    .col(ColumnDef::new(SubtitleTracks::Source).string().not_null())
                    .col(ColumnDef::new(SubtitleTracks::OriginalFormat).string().not_null())
                    .col(ColumnDef::new(SubtitleTracks::Encoding).string().not_null())
                    .col(ColumnDef::new(SubtitleTracks::CueCount).integer().not_null())
                    .col(ColumnDef::new(SubtitleTracks::StreamIndex).integer().not_null())
                    .col(ColumnDef::new(SubtitleTracks::AddedByUserId).string_len(36).not_null())
                    .col(ColumnDef::new(SubtitleTracks::Vtt).text().not_null())
                    .col(ColumnDef::new(SubtitleTracks::CreatedAt).big_integer().not_null())
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_subtitle_tracks_media_item")
                            .from(SubtitleTracks::Table, SubtitleTracks::MediaItemId)
                            .to(MediaItems::Table, MediaItems::MediaItemId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_subtitle_tracks_media_item")
                    .table(SubtitleTracks::Table)
                    .col(SubtitleTracks::MediaItemId)
                    .col(SubtitleTracks::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(RoomSubtitleDefaults::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(RoomSubtitleDefaults::RoomId).string_len(36).not_null())
                    .col(ColumnDef::new(RoomSubtitleDefaults::MediaItemId).string_len(36).not_null())
                    .col(ColumnDef::new(RoomSubtitleDefaults::TrackId).string_len(36).not_null())
                    .col(ColumnDef::new(RoomSubtitleDefaults::SetByUserId).string_len(36).not_null())
                    .col(ColumnDef::new(RoomSubtitleDefaults::UpdatedAt).big_integer().not_null())
                    .primary_key(
                        Index::create().col(RoomSubtitleDefaults::RoomId).col(RoomSubtitleDefaults::MediaItemId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_room_subtitle_defaults_track")
                            .from(RoomSubtitleDefaults::Table, RoomSubtitleDefaults::TrackId)
                            .to(SubtitleTracks::Table, SubtitleTracks::TrackId)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_room_subtitle_defaults_track")
                    .table(RoomSubtitleDefaults::Table)
                    .col(RoomSubtitleDefaults::TrackId)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(RoomSubtitleDefaults::Table).to_owned()).await?;
        manager.drop_table(Table::drop().table(SubtitleTracks::Table).to_owned()).await
    }
}
