//! The only code that touches media-svc's tables. Enums are stored as readable words and read
//! back strictly.

use sea_orm::sea_query::{Condition, Expr, LikeExpr, SimpleExpr};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::entity::{conversion, media_item, upload};
use svc_kit::id::RoomId;

use crate::model::{Conversion, ConversionState, MediaInfo, MediaItem, Playability, Source, Upload, Viewer};

mod subtitles;

fn unknown(column: &str, word: &str) -> DbErr {
    DbErr::Custom(format!("unknown {column} {word:?} in the database"))
}

fn playability_word(playability: Playability) -> &'static str {
    match playability {
        Playability::Browser => "browser",
        Playability::NeedsConversion => "needs_conversion",
    }
}

fn source_word(source: Source) -> &'static str {
    match source {
        Source::Directory => "directory",
        Source::Upload => "upload",
    }
}

/// The extension is not stored: it matters only while an upload is placed.
fn to_item(model: media_item::Model) -> Result<MediaItem, DbErr> {
    let media_item::Model {
        media_item_id,
        title,
        title_folded: _,
        relative_path,
        size_bytes,
        modified_ms,
        duration_ms,
        container,
        video_codec,
        audio_codec,
        width,
        height,
        playability,
        content_type,
        source,
        added_by_user_id,
        room_id,
        has_thumbnail,
        created_at,
        updated_at,
    } = model;
    let playability = match playability.as_str() {
        "browser" => Playability::Browser,
        "needs_conversion" => Playability::NeedsConversion,
        other => return Err(unknown("playability", other)),
    };
    let source = match source.as_str() {
        "directory" => Source::Directory,
        "upload" => Source::Upload,
        other => return Err(unknown("source", other)),
    };
    Ok(MediaItem {
        media_item_id,
        title,
        relative_path,
        size_bytes,
        modified_ms,
        info: MediaInfo {
            duration_ms,
            container,
            video_codec,
            audio_codec,
            width,
            height,
            playability,
            content_type,
            extension: "",
        },
        source,
        added_by_user_id,
        room_id,
        has_thumbnail,
        created_at,
        updated_at,
    })
}

fn to_upload(model: upload::Model) -> Upload {
    let upload::Model { upload_id, user_id, room_id, file_name, length_bytes, offset_bytes, created_at, expires_at } =
        model;
    Upload {
        upload_id,
        user_id,
        room_id,
        file_name,
        length_bytes: u64::try_from(length_bytes).unwrap_or(0),
        offset_bytes: u64::try_from(offset_bytes).unwrap_or(0),
        created_at,
        expires_at,
    }
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn conversion_word(state: ConversionState) -> &'static str {
    match state {
        ConversionState::Queued => "queued",
        ConversionState::Converting => "converting",
        ConversionState::Playable => "playable",
        ConversionState::Complete => "complete",
        ConversionState::Failed => "failed",
    }
}

fn to_conversion(model: conversion::Model) -> Result<Conversion, DbErr> {
    let conversion::Model {
        media_item_id,
        state,
        converted_ms,
        error,
        attempts,
        lease_expires_at: _,
        created_at: _,
        updated_at,
    } = model;
    let state = match state.as_str() {
        "queued" => ConversionState::Queued,
        "converting" => ConversionState::Converting,
        "playable" => ConversionState::Playable,
        "complete" => ConversionState::Complete,
        "failed" => ConversionState::Failed,
        other => return Err(unknown("conversion state", other)),
    };
    Ok(Conversion { media_item_id, state, converted_ms, error, attempts, updated_at })
}

/// Conversions a worker may take: waiting ones, and running ones whose worker stopped renewing
/// its lease (its process died).
fn claimable(now: i64) -> Condition {
    Condition::any().add(conversion::Column::State.eq(conversion_word(ConversionState::Queued))).add(
        Condition::all()
            .add(
                conversion::Column::State
                    .is_in([conversion_word(ConversionState::Converting), conversion_word(ConversionState::Playable)]),
            )
            .add(conversion::Column::LeaseExpiresAt.lt(now)),
    )
}

/// The row of a run that is still current: the same attempt, still running.
fn current_run(media_item_id: &str, attempt: i32) -> Condition {
    Condition::all()
        .add(conversion::Column::MediaItemId.eq(media_item_id))
        .add(conversion::Column::Attempts.eq(attempt))
        .add(
            conversion::Column::State
                .is_in([conversion_word(ConversionState::Converting), conversion_word(ConversionState::Playable)]),
        )
}

