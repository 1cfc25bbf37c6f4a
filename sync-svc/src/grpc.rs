//! The gRPC edge: protobuf in, domain calls, protobuf out. Nothing else knows `proto` (room-svc's
//! protobuf stays inside `svc_kit::peer::room`).
//!
//! `WatchRoom` is served with a codec that writes already-encoded messages: room events are
//! encoded once per room (see [`wire`]) and the same bytes go to every watcher, instead of
//! tonic encoding the same message again for each stream.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{BufMut, Bytes};
use futures_util::StreamExt;
use prost::Message;
use proto::sync::v1 as pb;
use svc_kit::auth::Caller;
use svc_kit::id::{RoomId, UserId};
use svc_kit::status::Violation;
use tokio_util::sync::CancellationToken;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::server::NamedService;
use tonic::{Code, Request, Response, Status};

use crate::Error;
use crate::rooms::{LoadError, LoadErrorKind, PlayerState, Rooms, StatusReport, Watcher};
use crate::store::SyncLog;
use crate::timeline::{self, Action, Command, Media, QueueItem, RoomState, Timeline};

/// Encoding the messages that go out on room streams, once per room.
pub mod wire {
    use super::{Bytes, Message, RoomState, UserId, Watcher, pb, state_to_pb, watcher_from_pb, watcher_to_pb};

    fn encode(event: pb::watch_room_response::Event, now_ms: i64) -> Bytes {
        let message = pb::WatchRoomResponse { server_time: Some(proto::timestamp_from_ms(now_ms)), event: Some(event) };
        Bytes::from(message.encode_to_vec())
    }

    /// A state change.
    #[must_use]
    pub fn encode_state(state: &RoomState, now_ms: i64) -> Bytes {
        encode(pb::watch_room_response::Event::State(state_to_pb(state)), now_ms)
    }

    /// Entries (watchers, or users who left) one snapshot or presence message lists at most: a
    /// room of a thousand reaches a new stream in twenty small messages, so that no stream's
    /// buffers grow to the room's whole list and stay that size.
    pub const ENTRIES_PER_MESSAGE: usize = 50;

    /// A full snapshot, as the messages a stream sends in order: the snapshot with the first
    /// [`ENTRIES_PER_MESSAGE`] watchers, then the rest as one paged presence delta.
    #[must_use]
    pub fn encode_snapshot(state: &RoomState, watchers: &[Watcher], now_ms: i64) -> Vec<Bytes> {
        let (first, rest) = watchers.split_at(watchers.len().min(ENTRIES_PER_MESSAGE));
        let snapshot =
            pb::Snapshot { state: Some(state_to_pb(state)), watchers: first.iter().map(watcher_to_pb).collect() };
        let mut messages = vec![encode(pb::watch_room_response::Event::Snapshot(snapshot), now_ms)];
        if !rest.is_empty() {
            messages.extend(encode_presence_delta(rest, &[], watchers.len(), now_ms));
        }
        messages
    }

    /// Who is watching.
    #[must_use]
    pub fn encode_presence(watchers: &[Watcher], now_ms: i64) -> Bytes {
        let presence = pb::Presence { watchers: watchers.iter().map(watcher_to_pb).collect() };
        encode(pb::watch_room_response::Event::Presence(presence), now_ms)
    }

    /// What changed in presence: `watchers` joined or changed, `left` stopped watching;
    /// `watcher_count` watch now. One message, or pages of [`ENTRIES_PER_MESSAGE`] entries
    /// (watchers first), each but the last marked `more`.
    #[must_use]
    pub fn encode_presence_delta(
        watchers: &[Watcher],
        left: &[UserId],
        watcher_count: usize,
        now_ms: i64,
    ) -> Vec<Bytes> {
        let watcher_count = i32::try_from(watcher_count).unwrap_or(i32::MAX);
        let pages = (watchers.len() + left.len()).div_ceil(ENTRIES_PER_MESSAGE).max(1);
        let (mut watchers, mut left) = (watchers.iter(), left.iter());
        (0..pages)
            .map(|page| {
                let watchers: Vec<_> = watchers.by_ref().take(ENTRIES_PER_MESSAGE).map(watcher_to_pb).collect();
                let room = ENTRIES_PER_MESSAGE - watchers.len();
                let delta = pb::PresenceDelta {
                    watchers,
                    left_user_ids: left.by_ref().take(room).map(ToString::to_string).collect(),
                    watcher_count,
                    more: page + 1 < pages,
                };
                encode(pb::watch_room_response::Event::PresenceDelta(delta), now_ms)
            })
            .collect()
    }

