//! The `subtitle_tracks` and `room_subtitle_defaults` tables.

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};

use super::{Store, unknown};
use crate::entity::{room_subtitle_default, subtitle_track};
use crate::subtitles::{SubtitleTrack, TrackSource};

fn source_word(source: TrackSource) -> &'static str {
    match source {
        TrackSource::Upload => "upload",
        TrackSource::Embedded => "embedded",
    }
}

/// The columns of a track listing: everything but the WebVTT.
fn without_vtt() -> sea_orm::Select<subtitle_track::Entity> {
    use subtitle_track::Column;
    subtitle_track::Entity::find().select_only().columns([
        Column::TrackId,
        Column::MediaItemId,
        Column::Language,
        Column::Label,
        Column::Source,
        Column::OriginalFormat,
        Column::Encoding,
        Column::CueCount,
        Column::StreamIndex,
        Column::AddedByUserId,
        Column::CreatedAt,
    ])
}

type TrackRow = (String, String, String, String, String, String, String, i32, i32, String, i64);

/// The track of a listed row.
fn from_row(row: TrackRow) -> Result<SubtitleTrack, DbErr> {
    let (
        track_id,
        media_item_id,
        language,
        label,
        source,
        original_format,
        encoding,
        cue_count,
        stream_index,
        added_by_user_id,
        created_at,
    ) = row;
    let source = match source.as_str() {
        "upload" => TrackSource::Upload,
        "embedded" => TrackSource::Embedded,
        other => return Err(unknown("subtitle source", other)),
    };
    Ok(SubtitleTrack {
        track_id,
        media_item_id,
        language,
        label,
        source,
        original_format,
        encoding,
        cue_count,
        stream_index,
        added_by_user_id,
        created_at,
    })
}

impl Store {
    /// Inserts a track unless its item already has `max` of them; whether it was inserted.
    pub async fn insert_track_within(&self, track: &SubtitleTrack, vtt: &str, max: u64) -> Result<bool, DbErr> {
        let SubtitleTrack {
            track_id,
            media_item_id,
            language,
            label,
            source,
            original_format,
            encoding,
            cue_count,
            stream_index,
            added_by_user_id,
            created_at,
        } = track.clone();
        let transaction = self.db.begin().await?;
        let count = subtitle_track::Entity::find()
            .filter(subtitle_track::Column::MediaItemId.eq(media_item_id.as_str()))
            .count(&transaction)
            .await?;
        if count >= max {
            return Ok(false);
        }
        subtitle_track::ActiveModel {
            track_id: Set(track_id),
            media_item_id: Set(media_item_id),
            language: Set(language),
            label: Set(label),
            source: Set(source_word(source).to_owned()),
            original_format: Set(original_format),
            encoding: Set(encoding),
            cue_count: Set(cue_count),
            stream_index: Set(stream_index),
            added_by_user_id: Set(added_by_user_id),
            vtt: Set(vtt.to_owned()),
            created_at: Set(created_at),
        }
        .insert(&transaction)
        .await?;
        transaction.commit().await?;
        Ok(true)
    }

    /// An item's tracks, oldest first (a file's streams in their order).
    pub async fn list_tracks(&self, media_item_id: &str) -> Result<Vec<SubtitleTrack>, DbErr> {
        let rows: Vec<TrackRow> = without_vtt()
            .filter(subtitle_track::Column::MediaItemId.eq(media_item_id))
            .order_by_asc(subtitle_track::Column::CreatedAt)
            .order_by_asc(subtitle_track::Column::StreamIndex)
            .order_by_asc(subtitle_track::Column::TrackId)
            .into_tuple()
            .all(&self.db)
            .await?;
        rows.into_iter().map(from_row).collect()
    }

    pub async fn find_track(&self, track_id: &str) -> Result<Option<SubtitleTrack>, DbErr> {
        let row: Option<TrackRow> =
            without_vtt().filter(subtitle_track::Column::TrackId.eq(track_id)).into_tuple().one(&self.db).await?;
        row.map(from_row).transpose()
    }

    /// The WebVTT of `track_id`, when it belongs to `media_item_id`.
    pub async fn track_vtt(&self, media_item_id: &str, track_id: &str) -> Result<Option<String>, DbErr> {
        subtitle_track::Entity::find()
            .select_only()
            .column(subtitle_track::Column::Vtt)
            .filter(subtitle_track::Column::TrackId.eq(track_id))
            .filter(subtitle_track::Column::MediaItemId.eq(media_item_id))
            .into_tuple()
            .one(&self.db)
            .await
    }

    /// Whether there was such a track (room defaults naming it go with it).
    pub async fn delete_track(&self, track_id: &str) -> Result<bool, DbErr> {
        let result = subtitle_track::Entity::delete_by_id(track_id.to_owned()).exec(&self.db).await?;
        Ok(result.rows_affected > 0)
    }

    /// Removes the tracks extracted from an item's file; how many there were.
    pub async fn delete_embedded_tracks(&self, media_item_id: &str) -> Result<u64, DbErr> {
        let result = subtitle_track::Entity::delete_many()
            .filter(subtitle_track::Column::MediaItemId.eq(media_item_id))
            .filter(subtitle_track::Column::Source.eq(source_word(TrackSource::Embedded)))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }

    /// The room's default track for the item, if it set one.
    pub async fn room_default(&self, room_id: &str, media_item_id: &str) -> Result<Option<String>, DbErr> {
        room_subtitle_default::Entity::find()
            .select_only()
            .column(room_subtitle_default::Column::TrackId)
            .filter(room_subtitle_default::Column::RoomId.eq(room_id))
            .filter(room_subtitle_default::Column::MediaItemId.eq(media_item_id))
            .into_tuple()
            .one(&self.db)
            .await
    }

    /// Sets the room's default track for the item, or removes it (`None`: subtitles off).
    pub async fn set_room_default(
        &self,
        room_id: &str,
        media_item_id: &str,
        track_id: Option<&str>,
        user_id: &str,
        now: i64,
    ) -> Result<(), DbErr> {
        let Some(track_id) = track_id else {
            room_subtitle_default::Entity::delete_many()
                .filter(room_subtitle_default::Column::RoomId.eq(room_id))
                .filter(room_subtitle_default::Column::MediaItemId.eq(media_item_id))
                .exec(&self.db)
                .await?;
            return Ok(());
        };
        use room_subtitle_default::Column;
        room_subtitle_default::Entity::insert(room_subtitle_default::ActiveModel {
            room_id: Set(room_id.to_owned()),
            media_item_id: Set(media_item_id.to_owned()),
            track_id: Set(track_id.to_owned()),
            set_by_user_id: Set(user_id.to_owned()),
            updated_at: Set(now),
        })
        .on_conflict(
            OnConflict::columns([Column::RoomId, Column::MediaItemId])
                .update_columns([Column::TrackId, Column::SetByUserId, Column::UpdatedAt])
                .to_owned(),
        )
        .exec(&self.db)
        .await?;
        Ok(())
    }
}