/// A file of the library as the directory scan compares it.
#[derive(Debug, Clone)]
pub struct IndexedFile {
    pub media_item_id: String,
    pub relative_path: String,
    pub size_bytes: i64,
    pub modified_ms: i64,
}

/// Which items a listing returns.
#[derive(Debug, Clone)]
pub struct ItemQuery {
    pub viewer: Viewer,
    /// Lower-case words that must all appear in the title.
    pub words: Vec<String>,
    /// Items strictly older than this `(created_at, id)` (the previous page's last).
    pub before: Option<(i64, String)>,
    pub limit: u64,
}

fn visible_to(viewer: &Viewer) -> Condition {
    match viewer {
        Viewer::Admin => Condition::all(),
        Viewer::Person { user_id, member_of } => {
            let mut visible = Condition::any()
                .add(media_item::Column::Source.eq(source_word(Source::Directory)))
                .add(media_item::Column::AddedByUserId.eq(user_id.as_str()));
            if let Some(room_id) = member_of.as_ref().map(RoomId::as_str) {
                visible = visible.add(media_item::Column::RoomId.eq(room_id));
            }
            visible
        }
    }
}

/// `word` as a LIKE pattern matching it anywhere, with LIKE's own characters escaped.
fn contains_pattern(word: &str) -> LikeExpr {
    let escaped = word.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    LikeExpr::new(format!("%{escaped}%")).escape('\\')
}

/// The columns a probe decides; every other column left unset.
fn probe_columns(info: &MediaInfo) -> media_item::ActiveModel {
    let MediaInfo {
        duration_ms,
        container,
        video_codec,
        audio_codec,
        width,
        height,
        playability,
        content_type,
        extension: _,
    } = info.clone();
    media_item::ActiveModel {
        duration_ms: Set(duration_ms),
        container: Set(container),
        video_codec: Set(video_codec),
        audio_codec: Set(audio_codec),
        width: Set(width),
        height: Set(height),
        playability: Set(playability_word(playability).to_owned()),
        content_type: Set(content_type),
        ..Default::default()
    }
}

/// Access to the `media_items` and `uploads` tables.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
}