    /// The watchers of a presence another instance shared ([`encode_presence`]'s output);
    /// `None` for anything else.
    #[must_use]
    pub fn decode_presence(encoded: &[u8]) -> Option<Vec<Watcher>> {
        let message = pb::WatchRoomResponse::decode(encoded).ok()?;
        let pb::watch_room_response::Event::Presence(presence) = message.event? else { return None };
        Some(presence.watchers.into_iter().map(watcher_from_pb).collect())
    }

    /// A heartbeat.
    #[must_use]
    pub fn encode_heartbeat(now_ms: i64) -> Bytes {
        encode(pb::watch_room_response::Event::Heartbeat(pb::Heartbeat {}), now_ms)
    }
}

fn action_to_pb(action: Action) -> pb::Action {
    match action {
        Action::None => pb::Action::Unspecified,
        Action::Play => pb::Action::Play,
        Action::Pause => pb::Action::Pause,
        Action::Seek => pb::Action::Seek,
        Action::SetRate => pb::Action::SetRate,
        Action::ChangeMedia => pb::Action::ChangeMedia,
        Action::QueueAdd => pb::Action::QueueAdd,
        Action::QueueRemove => pb::Action::QueueRemove,
        Action::QueueMove => pb::Action::QueueMove,
        Action::PlayNext => pb::Action::PlayNext,
        Action::SetWaitForEveryone => pb::Action::SetWaitForEveryone,
        Action::AutoAdvance => pb::Action::AutoAdvance,
        Action::WaitPause => pb::Action::WaitPause,
        Action::WaitResume => pb::Action::WaitResume,
    }
}

fn media_to_pb(media: &Media) -> pb::Media {
    let Media { media_id, url, title, duration_ms, library_item_id } = media;
    pb::Media {
        media_id: media_id.clone(),
        url: url.clone(),
        title: title.clone(),
        duration_ms: *duration_ms,
        library_item_id: library_item_id.clone(),
    }
}

fn queue_item_to_pb(item: &QueueItem) -> pb::QueueItem {
    let QueueItem { media, added_by_user_id, added_at } = item;
    pb::QueueItem {
        item_id: media.media_id.clone(),
        media: Some(media_to_pb(media)),
        added_by_user_id: added_by_user_id.clone(),
        add_time: Some(proto::timestamp_from_ms(*added_at)),
    }
}

pub(crate) fn state_to_pb(state: &RoomState) -> pb::RoomState {
    let RoomState {
        room_id,
        version,
        timeline,
        queue,
        wait_for_everyone,
        waiting_for,
        last_action,
        last_action_user_id,
        updated_at,
    } = state;
    let Timeline { media, paused, rate, position_ms, anchor_ms, lead_in_rate } = timeline;
    pb::RoomState {
        room_id: room_id.to_string(),
        version: *version,
        timeline: Some(pb::Timeline {
            media: media.as_ref().map(media_to_pb),
            paused: *paused,
            rate: *rate,
            position_ms: *position_ms,
            anchor_time: Some(proto::timestamp_from_ms(*anchor_ms)),
            lead_in_rate: *lead_in_rate,
        }),
        queue: queue.iter().map(queue_item_to_pb).collect(),
        wait_for_everyone: *wait_for_everyone,
        waiting_for_user_ids: waiting_for.clone(),
        last_action: action_to_pb(*last_action).into(),
        last_action_user_id: last_action_user_id.clone(),
        update_time: Some(proto::timestamp_from_ms(*updated_at)),
    }
}

fn player_state_to_pb(state: PlayerState) -> pb::PlayerState {
    match state {
        PlayerState::Unknown => pb::PlayerState::Unspecified,
        PlayerState::Ready => pb::PlayerState::Ready,
        PlayerState::Buffering => pb::PlayerState::Buffering,
        PlayerState::Ended => pb::PlayerState::Ended,
        PlayerState::Failed => pb::PlayerState::Failed,
    }
}

fn player_state_from_pb(state: i32) -> Option<PlayerState> {
    match pb::PlayerState::try_from(state) {
        Ok(pb::PlayerState::Ready) => Some(PlayerState::Ready),
        Ok(pb::PlayerState::Buffering) => Some(PlayerState::Buffering),
        Ok(pb::PlayerState::Ended) => Some(PlayerState::Ended),
        Ok(pb::PlayerState::Failed) => Some(PlayerState::Failed),
        Ok(pb::PlayerState::Unspecified) | Err(_) => None,
    }
}

