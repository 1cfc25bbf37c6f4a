//! The gRPC edge: protobuf in, library calls, protobuf out. Nothing else knows `proto`,
//! including the one outbound call to sync-svc (does a room play or queue an item).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use proto::media::v1 as pb;
use proto::sync::v1 as sync_pb;
use proto::sync::v1::sync_service_client::SyncServiceClient;
use svc_kit::auth::{AuthError, Caller};
use svc_kit::id::RoomId;
use svc_kit::status::Violation;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

mod subtitles;

use crate::Error;
use crate::convert::MediaEvent;
use crate::library::{Library, RoomQueue};
use crate::model::{Conversion, ConversionState, MediaItem, Playability, Source, Upload, Viewer};

fn playability_to_pb(playability: Playability) -> pb::Playability {
    match playability {
        Playability::Browser => pb::Playability::Browser,
        Playability::NeedsConversion => pb::Playability::NeedsConversion,
    }
}

fn source_to_pb(source: Source) -> pb::Source {
    match source {
        Source::Directory => pb::Source::Directory,
        Source::Upload => pb::Source::Upload,
    }
}

fn conversion_state_to_pb(state: ConversionState) -> pb::ConversionState {
    match state {
        ConversionState::Queued => pb::ConversionState::Queued,
        ConversionState::Converting => pb::ConversionState::Converting,
        ConversionState::Playable => pb::ConversionState::Playable,
        ConversionState::Complete => pb::ConversionState::Complete,
        ConversionState::Failed => pb::ConversionState::Failed,
    }
}

/// Items with their conversions, as the library hands them out.
async fn items_to_pb(library: &Library, items: Vec<MediaItem>) -> Result<Vec<pb::MediaItem>, Error> {
    let mut conversions = library.conversions_for(&items).await?;
    Ok(items
        .into_iter()
        .map(|item| {
            let conversion = conversions.remove(&item.media_item_id);
            item_to_pb(item, conversion)
        })
        .collect())
}

async fn one_item_to_pb(library: &Library, item: MediaItem) -> Result<pb::MediaItem, Error> {
    let mut items = items_to_pb(library, vec![item]).await?;
    items.pop().ok_or(Error::NotFound)
}

fn item_to_pb(item: MediaItem, conversion: Option<Conversion>) -> pb::MediaItem {
    let MediaItem {
        media_item_id,
        title,
        relative_path: _,
        size_bytes,
        modified_ms: _,
        info,
        source,
        added_by_user_id,
        room_id,
        has_thumbnail,
        created_at,
        updated_at,
    } = item;
    let crate::model::MediaInfo {
        duration_ms,
        container,
        video_codec,
        audio_codec,
        width,
        height,
        playability,
        content_type: _,
        extension: _,
    } = info;
    let thumbnail_url =
        if has_thumbnail { format!("/media/{media_item_id}/thumbnail?v={updated_at}") } else { String::new() };
    pb::MediaItem {
        media_item_id,
        title,
        size_bytes,
        duration_ms,
        container,
        video_codec,
        audio_codec,
        width,
        height,
        playability: playability_to_pb(playability).into(),
        thumbnail_url,
        source: source_to_pb(source).into(),
        added_by_user_id,
        room_id,
        create_time: Some(proto::timestamp_from_ms(created_at)),
        update_time: Some(proto::timestamp_from_ms(updated_at)),
        conversion_state: conversion
            .as_ref()
            .map_or(pb::ConversionState::Unspecified, |c| conversion_state_to_pb(c.state))
            .into(),
        converted_ms: conversion.as_ref().map_or(0, |conversion| conversion.converted_ms),
        conversion_error: conversion.map(|conversion| conversion.error).unwrap_or_default(),
    }
}

fn upload_to_pb(upload: Upload) -> pb::Upload {
    let Upload { upload_id, user_id, room_id, file_name, length_bytes, offset_bytes, created_at, expires_at } = upload;
    pb::Upload {
        upload_id,
        user_id,
        room_id,
        file_name,
        length_bytes: i64::try_from(length_bytes).unwrap_or(i64::MAX),
        offset_bytes: i64::try_from(offset_bytes).unwrap_or(i64::MAX),
        create_time: Some(proto::timestamp_from_ms(created_at)),
        expire_time: Some(proto::timestamp_from_ms(expires_at)),
    }
}

