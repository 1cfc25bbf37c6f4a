//! The subtitle RPCs of MediaService and MediaAdminService, protobuf in and out.

use proto::media::v1 as pb;
use svc_kit::auth::{AuthError, Caller};
use svc_kit::id::RoomId;
use tonic::{Request, Response, Status};

use super::optional_room;
use crate::library::Library;
use crate::subtitles::{AddedTrack, Asker, NewTrack, SubtitleTrack, TrackSource};

fn source_to_pb(source: TrackSource) -> pb::SubtitleSource {
    match source {
        TrackSource::Upload => pb::SubtitleSource::Upload,
        TrackSource::Embedded => pb::SubtitleSource::Embedded,
    }
}

fn track_to_pb(track: SubtitleTrack, url: String) -> pb::SubtitleTrack {
    let SubtitleTrack {
        track_id,
        media_item_id,
        language,
        label,
        source,
        original_format,
        encoding,
        cue_count,
        stream_index: _,
        added_by_user_id,
        created_at,
    } = track;
    pb::SubtitleTrack {
        track_id,
        media_item_id,
        language,
        label,
        source: source_to_pb(source).into(),
        original_format,
        encoding,
        cue_count,
        added_by_user_id,
        url,
        create_time: Some(proto::timestamp_from_ms(created_at)),
    }
}

fn count(value: usize) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

/// The caller and their session token (sync-svc is asked with the caller's own credentials).
fn person<T>(request: &Request<T>) -> Result<(Caller, String), Status> {
    let caller = Caller::of(request)?;
    let token = svc_kit::auth::session_token(request.metadata()).ok_or(AuthError::Unauthenticated)?;
    Ok((caller, token))
}

pub(super) async fn list(
    library: &Library,
    request: Request<pb::ListSubtitleTracksRequest>,
) -> Result<Response<pb::ListSubtitleTracksResponse>, Status> {
    let (caller, token) = person(&request)?;
    let pb::ListSubtitleTracksRequest { media_item_id, room_id } = request.into_inner();
    let room = optional_room(&room_id)?;
    let asker = Asker::Person { caller: &caller, token: &token, room_id: room.as_ref() };
    let listing = library.list_subtitles(asker, &media_item_id).await?;
    Ok(Response::new(pb::ListSubtitleTracksResponse {
        tracks: listing.tracks.into_iter().map(|(track, url)| track_to_pb(track, url)).collect(),
        room_default_track_id: listing.room_default_track_id,
        can_edit: listing.can_edit,
        can_set_room_default: listing.can_set_room_default,
        max_file_bytes: i64::try_from(library.limits().subtitles.max_bytes).unwrap_or(i64::MAX),
    }))
}

pub(super) async fn add(
    library: &Library,
    request: Request<pb::AddSubtitleTrackRequest>,
) -> Result<Response<pb::AddSubtitleTrackResponse>, Status> {
    let (caller, token) = person(&request)?;
    let pb::AddSubtitleTrackRequest { media_item_id, room_id, language, label, content } = request.into_inner();
    let room = optional_room(&room_id)?;
    let asker = Asker::Person { caller: &caller, token: &token, room_id: room.as_ref() };
    let AddedTrack { track, repaired, skipped } =
        library.add_subtitles(asker, NewTrack { media_item_id, language, label, content }).await?;
    Ok(Response::new(pb::AddSubtitleTrackResponse {
        track: Some(track_to_pb(track, String::new())),
        repaired_cue_count: count(repaired),
        skipped_cue_count: count(skipped),
    }))
}

pub(super) async fn delete(
    library: &Library,
    request: Request<pb::DeleteSubtitleTrackRequest>,
) -> Result<Response<pb::DeleteSubtitleTrackResponse>, Status> {
    let (caller, token) = person(&request)?;
    let pb::DeleteSubtitleTrackRequest { track_id, room_id } = request.into_inner();
    let room = optional_room(&room_id)?;
    library
        .delete_subtitles(Asker::Person { caller: &caller, token: &token, room_id: room.as_ref() }, &track_id)
        .await?;
    Ok(Response::new(pb::DeleteSubtitleTrackResponse {}))
}

pub(super) async fn set_room_default(
    library: &Library,
    request: Request<pb::SetRoomSubtitleDefaultRequest>,
) -> Result<Response<pb::SetRoomSubtitleDefaultResponse>, Status> {
    let (caller, token) = person(&request)?;
    let pb::SetRoomSubtitleDefaultRequest { room_id, media_item_id, track_id } = request.into_inner();
    let room_id = RoomId::parse("room_id", &room_id).map_err(crate::Error::from)?;
    let room_default_track_id =
        library.set_room_subtitle_default(&caller, &token, &room_id, &media_item_id, &track_id).await?;
    Ok(Response::new(pb::SetRoomSubtitleDefaultResponse { room_default_track_id }))
}

pub(super) async fn admin_list(
    library: &Library,
    request: Request<pb::ListLibrarySubtitleTracksRequest>,
) -> Result<Response<pb::ListLibrarySubtitleTracksResponse>, Status> {
    let pb::ListLibrarySubtitleTracksRequest { media_item_id } = request.into_inner();
    let listing = library.list_subtitles(Asker::Admin, &media_item_id).await?;
    Ok(Response::new(pb::ListLibrarySubtitleTracksResponse {
        tracks: listing.tracks.into_iter().map(|(track, url)| track_to_pb(track, url)).collect(),
    }))
}

pub(super) async fn admin_add(
    library: &Library,
    request: Request<pb::AddLibrarySubtitleTrackRequest>,
) -> Result<Response<pb::AddLibrarySubtitleTrackResponse>, Status> {
    let pb::AddLibrarySubtitleTrackRequest { media_item_id, language, label, content } = request.into_inner();
    let AddedTrack { track, repaired, skipped } =
        library.add_subtitles(Asker::Admin, NewTrack { media_item_id, language, label, content }).await?;
    Ok(Response::new(pb::AddLibrarySubtitleTrackResponse {
        track: Some(track_to_pb(track, String::new())),
        repaired_cue_count: count(repaired),
        skipped_cue_count: count(skipped),
    }))
}

pub(super) async fn admin_delete(
    library: &Library,
    request: Request<pb::DeleteLibrarySubtitleTrackRequest>,
) -> Result<Response<pb::DeleteLibrarySubtitleTrackResponse>, Status> {
    let pb::DeleteLibrarySubtitleTrackRequest { track_id } = request.into_inner();
    library.delete_subtitles(Asker::Admin, &track_id).await?;
    Ok(Response::new(pb::DeleteLibrarySubtitleTrackResponse {}))
}