fn load_error_kind_to_pb(kind: LoadErrorKind) -> pb::LoadErrorKind {
    match kind {
        LoadErrorKind::Network => pb::LoadErrorKind::Network,
        LoadErrorKind::HttpStatus => pb::LoadErrorKind::HttpStatus,
        LoadErrorKind::Decode => pb::LoadErrorKind::Decode,
        LoadErrorKind::Unsupported => pb::LoadErrorKind::Unsupported,
        LoadErrorKind::NoRangeSupport => pb::LoadErrorKind::NoRangeSupport,
    }
}

fn load_error_kind_from_pb(kind: i32) -> Option<LoadErrorKind> {
    match pb::LoadErrorKind::try_from(kind) {
        Ok(pb::LoadErrorKind::Network) => Some(LoadErrorKind::Network),
        Ok(pb::LoadErrorKind::HttpStatus) => Some(LoadErrorKind::HttpStatus),
        Ok(pb::LoadErrorKind::Decode) => Some(LoadErrorKind::Decode),
        Ok(pb::LoadErrorKind::Unsupported) => Some(LoadErrorKind::Unsupported),
        Ok(pb::LoadErrorKind::NoRangeSupport) => Some(LoadErrorKind::NoRangeSupport),
        Ok(pb::LoadErrorKind::Unspecified) | Err(_) => None,
    }
}

fn load_error_to_pb(error: &LoadError) -> pb::LoadError {
    let LoadError { media_id, kind, http_status, detail } = error;
    pb::LoadError {
        media_id: media_id.clone(),
        kind: load_error_kind_to_pb(*kind).into(),
        http_status: *http_status,
        detail: detail.clone(),
    }
}

/// A player's load error from a report, checked: a kind, a status only with HTTP_STATUS, a
/// short detail of plain text.
fn load_error_from_pb(error: pb::LoadError, violations: &mut Vec<Violation>) -> Option<LoadError> {
    let pb::LoadError { media_id, kind, http_status, detail } = error;
    let Some(kind) = load_error_kind_from_pb(kind) else {
        violations.push(Violation::new("load_error.kind", "must be set"));
        return None;
    };
    if media_id.is_empty() || media_id.len() > 64 {
        violations.push(Violation::new("load_error.media_id", "must be a media id"));
    }
    let status_ok = match kind {
        LoadErrorKind::HttpStatus => (100..=599).contains(&http_status),
        _ => http_status == 0,
    };
    if !status_ok {
        violations.push(Violation::new("load_error.http_status", "must be 100 to 599 with HTTP_STATUS, else 0"));
    }
    let detail = LOAD_ERROR_DETAIL.check(&detail).map_err(|violation| violations.push(violation)).ok()?;
    status_ok.then_some(LoadError { media_id, kind, http_status, detail })
}

/// A player's own words for a load error.
const LOAD_ERROR_DETAIL: svc_kit::text::TextRule =
    svc_kit::text::TextRule { field: "load_error.detail", min_chars: 0, max_chars: 200, allow_newline: false };

fn watcher_to_pb(watcher: &Watcher) -> pb::Watcher {
    let Watcher {
        user_id,
        display_name,
        state,
        offset_ms,
        offset_uncertainty_ms,
        round_trip_ms,
        ignore_wait,
        reported_at,
        load_error,
    } = watcher;
    pb::Watcher {
        user_id: user_id.clone(),
        display_name: display_name.clone(),
        state: player_state_to_pb(*state).into(),
        offset_ms: *offset_ms,
        round_trip_ms: *round_trip_ms,
        ignore_wait: *ignore_wait,
        report_time: Some(proto::timestamp_from_ms(*reported_at)),
        offset_uncertainty_ms: *offset_uncertainty_ms,
        load_error: load_error.as_ref().map(load_error_to_pb),
    }
}

fn watcher_from_pb(watcher: pb::Watcher) -> Watcher {
    let pb::Watcher {
        user_id,
        display_name,
        state,
        offset_ms,
        round_trip_ms,
        ignore_wait,
        report_time,
        offset_uncertainty_ms,
        load_error,
    } = watcher;
    let state = player_state_from_pb(state).unwrap_or(PlayerState::Unknown);
    let reported_at = report_time.map_or(0, |time| proto::ms_from_timestamp(&time));
    // Another instance already checked it; one this build cannot read is left out.
    let load_error = load_error.and_then(|error| load_error_from_pb(error, &mut Vec::new()));
    Watcher {
        user_id,
        display_name,
        state,
        offset_ms,
        offset_uncertainty_ms,
        round_trip_ms,
        ignore_wait,
        reported_at,
        load_error,
    }
}