fn clamp_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `xiaowo.media.v1.MediaService`, the browser-facing part.
#[derive(Debug, Clone)]
pub struct PublicApi {
    pub(crate) library: Arc<Library>,
}

#[tonic::async_trait]
impl pb::media_service_server::MediaService for PublicApi {
    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn list_media_items(
        &self,
        request: Request<pb::ListMediaItemsRequest>,
    ) -> Result<Response<pb::ListMediaItemsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::ListMediaItemsRequest { room_id, query, page_size, page_token } = request.into_inner();
        let room = optional_room(&room_id)?;
        let (items, next) = self.library.list(&caller, room.as_ref(), &query, page_size, &page_token).await?;
        Ok(Response::new(pb::ListMediaItemsResponse {
            media_items: items_to_pb(&self.library, items).await?,
            next_page_token: next.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(media_item_id = %request.get_ref().media_item_id))]
    async fn get_media_item(
        &self,
        request: Request<pb::GetMediaItemRequest>,
    ) -> Result<Response<pb::GetMediaItemResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::GetMediaItemRequest { media_item_id, room_id } = request.into_inner();
        let room = optional_room(&room_id)?;
        let item = self.library.get(&caller, room.as_ref(), &media_item_id).await?;
        Ok(Response::new(pb::GetMediaItemResponse { media_item: Some(one_item_to_pb(&self.library, item).await?) }))
    }