impl Store {
    /// Wraps a migrated connection.
    #[must_use]
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db }
    }

    pub async fn insert_item(&self, item: &MediaItem) -> Result<(), DbErr> {
        let MediaItem {
            media_item_id,
            title,
            relative_path,
            size_bytes,
            modified_ms,
            info,
            source,
            added_by_user_id,
            room_id,
            has_thumbnail,
            created_at,
            updated_at,
        } = item.clone();
        media_item::ActiveModel {
            media_item_id: Set(media_item_id),
            title_folded: Set(title.to_lowercase()),
            title: Set(title),
            relative_path: Set(relative_path),
            size_bytes: Set(size_bytes),
            modified_ms: Set(modified_ms),
            source: Set(source_word(source).to_owned()),
            added_by_user_id: Set(added_by_user_id),
            room_id: Set(room_id),
            has_thumbnail: Set(has_thumbnail),
            created_at: Set(created_at),
            updated_at: Set(updated_at),
            ..probe_columns(&info)
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    /// Records a new probe of a changed file (the thumbnail is made again afterwards).
    pub async fn update_probe(
        &self,
        media_item_id: &str,
        size_bytes: i64,
        modified_ms: i64,
        info: &MediaInfo,
        now: i64,
    ) -> Result<(), DbErr> {
        let columns = media_item::ActiveModel {
            size_bytes: Set(size_bytes),
            modified_ms: Set(modified_ms),
            has_thumbnail: Set(false),
            updated_at: Set(now),
            ..probe_columns(info)
        };
        media_item::Entity::update_many()
            .set(columns)
            .filter(media_item::Column::MediaItemId.eq(media_item_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    pub async fn set_thumbnail(&self, media_item_id: &str, has_thumbnail: bool, now: i64) -> Result<(), DbErr> {
        media_item::Entity::update_many()
            .col_expr(media_item::Column::HasThumbnail, Expr::value(has_thumbnail))
            .col_expr(media_item::Column::UpdatedAt, Expr::value(now))
            .filter(media_item::Column::MediaItemId.eq(media_item_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    pub async fn find_item(&self, media_item_id: &str) -> Result<Option<MediaItem>, DbErr> {
        media_item::Entity::find_by_id(media_item_id.to_owned()).one(&self.db).await?.map(to_item).transpose()
    }

    pub async fn list_items(&self, query: &ItemQuery) -> Result<Vec<MediaItem>, DbErr> {
        let mut select = media_item::Entity::find().filter(visible_to(&query.viewer));
        for word in &query.words {
            select = select.filter(media_item::Column::TitleFolded.like(contains_pattern(word)));
        }
        if let Some((created_at, media_item_id)) = &query.before {
            select = select.filter(
                Condition::any().add(media_item::Column::CreatedAt.lt(*created_at)).add(
                    Condition::all()
                        .add(media_item::Column::CreatedAt.eq(*created_at))
                        .add(media_item::Column::MediaItemId.lt(media_item_id.as_str())),
                ),
            );
        }
        select
            .order_by_desc(media_item::Column::CreatedAt)
            .order_by_desc(media_item::Column::MediaItemId)
            .limit(query.limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(to_item)
            .collect()
    }

    /// Whether the rename found the item.
    pub async fn rename(&self, media_item_id: &str, title: &str, now: i64) -> Result<bool, DbErr> {
        let result = media_item::Entity::update_many()
            .col_expr(media_item::Column::Title, Expr::value(title))
            .col_expr(media_item::Column::TitleFolded, Expr::value(title.to_lowercase()))
            .col_expr(media_item::Column::UpdatedAt, Expr::value(now))
            .filter(media_item::Column::MediaItemId.eq(media_item_id))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected > 0)
    }

    /// Whether there was such an item.
    pub async fn delete_item(&self, media_item_id: &str) -> Result<bool, DbErr> {
        let result = media_item::Entity::delete_by_id(media_item_id.to_owned()).exec(&self.db).await?;
        Ok(result.rows_affected > 0)
    }

    /// Every item's file, for the directory scan.
    pub async fn indexed_files(&self) -> Result<Vec<IndexedFile>, DbErr> {
        let rows: Vec<(String, String, i64, i64)> = media_item::Entity::find()
            .select_only()
            .column(media_item::Column::MediaItemId)
            .column(media_item::Column::RelativePath)
            .column(media_item::Column::SizeBytes)
            .column(media_item::Column::ModifiedMs)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(media_item_id, relative_path, size_bytes, modified_ms)| IndexedFile {
                media_item_id,
                relative_path,
                size_bytes,
                modified_ms,
            })
            .collect())
    }

    /// Whether an item already has this path.
    pub async fn path_taken(&self, relative_path: &str) -> Result<bool, DbErr> {
        Ok(media_item::Entity::find()
            .filter(media_item::Column::RelativePath.eq(relative_path))
            .count(&self.db)
            .await?
            > 0)
    }

    /// Bytes `user_id` keeps: their items plus the full length of their unfinished uploads.
    pub async fn bytes_of_user(&self, user_id: &str) -> Result<u64, DbErr> {
        let items: Option<i64> = media_item::Entity::find()
            .select_only()
            .column_as(Expr::cust("CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT)"), "total")
            .filter(media_item::Column::AddedByUserId.eq(user_id))
            .filter(media_item::Column::Source.eq(source_word(Source::Upload)))
            .into_tuple()
            .one(&self.db)
            .await?;
        let uploads: Option<i64> = upload::Entity::find()
            .select_only()
            .column_as(Expr::cust("CAST(COALESCE(SUM(length_bytes), 0) AS BIGINT)"), "total")
            .filter(upload::Column::UserId.eq(user_id))
            .into_tuple()
            .one(&self.db)
            .await?;
        let total = items.unwrap_or(0).saturating_add(uploads.unwrap_or(0));
        Ok(u64::try_from(total).unwrap_or(0))
    }

    /// How many items there are and their bytes.
    pub async fn library_totals(&self) -> Result<(u64, u64), DbErr> {
        let row: Option<(i64, i64)> = media_item::Entity::find()
            .select_only()
            .column_as(Expr::cust("CAST(COUNT(*) AS BIGINT)"), "items")
            .column_as(Expr::cust("CAST(COALESCE(SUM(size_bytes), 0) AS BIGINT)"), "bytes")
            .into_tuple()
            .one(&self.db)
            .await?;
        let (items, bytes) = row.unwrap_or((0, 0));
        Ok((u64::try_from(items).unwrap_or(0), u64::try_from(bytes).unwrap_or(0)))
    }

    pub async fn insert_upload(&self, upload: &Upload) -> Result<(), DbErr> {
        let Upload { upload_id, user_id, room_id, file_name, length_bytes, offset_bytes, created_at, expires_at } =
            upload.clone();
        upload::ActiveModel {
            upload_id: Set(upload_id),
            user_id: Set(user_id),
            room_id: Set(room_id),
            file_name: Set(file_name),
            length_bytes: Set(signed(length_bytes)),
            offset_bytes: Set(signed(offset_bytes)),
            created_at: Set(created_at),
            expires_at: Set(expires_at),
        }
        .insert(&self.db)
        .await?;
        Ok(())
    }

    pub async fn find_upload(&self, upload_id: &str) -> Result<Option<Upload>, DbErr> {
        Ok(upload::Entity::find_by_id(upload_id.to_owned()).one(&self.db).await?.map(to_upload))
    }

    pub async fn set_upload_offset(&self, upload_id: &str, offset_bytes: u64, expires_at: i64) -> Result<(), DbErr> {
        upload::Entity::update_many()
            .col_expr(upload::Column::OffsetBytes, Expr::value(signed(offset_bytes)))
            .col_expr(upload::Column::ExpiresAt, Expr::value(expires_at))
            .filter(upload::Column::UploadId.eq(upload_id))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// Whether there was such an upload.
    pub async fn delete_upload(&self, upload_id: &str) -> Result<bool, DbErr> {
        let result = upload::Entity::delete_by_id(upload_id.to_owned()).exec(&self.db).await?;
        Ok(result.rows_affected > 0)
    }

    pub async fn count_uploads(&self, user_id: &str) -> Result<u64, DbErr> {
        upload::Entity::find().filter(upload::Column::UserId.eq(user_id)).count(&self.db).await
    }

    /// Up to `limit` uploads whose expiry has passed.
    pub async fn expired_uploads(&self, now: i64, limit: u64) -> Result<Vec<String>, DbErr> {
        upload::Entity::find()
            .select_only()
            .column(upload::Column::UploadId)
            .filter(upload::Column::ExpiresAt.lte(now))
            .order_by_asc(upload::Column::ExpiresAt)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await
    }

    /// Every upload id, for removing part files that lost their row.
    pub async fn upload_ids(&self) -> Result<Vec<String>, DbErr> {
        upload::Entity::find().select_only().column(upload::Column::UploadId).into_tuple().all(&self.db).await
    }

    /// Unfinished uploads, oldest first.
    pub async fn list_uploads(&self, limit: u64) -> Result<Vec<Upload>, DbErr> {
        Ok(upload::Entity::find()
            .order_by_asc(upload::Column::CreatedAt)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(to_upload)
            .collect())
    }

    /// The conversions of these items (those that have one).
    pub async fn conversions_of(&self, media_item_ids: &[String]) -> Result<Vec<Conversion>, DbErr> {
        if media_item_ids.is_empty() {
            return Ok(Vec::new());
        }
        conversion::Entity::find()
            .filter(conversion::Column::MediaItemId.is_in(media_item_ids.iter().map(String::as_str)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(to_conversion)
            .collect()
    }

    pub async fn find_conversion(&self, media_item_id: &str) -> Result<Option<Conversion>, DbErr> {
        conversion::Entity::find_by_id(media_item_id.to_owned()).one(&self.db).await?.map(to_conversion).transpose()
    }

    /// Queues the item's conversion from the start (a new one, or one that starts over).
    pub async fn queue_conversion(&self, media_item_id: &str, now: i64) -> Result<(), DbErr> {
        let row = conversion::ActiveModel {
            media_item_id: Set(media_item_id.to_owned()),
            state: Set(conversion_word(ConversionState::Queued).to_owned()),
            converted_ms: Set(0),
            error: Set(String::new()),
            attempts: Set(0),
            lease_expires_at: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
        };
        conversion::Entity::insert(row)
            .on_conflict(
                sea_orm::sea_query::OnConflict::column(conversion::Column::MediaItemId)
                    .update_columns([
                        conversion::Column::State,
                        conversion::Column::ConvertedMs,
                        conversion::Column::Error,
                        conversion::Column::Attempts,
                        conversion::Column::LeaseExpiresAt,
                        conversion::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// Whether there was a conversion to forget.
    pub async fn delete_conversion(&self, media_item_id: &str) -> Result<bool, DbErr> {
        let result = conversion::Entity::delete_by_id(media_item_id.to_owned()).exec(&self.db).await?;
        Ok(result.rows_affected > 0)
    }

    /// Takes the oldest claimable conversion for a worker: marks it converting under a lease
    /// until `lease_until` and counts the attempt. Another worker (or instance) that took it
    /// first wins; then the next one is tried.
    pub async fn claim_conversion(&self, now: i64, lease_until: i64) -> Result<Option<Conversion>, DbErr> {
        let candidates = conversion::Entity::find()
            .filter(claimable(now))
            .order_by_asc(conversion::Column::CreatedAt)
            .limit(8)
            .all(&self.db)
            .await?;
        for candidate in candidates {
            let result = conversion::Entity::update_many()
                .col_expr(conversion::Column::State, Expr::value(conversion_word(ConversionState::Converting)))
                .col_expr(conversion::Column::ConvertedMs, Expr::value(0_i64))
                .col_expr(conversion::Column::Attempts, Expr::value(candidate.attempts.saturating_add(1)))
                .col_expr(conversion::Column::LeaseExpiresAt, Expr::value(lease_until))
                .col_expr(conversion::Column::UpdatedAt, Expr::value(now))
                .filter(conversion::Column::MediaItemId.eq(candidate.media_item_id.as_str()))
                .filter(conversion::Column::Attempts.eq(candidate.attempts))
                .filter(claimable(now))
                .exec(&self.db)
                .await?;
            if result.rows_affected == 1 {
                return self.find_conversion(&candidate.media_item_id).await;
            }
        }
        Ok(None)
    }

    /// Sets `columns` (and `updated_at`) on the run `attempt` of the item's conversion; false
    /// when that run is no longer the current one (the item was deleted or changed, or its
    /// conversion taken over).
    async fn update_run(
        &self,
        media_item_id: &str,
        attempt: i32,
        columns: Vec<(conversion::Column, SimpleExpr)>,
        now: i64,
    ) -> Result<bool, DbErr> {
        let mut update = conversion::Entity::update_many().col_expr(conversion::Column::UpdatedAt, Expr::value(now));
        for (column, value) in columns {
            update = update.col_expr(column, value);
        }
        let result = update.filter(current_run(media_item_id, attempt)).exec(&self.db).await?;
        Ok(result.rows_affected > 0)
    }

    /// Records a running conversion's progress and renews its lease.
    pub async fn record_progress(
        &self,
        media_item_id: &str,
        attempt: i32,
        state: ConversionState,
        converted_ms: i64,
        lease_until: i64,
        now: i64,
    ) -> Result<bool, DbErr> {
        let columns = vec![
            (conversion::Column::State, Expr::value(conversion_word(state))),
            (conversion::Column::ConvertedMs, Expr::value(converted_ms)),
            (conversion::Column::LeaseExpiresAt, Expr::value(lease_until)),
        ];
        self.update_run(media_item_id, attempt, columns, now).await
    }

    /// Ends a run as complete or failed.
    pub async fn finish_conversion(
        &self,
        media_item_id: &str,
        attempt: i32,
        state: ConversionState,
        converted_ms: i64,
        error: &str,
        now: i64,
    ) -> Result<bool, DbErr> {
        let columns = vec![
            (conversion::Column::State, Expr::value(conversion_word(state))),
            (conversion::Column::ConvertedMs, Expr::value(converted_ms)),
            (conversion::Column::Error, Expr::value(error)),
            (conversion::Column::LeaseExpiresAt, Expr::value(0_i64)),
        ];
        self.update_run(media_item_id, attempt, columns, now).await
    }

    /// Puts a run stopped by a shutdown back in the queue, not counting it as an attempt.
    pub async fn release_conversion(&self, media_item_id: &str, attempt: i32, now: i64) -> Result<bool, DbErr> {
        let columns = vec![
            (conversion::Column::State, Expr::value(conversion_word(ConversionState::Queued))),
            (conversion::Column::ConvertedMs, Expr::value(0_i64)),
            (conversion::Column::Attempts, Expr::value(attempt.saturating_sub(1))),
            (conversion::Column::LeaseExpiresAt, Expr::value(0_i64)),
        ];
        self.update_run(media_item_id, attempt, columns, now).await
    }

    /// Items browsers cannot play that have no conversion row (added before conversions
    /// existed, or whose row was lost).
    pub async fn items_without_conversion(&self) -> Result<Vec<String>, DbErr> {
        let needing: Vec<String> = media_item::Entity::find()
            .select_only()
            .column(media_item::Column::MediaItemId)
            .filter(media_item::Column::Playability.eq(playability_word(Playability::NeedsConversion)))
            .into_tuple()
            .all(&self.db)
            .await?;
        let known: std::collections::HashSet<String> = conversion::Entity::find()
            .select_only()
            .column(conversion::Column::MediaItemId)
            .into_tuple()
            .all(&self.db)
            .await?
            .into_iter()
            .collect();
        Ok(needing.into_iter().filter(|media_item_id| !known.contains(media_item_id)).collect())
    }

    /// Every conversion, for checking the files at start.
    pub async fn all_conversions(&self) -> Result<Vec<Conversion>, DbErr> {
        conversion::Entity::find().all(&self.db).await?.into_iter().map(to_conversion).collect()
    }

    /// The items with these ids that exist.
    pub async fn find_items(&self, media_item_ids: &[String]) -> Result<Vec<MediaItem>, DbErr> {
        if media_item_ids.is_empty() {
            return Ok(Vec::new());
        }
        media_item::Entity::find()
            .filter(media_item::Column::MediaItemId.is_in(media_item_ids.iter().map(String::as_str)))
            .all(&self.db)
            .await?
            .into_iter()
            .map(to_item)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Migrator;
    use crate::model::ConversionState::{Complete, Converting, Playable, Queued};

    async fn store(dir: &std::path::Path) -> Store {
        let url = svc_kit::testing::database_url(dir, "media.db").await;
        Store::new(svc_kit::db::connect::<Migrator>(&url, &svc_kit::db::DbOptions::default()).await.unwrap())
    }

    fn item(media_item_id: &str) -> MediaItem {
        MediaItem {
            media_item_id: media_item_id.to_owned(),
            title: "Night train".to_owned(),
            relative_path: format!("uploads/{media_item_id}.mkv"),
            size_bytes: 1,
            modified_ms: 0,
            info: MediaInfo {
                duration_ms: 60_000,
                container: "matroska,webm".to_owned(),
                video_codec: "hevc".to_owned(),
                audio_codec: "ac3".to_owned(),
                width: 320,
                height: 180,
                playability: Playability::NeedsConversion,
                content_type: "video/x-matroska".to_owned(),
                extension: "mkv",
            },
            source: Source::Upload,
            added_by_user_id: String::new(),
            room_id: String::new(),
            has_thumbnail: false,
            created_at: 0,
            updated_at: 0,
        }
    }

    /// A worker that dies without a word holds its conversion only until its lease runs out;
    /// then another takes it over, and the first one's late writes are refused.
    #[tokio::test]
    async fn conversions_are_claimed_once_fenced_by_attempt_and_taken_over_after_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path()).await;
        let id = "5d0b8c5e-2f7a-4a3e-9d47-3c1f0d6b9a01";
        store.insert_item(&item(id)).await.unwrap();
        assert_eq!(store.items_without_conversion().await.unwrap(), [id]);
        store.queue_conversion(id, 1_000).await.unwrap();
        assert!(store.items_without_conversion().await.unwrap().is_empty());

        let first = store.claim_conversion(1_000, 21_000).await.unwrap().unwrap();
        assert_eq!((first.state, first.attempts), (Converting, 1));
        assert_eq!(store.claim_conversion(20_000, 40_000).await.unwrap(), None, "the lease holds");
        assert!(store.record_progress(id, 1, Playable, 5_000, 25_000, 2_000).await.unwrap());
        assert_eq!(store.claim_conversion(24_999, 44_999).await.unwrap(), None, "renewed until 25 000");

        let second = store.claim_conversion(25_001, 45_001).await.unwrap().unwrap();
        assert_eq!((second.state, second.attempts, second.converted_ms), (Converting, 2, 0));
        assert!(!store.record_progress(id, 1, Playable, 9_000, 30_000, 25_002).await.unwrap());
        assert!(!store.finish_conversion(id, 1, Complete, 60_000, "", 25_003).await.unwrap());

        // A shutdown puts it back in the queue without counting the run.
        assert!(store.release_conversion(id, 2, 26_000).await.unwrap());
        let released = store.find_conversion(id).await.unwrap().unwrap();
        assert_eq!((released.state, released.attempts), (Queued, 1));
        let third = store.claim_conversion(26_001, 46_001).await.unwrap().unwrap();
        assert!(store.finish_conversion(id, third.attempts, Complete, 60_000, "", 27_000).await.unwrap());
        assert_eq!(store.claim_conversion(99_000, 119_000).await.unwrap(), None, "complete is not claimable");

        // The conversion goes with its item.
        assert!(store.delete_item(id).await.unwrap());
        assert_eq!(store.find_conversion(id).await.unwrap(), None);
    }
}