/// `ABORTED` for a stale version, carrying the current state: the details are a
/// `google.rpc.Status` whose one `Any` is a `xiaowo.sync.v1.RoomState`.
pub(crate) fn conflict_status(state: &RoomState) -> Status {
    let message = format!("stale version; the room is at version {}", state.version);
    let details = tonic_types::Status {
        code: Code::Aborted as i32,
        message: message.clone(),
        details: vec![prost_types::Any {
            type_url: "type.googleapis.com/xiaowo.sync.v1.RoomState".to_owned(),
            value: state_to_pb(state).encode_to_vec(),
        }],
    };
    Status::with_details(Code::Aborted, message, Bytes::from(details.encode_to_vec()))
}

/// Most rooms one ListNowPlaying may name (a page of a room list).
const MAX_NOW_PLAYING_ROOMS: usize = 50;

fn check_room_id(room_id: &str) -> Result<RoomId, Violation> {
    RoomId::parse("room_id", room_id)
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Builds a media item from request fields, collecting every violation.
fn check_media(
    url: &str,
    library_item_id: &str,
    title: &str,
    duration_ms: i64,
    violations: &mut Vec<Violation>,
) -> Option<Media> {
    let source =
        timeline::check_media_source(url, library_item_id).map_err(|mut found| violations.append(&mut found)).ok();
    let title = timeline::TITLE.check(title).map_err(|violation| violations.push(violation)).ok();
    let duration_ms =
        timeline::check_non_negative("duration_ms", duration_ms).map_err(|violation| violations.push(violation)).ok();
    let (url, library_item_id) = source?;
    Some(Media { media_id: new_id(), url, title: title?, duration_ms: duration_ms?, library_item_id })
}

/// The room id, or every violation found with it.
pub(crate) fn validated<T>(room_id: &str, rest: Result<T, Vec<Violation>>) -> Result<(RoomId, T), Error> {
    let mut violations = Vec::new();
    let room_id = check_room_id(room_id).map_err(|violation| violations.push(violation)).ok();
    let rest = rest.map_err(|mut more| violations.append(&mut more)).ok();
    match (room_id, rest) {
        (Some(room_id), Some(rest)) if violations.is_empty() => Ok((room_id, rest)),
        _ => Err(Error::InvalidArgument(violations)),
    }
}

/// `xiaowo.sync.v1.SyncService`, the browser-facing part, behind a session guard: every call
/// but `GetClock` carries its [`Caller`].
#[derive(Debug, Clone)]
pub struct PublicApi {
    pub(crate) rooms: Arc<Rooms>,
    pub(crate) shutdown: CancellationToken,
}

impl PublicApi {
    async fn run(
        &self,
        caller: &Caller,
        room_id: &str,
        expected_version: Option<i64>,
        command: Result<Command, Vec<Violation>>,
    ) -> Result<pb::RoomState, Error> {
        let (room_id, command) = validated(room_id, command)?;
        tracing::Span::current().record("room_id", room_id.as_str());
        let state = self.rooms.command(&room_id, caller, expected_version, command).await;
        let state = state.inspect_err(|error| self.rooms.note_refusal(error))?;
        Ok(state_to_pb(&state))
    }

    /// `WatchRoom`'s stream of encoded messages, in its own span.
    async fn watch_room_encoded(
        &self,
        request: Request<pb::WatchRoomRequest>,
    ) -> Result<svc_kit::web_stream::EncodedStream, Status> {
        let span = tracing::info_span!("watch_room", room_id = tracing::field::Empty);
        let stream = tracing::Instrument::instrument(self.watch_encoded(request), span).await?;
        Ok(Box::pin(stream.map(|item| item.map_err(Status::from))))
    }

    /// The encoded stream `WatchRoom` serves.
    async fn watch_encoded(&self, request: Request<pb::WatchRoomRequest>) -> Result<crate::rooms::WatchStream, Status> {
        let caller = Caller::of(&request)?;
        let pb::WatchRoomRequest { room_id } = request.into_inner();
        let (room_id, ()) = validated(&room_id, Ok(()))?;
        tracing::Span::current().record("room_id", room_id.as_str());
        let stream = self.rooms.watch(&room_id, &caller, &self.shutdown).await;
        Ok(stream.inspect_err(|error| self.rooms.note_refusal(error))?)
    }
}

fn one<T>(result: Result<T, Violation>) -> Result<T, Vec<Violation>> {
    result.map_err(|violation| vec![violation])
}

#[tonic::async_trait]
impl pb::sync_service_server::SyncService for PublicApi {
    type WatchRoomStream =
        std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<pb::WatchRoomResponse, Status>> + Send>>;

    async fn get_clock(&self, request: Request<pb::GetClockRequest>) -> Result<Response<pb::GetClockResponse>, Status> {
        let receive_time = self.rooms.now_ms();
        let pb::GetClockRequest {} = request.into_inner();
        Ok(Response::new(pb::GetClockResponse {
            receive_time: Some(proto::timestamp_from_ms(receive_time)),
            send_time: Some(proto::timestamp_from_ms(self.rooms.now_ms())),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_now_playing(
        &self,
        request: Request<pb::ListNowPlayingRequest>,
    ) -> Result<Response<pb::ListNowPlayingResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::ListNowPlayingRequest { room_ids } = request.into_inner();
        if room_ids.len() > MAX_NOW_PLAYING_ROOMS {
            let violation = Violation::new("room_ids", format!("at most {MAX_NOW_PLAYING_ROOMS} rooms"));
            return Err(Error::InvalidArgument(vec![violation]).into());
        }
        let mut now_playing = Vec::with_capacity(room_ids.len());
        for room_id in room_ids {
            let room_id = check_room_id(&room_id).map_err(|violation| Error::InvalidArgument(vec![violation]))?;
            match self.rooms.get(&room_id, &caller).await {
                Ok((state, _)) => now_playing.push(pb::NowPlaying {
                    room_id: room_id.to_string(),
                    media: state.timeline.media.as_ref().map(media_to_pb),
                    paused: state.timeline.paused,
                }),
                Err(Error::NotMember | Error::Forbidden(_) | Error::RoomNotFound | Error::FailedPrecondition(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(Response::new(pb::ListNowPlayingResponse { now_playing }))
    }

    #[tracing::instrument(skip_all, fields(room_id))]
    async fn get_room_state(
        &self,
        request: Request<pb::GetRoomStateRequest>,
    ) -> Result<Response<pb::GetRoomStateResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::GetRoomStateRequest { room_id } = request.into_inner();
        let (room_id, ()) = validated(&room_id, Ok(()))?;
        tracing::Span::current().record("room_id", room_id.as_str());
        let (state, watchers) = self.rooms.get(&room_id, &caller).await?;
        Ok(Response::new(pb::GetRoomStateResponse {
            state: Some(state_to_pb(&state)),
            watchers: watchers.iter().map(watcher_to_pb).collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(room_id))]
    async fn play(&self, request: Request<pb::PlayRequest>) -> Result<Response<pb::PlayResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::PlayRequest { room_id, expected_version, start_time } = request.into_inner();
        let requested = start_time.as_ref().map(proto::ms_from_timestamp);
        let start_at_ms = match check_room_id(&room_id) {
            Ok(id) => self.rooms.start_time(&id, requested, "start_time").map_err(Error::from)?,
            Err(violation) => return Err(Error::from(violation).into()),
        };
        let state = self.run(&caller, &room_id, Some(expected_version), Ok(Command::Play { start_at_ms })).await?;
        Ok(Response::new(pb::PlayResponse { state: Some(state) }))
    }

    #[tracing::instrument(skip_all, fields(room_id))]
    async fn pause(&self, request: Request<pb::PauseRequest>) -> Result<Response<pb::PauseResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::PauseRequest { room_id, expected_version, position_ms } = request.into_inner();
        let command = one(position_ms
            .map(|position| timeline::check_non_negative("position_ms", position))
            .transpose()
            .map(|position_ms| Command::Pause { position_ms }));
        let state = self.run(&caller, &room_id, Some(expected_version), command).await?;
        Ok(Response::new(pb::PauseResponse { state: Some(state) }))
    }

    #[tracing::instrument(skip_all, fields(room_id))]
    async fn seek(&self, request: Request<pb::SeekRequest>) -> Result<Response<pb::SeekResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::SeekRequest { room_id, expected_version, position_ms } = request.into_inner();
        let command =
            one(timeline::check_non_negative("position_ms", position_ms)
                .map(|position_ms| Command::Seek { position_ms }));
        let state = self.run(&caller, &room_id, Some(expected_version), command).await?;
        Ok(Response::new(pb::SeekResponse { state: Some(state) }))
    }

    #[tracing::instrument(skip_all, fields(room_id))]
    async fn set_rate(&self, request: Request<pb::SetRateRequest>) -> Result<Response<pb::SetRateResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::SetRateRequest { room_id, expected_version, rate, start_time } = request.into_inner();
        let requested = start_time.as_ref().map(proto::ms_from_timestamp);
        // The lead covers the round trips of this room's members. A malformed id is refused by
        // `run` beside whatever else is wrong, so its start time is never used.
        let start_at_ms =
            check_room_id(&room_id).map_or(Ok(0), |id| self.rooms.start_time(&id, requested, "start_time"));
        let command = match (timeline::check_rate("rate", rate), start_at_ms) {
            (Ok(rate), Ok(start_at_ms)) => Ok(Command::SetRate { rate, start_at_ms }),
            (rate, start_at_ms) => Err(rate.err().into_iter().chain(start_at_ms.err()).collect()),
        };
        let state = self.run(&caller, &room_id, Some(expected_version), command).await?;
        Ok(Response::new(pb::SetRateResponse { state: Some(state) }))
    }

    #[tracing::instrument(skip_all, fields(room_id))]
    async fn change_media(
        &self,
        request: Request<pb::ChangeMediaRequest>,
    ) -> Result<Response<pb::ChangeMediaResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::ChangeMediaRequest { room_id, expected_version, url, title, duration_ms, library_item_id } =
            request.into_inner();
        let mut violations = Vec::new();
        let media = check_media(&url, &library_item_id, &title, duration_ms, &mut violations);
        let command = media.map(|media| Command::ChangeMedia { media }).ok_or(violations);
        let state = self.run(&caller, &room_id, Some(expected_version), command).await?;
        Ok(Response::new(pb::ChangeMediaResponse { state: Some(state) }))
    }

    #[tracing::instrument(skip_all, fields(room_id))]
    async fn add_queue_item(
        &self,
        request: Request<pb::AddQueueItemRequest>,
    ) -> Result<Response<pb::AddQueueItemResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::AddQueueItemRequest { room_id, expected_version, url, title, duration_ms, library_item_id } =
            request.into_inner();
        let mut violations = Vec::new();
        let media = check_media(&url, &library_item_id, &title, duration_ms, &mut violations);
        let item = media.map(|media| QueueItem {
            media,
            added_by_user_id: caller.user_id.to_string(),
            added_at: self.rooms.now_ms(),
        });
        let item_id = item.as_ref().map(|item| item.media.media_id.clone()).unwrap_or_default();
        let command = item.map(|item| Command::QueueAdd { item }).ok_or(violations);
        let state = self.run(&caller, &room_id, expected_version, command).await?;
        let item = state.queue.iter().find(|item| item.item_id == item_id).cloned();
        Ok(Response::new(pb::AddQueueItemResponse { state: Some(state), item }))
    }

    #[tracing::instrument(skip_all, fields(room_id))]
    async fn remove_queue_item(
        &self,
        request: Request<pb::RemoveQueueItemRequest>,
    ) -> Result<Response<pb::RemoveQueueItemResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::RemoveQueueItemRequest { room_id, expected_version, item_id } = request.into_inner();
        let command = if item_id.is_empty() {
            Err(vec![Violation::new("item_id", "must not be empty")])
        } else {
            Ok(Command::QueueRemove { item_id })
        };
        let state = self.run(&caller, &room_id, Some(expected_version), command).await?;
        Ok(Response::new(pb::RemoveQueueItemResponse { state: Some(state) }))
    }

    #[tracing::instrument(skip_all, fields(room_id))]
    async fn move_queue_item(
        &self,
        request: Request<pb::MoveQueueItemRequest>,
    ) -> Result<Response<pb::MoveQueueItemResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::MoveQueueItemRequest { room_id, expected_version, item_id, new_index } = request.into_inner();
        let mut violations = Vec::new();
        if item_id.is_empty() {
            violations.push(Violation::new("item_id", "must not be empty"));
        }
        let new_index = usize::try_from(new_index)
            .map_err(|_| violations.push(Violation::new("new_index", "must not be negative")))
            .ok();
        let command = match new_index {
            Some(new_index) if violations.is_empty() => Ok(Command::QueueMove { item_id, new_index }),
            _ => Err(violations),
        };
        let state = self.run(&caller, &room_id, Some(expected_version), command).await?;
        Ok(Response::new(pb::MoveQueueItemResponse { state: Some(state) }))
    }

    #[tracing::instrument(skip_all, fields(room_id))]
    async fn play_next(&self, request: Request<pb::PlayNextRequest>) -> Result<Response<pb::PlayNextResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::PlayNextRequest { room_id, expected_version } = request.into_inner();
        let start_at_ms = match check_room_id(&room_id) {
            Ok(id) => self.rooms.start_time(&id, None, "start_time").map_err(Error::from)?,
            Err(violation) => return Err(Error::from(violation).into()),
        };
        let state = self.run(&caller, &room_id, Some(expected_version), Ok(Command::PlayNext { start_at_ms })).await?;
        Ok(Response::new(pb::PlayNextResponse { state: Some(state) }))
    }

    #[tracing::instrument(skip_all, fields(room_id))]
    async fn set_wait_for_everyone(
        &self,
        request: Request<pb::SetWaitForEveryoneRequest>,
    ) -> Result<Response<pb::SetWaitForEveryoneResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::SetWaitForEveryoneRequest { room_id, expected_version, enabled } = request.into_inner();
        let command = Ok(Command::SetWaitForEveryone { enabled });
        let state = self.run(&caller, &room_id, Some(expected_version), command).await?;
        Ok(Response::new(pb::SetWaitForEveryoneResponse { state: Some(state) }))
    }

    #[tracing::instrument(skip_all, fields(room_id))]
    async fn report_status(
        &self,
        request: Request<pb::ReportStatusRequest>,
    ) -> Result<Response<pb::ReportStatusResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::ReportStatusRequest {
            room_id,
            state,
            offset_ms,
            round_trip_ms,
            ignore_wait,
            media_id,
            offset_uncertainty_ms,
            load_error,
        } = request.into_inner();
        let mut violations = Vec::new();
        let state = player_state_from_pb(state).unwrap_or_else(|| {
            violations.push(Violation::new("state", "must be READY, BUFFERING, ENDED or FAILED"));
            PlayerState::Unknown
        });
        let load_error = load_error.and_then(|error| load_error_from_pb(error, &mut violations));
        if state == PlayerState::Failed && load_error.is_none() && violations.is_empty() {
            violations.push(Violation::new("load_error", "must say why with FAILED"));
        }
        if timeline::check_non_negative("round_trip_ms", round_trip_ms).is_err() || round_trip_ms > 60_000 {
            violations.push(Violation::new("round_trip_ms", "must be from 0 to 60000"));
        }
        if offset_ms.unsigned_abs() > 86_400_000 {
            violations.push(Violation::new("offset_ms", "must be within a day"));
        }
        if !(0..=60_000).contains(&offset_uncertainty_ms) {
            violations.push(Violation::new("offset_uncertainty_ms", "must be from 0 to 60000"));
        }
        // An older client does not say: half its round trip bounds its clock error.
        let offset_uncertainty_ms = if offset_uncertainty_ms > 0 { offset_uncertainty_ms } else { round_trip_ms / 2 };
        if media_id.len() > 64 {
            violations.push(Violation::new("media_id", "must be a media id"));
        }
        let report =
            StatusReport { state, offset_ms, offset_uncertainty_ms, round_trip_ms, ignore_wait, media_id, load_error };
        let rest = if violations.is_empty() { Ok(report) } else { Err(violations) };
        let (room_id, report) = validated(&room_id, rest)?;
        tracing::Span::current().record("room_id", room_id.as_str());
        self.rooms.report(&room_id, &caller, report).await?;
        Ok(Response::new(pb::ReportStatusResponse {}))
    }

    #[tracing::instrument(skip_all, fields(room_id))]
    async fn watch_room(
        &self,
        request: Request<pb::WatchRoomRequest>,
    ) -> Result<Response<Self::WatchRoomStream>, Status> {
        // Served through `SyncServer` with pre-encoded messages; this decoding path exists only
        // so that the generated server stays complete.
        let encoded = self.watch_encoded(request).await?;
        let decoded = encoded.map(|item| match item {
            Ok(bytes) => pb::WatchRoomResponse::decode(bytes).map_err(|_| Status::internal("internal error")),
            Err(error) => Err(Status::from(error)),
        });
        Ok(Response::new(Box::pin(decoded)))
    }
}