    #[tracing::instrument(skip_all, fields(media_item_id = %request.get_ref().media_item_id))]
    async fn rename_media_item(
        &self,
        request: Request<pb::RenameMediaItemRequest>,
    ) -> Result<Response<pb::RenameMediaItemResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::RenameMediaItemRequest { media_item_id, title } = request.into_inner();
        let viewer = Viewer::Person { user_id: caller.user_id, member_of: None };
        let item = self.library.rename(&viewer, &media_item_id, &title).await?;
        Ok(Response::new(pb::RenameMediaItemResponse { media_item: Some(one_item_to_pb(&self.library, item).await?) }))
    }

    #[tracing::instrument(skip_all, fields(media_item_id = %request.get_ref().media_item_id))]
    async fn delete_media_item(
        &self,
        request: Request<pb::DeleteMediaItemRequest>,
    ) -> Result<Response<pb::DeleteMediaItemResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::DeleteMediaItemRequest { media_item_id } = request.into_inner();
        let viewer = Viewer::Person { user_id: caller.user_id, member_of: None };
        self.library.delete(&viewer, &media_item_id).await?;
        Ok(Response::new(pb::DeleteMediaItemResponse {}))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id, media_item_id = %request.get_ref().media_item_id))]
    async fn create_playback_url(
        &self,
        request: Request<pb::CreatePlaybackUrlRequest>,
    ) -> Result<Response<pb::CreatePlaybackUrlResponse>, Status> {
        let caller = Caller::of(&request)?;
        // sync-svc is asked with the caller's own credentials (the guard checked them).
        let token = svc_kit::auth::session_token(request.metadata()).ok_or(AuthError::Unauthenticated)?;
        let pb::CreatePlaybackUrlRequest { room_id, media_item_id } = request.into_inner();
        let mut violations = Vec::new();
        let room_id = RoomId::parse("room_id", &room_id).map_err(|violation| violations.push(violation)).ok();
        if crate::library::check_id("media_item_id", &media_item_id).is_err() {
            violations.push(Violation::new("media_item_id", "must be a media item id"));
        }
        let room_id = match room_id {
            Some(room_id) if violations.is_empty() => room_id,
            _ => return Err(Error::InvalidArgument(violations).into()),
        };
        let playback = self.library.playback_url(&caller, &token, &room_id, &media_item_id).await?;
        Ok(Response::new(pb::CreatePlaybackUrlResponse {
            url: playback.url,
            expire_time: Some(proto::timestamp_from_ms(playback.expires_at)),
            content_type: playback.content_type,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_upload_quota(
        &self,
        request: Request<pb::GetUploadQuotaRequest>,
    ) -> Result<Response<pb::GetUploadQuotaResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::GetUploadQuotaRequest {} = request.into_inner();
        let (used_bytes, active_uploads) = self.library.usage(&caller.user_id).await?;
        let limits = self.library.limits();
        Ok(Response::new(pb::GetUploadQuotaResponse {
            max_file_bytes: clamp_i64(limits.max_file_bytes),
            quota_bytes: clamp_i64(limits.quota_bytes),
            used_bytes: clamp_i64(used_bytes),
            max_concurrent_uploads: i32::try_from(limits.max_concurrent_uploads).unwrap_or(i32::MAX),
            active_uploads: i32::try_from(active_uploads).unwrap_or(i32::MAX),
        }))
    }

    #[tracing::instrument(skip_all, fields(media_item_id = %request.get_ref().media_item_id, room_id = %request.get_ref().room_id))]
    async fn list_subtitle_tracks(
        &self,
        request: Request<pb::ListSubtitleTracksRequest>,
    ) -> Result<Response<pb::ListSubtitleTracksResponse>, Status> {
        subtitles::list(&self.library, request).await
    }

    #[tracing::instrument(skip_all, fields(media_item_id = %request.get_ref().media_item_id, room_id = %request.get_ref().room_id))]
    async fn add_subtitle_track(
        &self,
        request: Request<pb::AddSubtitleTrackRequest>,
    ) -> Result<Response<pb::AddSubtitleTrackResponse>, Status> {
        subtitles::add(&self.library, request).await
    }

    #[tracing::instrument(skip_all, fields(track_id = %request.get_ref().track_id, room_id = %request.get_ref().room_id))]
    async fn delete_subtitle_track(
        &self,
        request: Request<pb::DeleteSubtitleTrackRequest>,
    ) -> Result<Response<pb::DeleteSubtitleTrackResponse>, Status> {
        subtitles::delete(&self.library, request).await
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id, media_item_id = %request.get_ref().media_item_id))]
    async fn set_room_subtitle_default(
        &self,
        request: Request<pb::SetRoomSubtitleDefaultRequest>,
    ) -> Result<Response<pb::SetRoomSubtitleDefaultResponse>, Status> {
        subtitles::set_room_default(&self.library, request).await
    }

    type WatchMediaStream = Pin<Box<dyn futures_util::Stream<Item = Result<pb::WatchMediaResponse, Status>> + Send>>;

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id, items = request.get_ref().media_item_ids.len()))]
    async fn watch_media(
        &self,
        request: Request<pb::WatchMediaRequest>,
    ) -> Result<Response<Self::WatchMediaStream>, Status> {
        use futures_util::StreamExt;
        let caller = Caller::of(&request)?;
        let pb::WatchMediaRequest { media_item_ids, room_id } = request.into_inner();
        let room = optional_room(&room_id)?;
        let events = self.library.watch_media(&caller, room.as_ref(), media_item_ids).await?;
        let stream = tokio_stream::wrappers::ReceiverStream::new(events).map(|event| {
            let event = match event {
                MediaEvent::Item(item) => {
                    let (item, conversion) = *item;
                    pb::watch_media_response::Event::MediaItem(item_to_pb(item, conversion))
                }
                MediaEvent::Removed(media_item_id) => {
                    pb::watch_media_response::Event::RemovedMediaItemId(media_item_id)
                }
                MediaEvent::Heartbeat => pb::watch_media_response::Event::Heartbeat(pb::WatchMediaHeartbeat {}),
                MediaEvent::ShuttingDown => return Err(Status::unavailable("the server is restarting; watch again")),
            };
            Ok(pb::WatchMediaResponse { event: Some(event) })
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// `xiaowo.media.v1.MediaAdminService`.
#[derive(Debug, Clone)]
pub struct AdminApi {
    pub(crate) library: Arc<Library>,
}

#[tonic::async_trait]
impl pb::media_admin_service_server::MediaAdminService for AdminApi {
    #[tracing::instrument(skip_all)]
    async fn list_library(
        &self,
        request: Request<pb::ListLibraryRequest>,
    ) -> Result<Response<pb::ListLibraryResponse>, Status> {
        let pb::ListLibraryRequest { query, page_size, page_token } = request.into_inner();
        let overview = self.library.overview(&query, page_size, &page_token).await?;
        Ok(Response::new(pb::ListLibraryResponse {
            media_items: items_to_pb(&self.library, overview.items).await?,
            next_page_token: overview.next_page_token.unwrap_or_default(),
            total_items: clamp_i64(overview.total_items),
            total_bytes: clamp_i64(overview.total_bytes),
            uploads: overview.uploads.into_iter().map(upload_to_pb).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(media_item_id = %request.get_ref().media_item_id))]
    async fn rename_library_item(
        &self,
        request: Request<pb::RenameLibraryItemRequest>,
    ) -> Result<Response<pb::RenameLibraryItemResponse>, Status> {
        let pb::RenameLibraryItemRequest { media_item_id, title } = request.into_inner();
        let item = self.library.rename(&Viewer::Admin, &media_item_id, &title).await?;
        Ok(Response::new(pb::RenameLibraryItemResponse {
            media_item: Some(one_item_to_pb(&self.library, item).await?),
        }))
    }

    #[tracing::instrument(skip_all, fields(media_item_id = %request.get_ref().media_item_id))]
    async fn delete_library_item(
        &self,
        request: Request<pb::DeleteLibraryItemRequest>,
    ) -> Result<Response<pb::DeleteLibraryItemResponse>, Status> {
        let pb::DeleteLibraryItemRequest { media_item_id } = request.into_inner();
        self.library.delete(&Viewer::Admin, &media_item_id).await?;
        Ok(Response::new(pb::DeleteLibraryItemResponse {}))
    }

    #[tracing::instrument(skip_all, fields(media_item_id = %request.get_ref().media_item_id))]
    async fn list_library_subtitle_tracks(
        &self,
        request: Request<pb::ListLibrarySubtitleTracksRequest>,
    ) -> Result<Response<pb::ListLibrarySubtitleTracksResponse>, Status> {
        subtitles::admin_list(&self.library, request).await
    }

    #[tracing::instrument(skip_all, fields(media_item_id = %request.get_ref().media_item_id))]
    async fn add_library_subtitle_track(
        &self,
        request: Request<pb::AddLibrarySubtitleTrackRequest>,
    ) -> Result<Response<pb::AddLibrarySubtitleTrackResponse>, Status> {
        subtitles::admin_add(&self.library, request).await
    }

    #[tracing::instrument(skip_all, fields(track_id = %request.get_ref().track_id))]
    async fn delete_library_subtitle_track(
        &self,
        request: Request<pb::DeleteLibrarySubtitleTrackRequest>,
    ) -> Result<Response<pb::DeleteLibrarySubtitleTrackResponse>, Status> {
        subtitles::admin_delete(&self.library, request).await
    }
}

/// The room a library call is made from: none when the field is empty, else a room id.
fn optional_room(room_id: &str) -> Result<Option<RoomId>, Error> {
    if room_id.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(RoomId::parse("room_id", room_id)?))
}

/// sync-svc's answer to "does this room play or queue the item", asked with the caller's own
/// session so that sync-svc applies its membership rule as for any of the caller's calls.
#[derive(Debug, Clone)]
pub struct SyncQueue {
    client: SyncServiceClient<Channel>,
}

impl SyncQueue {
    #[must_use]
    pub fn new(channel: Channel) -> Self {
        Self { client: SyncServiceClient::new(channel) }
    }
}

impl RoomQueue for SyncQueue {
    fn holds<'a>(
        &'a self,
        room_id: &'a RoomId,
        media_item_id: &'a str,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<bool, Error>> + Send + 'a>> {
        Box::pin(async move {
            let mut request = Request::new(sync_pb::GetRoomStateRequest { room_id: room_id.to_string() });
            let bearer = format!("Bearer {token}").parse().map_err(|_| AuthError::Unauthenticated)?;
            request.metadata_mut().insert("authorization", bearer);
            let response = self.client.clone().get_room_state(request).await.map_err(|status| match status.code() {
                tonic::Code::NotFound => Error::RoomNotFound,
                tonic::Code::PermissionDenied => Error::NotMember,
                tonic::Code::Unauthenticated => Error::Auth(AuthError::Unauthenticated),
                _ => Error::PeerUnavailable(format!("sync-svc GetRoomState: {}", status.message())),
            })?;
            let sync_pb::GetRoomStateResponse { state, watchers: _ } = response.into_inner();
            let Some(state) = state else { return Ok(false) };
            let playing = state
                .timeline
                .as_ref()
                .and_then(|timeline| timeline.media.as_ref())
                .is_some_and(|media| media.library_item_id == media_item_id);
            let queued = state
                .queue
                .iter()
                .any(|item| item.media.as_ref().is_some_and(|media| media.library_item_id == media_item_id));
            Ok(playing || queued)
        })
    }
}