/// Writes messages that are already protobuf-encoded; reads `WatchRoomRequest`s.
#[derive(Debug, Clone, Copy, Default)]
struct PreEncodedCodec;

impl Codec for PreEncodedCodec {
    type Encode = Bytes;
    type Decode = pb::WatchRoomRequest;
    type Encoder = PreEncodedCodec;
    type Decoder = PreEncodedCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for PreEncodedCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }

    /// The buffers every generated service starts with (`proto::codec`).
    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(proto::codec::BUFFER_BYTES, proto::codec::YIELD_BYTES)
    }
}

impl Decoder for PreEncodedCodec {
    type Item = pb::WatchRoomRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<pb::WatchRoomRequest>, Status> {
        pb::WatchRoomRequest::decode(src).map(Some).map_err(|_| Status::invalid_argument("malformed request"))
    }
}

const WATCH_ROOM_PATH: &str = "/xiaowo.sync.v1.SyncService/WatchRoom";

/// `WatchRoom` as browsers reach it, served without hyper ([`svc_kit::web_stream`]), behind
/// `guard`, the guard `SyncServer` is registered behind.
pub(crate) fn watch_room_for_browsers(api: PublicApi, guard: &svc_kit::auth::Guard) -> svc_kit::web_stream::WebStream {
    svc_kit::web_stream::WebStream::new(WATCH_ROOM_PATH, guard, move |request| {
        let api = api.clone();
        async move { api.watch_room_encoded(request).await }
    })
}

/// `SyncService` as registered: `WatchRoom` goes out pre-encoded, everything else through the
/// generated server.
#[derive(Clone)]
pub struct SyncServer {
    api: PublicApi,
    generated: pb::sync_service_server::SyncServiceServer<PublicApi>,
    max_message_bytes: usize,
}

impl SyncServer {
    pub(crate) fn new(api: PublicApi, max_message_bytes: usize) -> Self {
        let generated = pb::sync_service_server::SyncServiceServer::new(api.clone())
            .max_decoding_message_size(max_message_bytes)
            .max_encoding_message_size(max_message_bytes);
        Self { api, generated, max_message_bytes }
    }
}

impl NamedService for SyncServer {
    const NAME: &'static str = "xiaowo.sync.v1.SyncService";
}

/// The pre-encoded `WatchRoom` handler, in the shape tonic's streaming server calls.
#[derive(Clone)]
struct WatchRoomMethod(PublicApi);

impl tower::Service<Request<pb::WatchRoomRequest>> for WatchRoomMethod {
    type Response = Response<svc_kit::web_stream::EncodedStream>;
    type Error = Status;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Status>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<pb::WatchRoomRequest>) -> Self::Future {
        let api = self.0.clone();
        Box::pin(async move { Ok(Response::new(api.watch_room_encoded(request).await?)) })
    }
}

impl tower::Service<http::Request<tonic::body::Body>> for SyncServer {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() == WATCH_ROOM_PATH {
            let method = WatchRoomMethod(self.api.clone());
            let max_message_bytes = self.max_message_bytes;
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(PreEncodedCodec)
                    .apply_max_message_size_config(Some(max_message_bytes), Some(max_message_bytes));
                Ok(grpc.server_streaming(method, request).await)
            })
        } else {
            tower::Service::call(&mut self.generated, request)
        }
    }
}

fn sync_log_to_pb(log: SyncLog) -> pb::SyncLog {
    let SyncLog { sync_log_id, room_id, user_id, action, position_ms, version, created_at } = log;
    pb::SyncLog {
        sync_log_id,
        room_id,
        user_id,
        action: action_to_pb(Action::from_name(&action)).into(),
        position_ms,
        version,
        create_time: Some(proto::timestamp_from_ms(created_at)),
    }
}

/// `xiaowo.sync.v1.SyncAdminService`, for operators holding the admin token (its guard checks
/// it).
#[derive(Debug, Clone)]
pub struct AdminApi {
    pub(crate) rooms: Arc<Rooms>,
}

#[tonic::async_trait]
impl pb::sync_admin_service_server::SyncAdminService for AdminApi {
    #[tracing::instrument(skip_all, fields(room_id))]
    async fn list_sync_logs(
        &self,
        request: Request<pb::ListSyncLogsRequest>,
    ) -> Result<Response<pb::ListSyncLogsResponse>, Status> {
        let pb::ListSyncLogsRequest { room_id, start_time, end_time, page_size, page_token } = request.into_inner();
        let (room_id, ()) = validated(&room_id, Ok(()))?;
        tracing::Span::current().record("room_id", room_id.as_str());
        let (logs, next) = self
            .rooms
            .sync_logs(
                &room_id,
                start_time.as_ref().map(proto::ms_from_timestamp),
                end_time.as_ref().map(proto::ms_from_timestamp),
                page_size,
                &page_token,
            )
            .await?;
        Ok(Response::new(pb::ListSyncLogsResponse {
            sync_logs: logs.into_iter().map(sync_log_to_pb).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }
}
