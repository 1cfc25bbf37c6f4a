//! The gRPC edge: protobuf in, domain calls, protobuf out. Nothing else in chat-svc serves
//! `proto` types (calls out to room-svc go through `svc_kit::peer::room`).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use proto::chat::v1 as pb;
use svc_kit::auth::Caller;
use svc_kit::id::{RoomId, UserId};
use svc_kit::status::Violation;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::Error;
use crate::chat::{Chat, Draft, History, HistoryPage, message_seq, mute_duration};
use crate::model::{Cursor, Message, MessageStatus, ModerationAction, ModerationKind, Sent, WatchEvent};

fn status_to_pb(status: MessageStatus) -> pb::MessageStatus {
    match status {
        MessageStatus::Stored => pb::MessageStatus::Stored,
        MessageStatus::Delivered => pb::MessageStatus::Delivered,
        MessageStatus::Deleted => pb::MessageStatus::Deleted,
    }
}

fn message_to_pb(message: Message) -> pb::Message {
    let Message { room_id, seq, sender_id, text, client_message_id, status, created_at, deleted_at, deleted_by } =
        message;
    pb::Message {
        room_id,
        seq,
        sender_id,
        text,
        client_message_id,
        status: status_to_pb(status).into(),
        create_time: Some(proto::timestamp_from_ms(created_at)),
        delete_time: deleted_at.map(proto::timestamp_from_ms),
        deleted_by: deleted_by.unwrap_or_default(),
    }
}

fn cursor_to_pb(cursor: Cursor) -> pb::Cursor {
    let Cursor { user_id, received_seq, read_seq, updated_at } = cursor;
    pb::Cursor { user_id, received_seq, read_seq, update_time: Some(proto::timestamp_from_ms(updated_at)) }
}

fn action_to_pb(action: ModerationAction) -> pb::ModerationAction {
    let ModerationAction { moderation_action_id, created_at, kind, room_id, actor_id, target_user_id, seq, mute_until } =
        action;
    let kind = match kind {
        ModerationKind::DeleteMessage => pb::ModerationKind::DeleteMessage,
        ModerationKind::MuteMember => pb::ModerationKind::MuteMember,
        ModerationKind::UnmuteMember => pb::ModerationKind::UnmuteMember,
    };
    pb::ModerationAction {
        moderation_action_id,
        create_time: Some(proto::timestamp_from_ms(created_at)),
        kind: kind.into(),
        room_id,
        actor_id,
        target_user_id,
        seq: seq.unwrap_or_default(),
        mute_until: mute_until.map(proto::timestamp_from_ms),
    }
}

fn event_to_pb(event: WatchEvent) -> pb::WatchMessagesResponse {
    use pb::watch_messages_response::Event;
    let event = match event {
        WatchEvent::Message(message) => Event::Message(message_to_pb(message)),
        WatchEvent::CaughtUp { latest_seq } => Event::CaughtUp(pb::CaughtUp { latest_seq }),
        WatchEvent::TooFarBehind { latest_seq, max_replay } => {
            Event::TooFarBehind(pb::TooFarBehind { latest_seq, max_replay })
        }
        WatchEvent::Deleted { seq, deleted_by, deleted_at } => Event::MessageDeleted(pb::MessageDeleted {
            seq,
            deleted_by,
            delete_time: Some(proto::timestamp_from_ms(deleted_at)),
        }),
        WatchEvent::StatusChanged { seq, status } => {
            Event::MessageStatusChanged(pb::MessageStatusChanged { seq, status: status_to_pb(status).into() })
        }
        WatchEvent::CursorUpdated(cursor) => Event::CursorUpdated(cursor_to_pb(cursor)),
        WatchEvent::Heartbeat { server_time } => {
            Event::Heartbeat(pb::Heartbeat { server_time: Some(proto::timestamp_from_ms(server_time)) })
        }
    };
    pb::WatchMessagesResponse { event: Some(event) }
}

fn status_from_pb(status: i32) -> Option<MessageStatus> {
    match pb::MessageStatus::try_from(status).ok()? {
        pb::MessageStatus::Stored => Some(MessageStatus::Stored),
        pb::MessageStatus::Delivered => Some(MessageStatus::Delivered),
        pb::MessageStatus::Deleted => Some(MessageStatus::Deleted),
        pb::MessageStatus::Unspecified => None,
    }
}

fn message_from_pb(message: pb::Message) -> Option<Message> {
    let pb::Message { room_id, seq, sender_id, text, client_message_id, status, create_time, delete_time, deleted_by } =
        message;
    Some(Message {
        room_id,
        seq,
        sender_id,
        text,
        client_message_id,
        status: status_from_pb(status)?,
        created_at: proto::ms_from_timestamp(&create_time?),
        deleted_at: delete_time.as_ref().map(proto::ms_from_timestamp),
        deleted_by: Some(deleted_by).filter(|deleted_by| !deleted_by.is_empty()),
    })
}

fn cursor_from_pb(cursor: pb::Cursor) -> Option<Cursor> {
    let pb::Cursor { user_id, received_seq, read_seq, update_time } = cursor;
    Some(Cursor { user_id, received_seq, read_seq, updated_at: proto::ms_from_timestamp(&update_time?) })
}

/// The live events that cross instances on the broker, as protobuf (`xiaowo.chat.v1.RoomBusEvent`),
/// like every other subject on it.
pub(crate) mod wire {
    use bytes::Bytes;
    use prost::Message as _;

    use super::{cursor_from_pb, cursor_to_pb, message_from_pb, message_to_pb, pb, status_from_pb, status_to_pb};
    use crate::model::RoomEvent;

    /// `event` encoded for the other instances; `None` for events that stay in this one
    /// (removals and closings come to every instance from room-svc; resyncs are local).
    #[must_use]
    pub fn encode(event: &RoomEvent) -> Option<Bytes> {
        use pb::room_bus_event::Event;
        let (event, sender_id) = match event.clone() {
            RoomEvent::Message(message) => (Event::Message(message_to_pb(message)), String::new()),
            RoomEvent::Deleted { seq, deleted_by, deleted_at } => {
                let deleted =
                    pb::MessageDeleted { seq, deleted_by, delete_time: Some(proto::timestamp_from_ms(deleted_at)) };
                (Event::MessageDeleted(deleted), String::new())
            }
            RoomEvent::StatusChanged { seq, sender_id, status } => {
                let changed = pb::MessageStatusChanged { seq, status: status_to_pb(status).into() };
                (Event::MessageStatusChanged(changed), sender_id)
            }
            RoomEvent::CursorUpdated(cursor) => (Event::CursorUpdated(cursor_to_pb(cursor)), String::new()),
            RoomEvent::MemberRemoved { .. }
            | RoomEvent::RoomClosed
            | RoomEvent::Resync
            | RoomEvent::Heartbeat { .. }
            | RoomEvent::ShuttingDown => return None,
        };
        Some(Bytes::from(pb::RoomBusEvent { event: Some(event), sender_id }.encode_to_vec()))
    }

    /// An event another instance published; `None` when it cannot be read (a newer instance's
    /// event, or damage): the receivers' gap detection repairs what that loses.
    #[must_use]
    pub fn decode(encoded: &[u8]) -> Option<RoomEvent> {
        use pb::room_bus_event::Event;
        let pb::RoomBusEvent { event, sender_id } = pb::RoomBusEvent::decode(encoded).ok()?;
        Some(match event? {
            Event::Message(message) => RoomEvent::Message(message_from_pb(message)?),
            Event::MessageDeleted(pb::MessageDeleted { seq, deleted_by, delete_time }) => {
                RoomEvent::Deleted { seq, deleted_by, deleted_at: proto::ms_from_timestamp(&delete_time?) }
            }
            Event::MessageStatusChanged(pb::MessageStatusChanged { seq, status }) => {
                RoomEvent::StatusChanged { seq, sender_id, status: status_from_pb(status)? }
            }
            Event::CursorUpdated(cursor) => RoomEvent::CursorUpdated(cursor_from_pb(cursor)?),
        })
    }
}

/// The room id of a request and the rest of it as `rest` checked it, or every violation of both.
pub(crate) fn in_room<T>(room_id: &str, rest: Result<T, Vec<Violation>>) -> Result<(RoomId, T), Error> {
    match (RoomId::parse("room_id", room_id), rest) {
        (Ok(room_id), Ok(rest)) => Ok((room_id, rest)),
        (room_id, rest) => {
            Err(Error::InvalidArgument(room_id.err().into_iter().chain(rest.err().unwrap_or_default()).collect()))
        }
    }
}

/// Both checked values, or every violation among them.
pub(crate) fn all_of<A, B>(
    first: Result<A, Violation>,
    second: Result<B, Violation>,
) -> Result<(A, B), Vec<Violation>> {
    match (first, second) {
        (Ok(first), Ok(second)) => Ok((first, second)),
        (first, second) => Err(first.err().into_iter().chain(second.err()).collect()),
    }
}

/// A protobuf `Duration` as a std one; `None` when absent or negative.
pub(crate) fn duration_from_pb(duration: Option<prost_types::Duration>) -> Option<Duration> {
    let prost_types::Duration { seconds, nanos } = duration?;
    let seconds = u64::try_from(seconds).ok()?;
    let nanos = u32::try_from(nanos).ok()?;
    Some(Duration::from_secs(seconds) + Duration::from_nanos(u64::from(nanos)))
}

/// `xiaowo.chat.v1.ChatService`, behind a session guard: every call carries its [`Caller`].
#[derive(Debug, Clone)]
pub struct PublicApi {
    pub(crate) chat: Arc<Chat>,
}

impl PublicApi {
    /// Counts a refusal (for monitor-svc's anomaly rules) on its way out.
    fn refused(&self, error: Error) -> Error {
        self.chat.metrics.note_refusal(&error);
        error
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::WatchMessagesResponse, Status>> + Send>>;

/// `WatchMessages` as browsers reach it, served without hyper ([`svc_kit::web_stream`]), behind
/// `guard`, the guard the chat service is registered behind.
pub(crate) fn watch_messages_for_browsers(
    api: PublicApi,
    guard: &svc_kit::auth::Guard,
) -> svc_kit::web_stream::WebStream {
    use pb::chat_service_server::ChatService;
    let api = Arc::new(api);
    svc_kit::web_stream::WebStream::new("/xiaowo.chat.v1.ChatService/WatchMessages", guard, move |request| {
        let api = Arc::clone(&api);
        async move { Ok(svc_kit::web_stream::encoded(api.watch_messages(request).await?.into_inner())) }
    })
}

#[tonic::async_trait]
impl pb::chat_service_server::ChatService for PublicApi {
    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn send_message(
        &self,
        request: Request<pb::SendMessageRequest>,
    ) -> Result<Response<pb::SendMessageResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::SendMessageRequest { room_id, text, client_message_id } = request.into_inner();
        let (room_id, draft) = in_room(&room_id, Draft::new(&text, &client_message_id))?;
        let Sent { message, duplicate } =
            self.chat.send(&caller.user_id, &room_id, draft).await.map_err(|error| self.refused(error))?;
        Ok(Response::new(pb::SendMessageResponse { message: Some(message_to_pb(message)), duplicate }))
    }

    type WatchMessagesStream = WatchStream;

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn watch_messages(
        &self,
        request: Request<pb::WatchMessagesRequest>,
    ) -> Result<Response<Self::WatchMessagesStream>, Status> {
        let caller = Caller::of(&request)?;
        let pb::WatchMessagesRequest { room_id, after_seq } = request.into_inner();
        let room_id = RoomId::parse("room_id", &room_id).map_err(Error::from)?;
        let events =
            self.chat.watch(&caller.user_id, &room_id, after_seq).await.map_err(|error| self.refused(error))?;
        let stream = events.map(|event| event.map(event_to_pb).map_err(Status::from));
        Ok(Response::new(Box::pin(stream)))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn list_messages(
        &self,
        request: Request<pb::ListMessagesRequest>,
    ) -> Result<Response<pb::ListMessagesResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::ListMessagesRequest { room_id, before_seq, page_size } = request.into_inner();
        let (room_id, page) = in_room(&room_id, HistoryPage::new(before_seq, page_size))?;
        let History { messages, next_before_seq, cursors, latest_seq } =
            self.chat.history(&caller.user_id, &room_id, page).await.map_err(|error| self.refused(error))?;
        Ok(Response::new(pb::ListMessagesResponse {
            messages: messages.into_iter().map(message_to_pb).collect(),
            next_before_seq,
            cursors: cursors.into_iter().map(cursor_to_pb).collect(),
            latest_seq,
        }))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn update_cursor(
        &self,
        request: Request<pb::UpdateCursorRequest>,
    ) -> Result<Response<pb::UpdateCursorResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::UpdateCursorRequest { room_id, received_seq, read_seq } = request.into_inner();
        let room_id = RoomId::parse("room_id", &room_id).map_err(Error::from)?;
        let cursor = self
            .chat
            .update_cursor(&caller.user_id, &room_id, received_seq, read_seq)
            .await
            .map_err(|error| self.refused(error))?;
        Ok(Response::new(pb::UpdateCursorResponse { cursor: Some(cursor_to_pb(cursor)) }))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn delete_message(
        &self,
        request: Request<pb::DeleteMessageRequest>,
    ) -> Result<Response<pb::DeleteMessageResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::DeleteMessageRequest { room_id, seq } = request.into_inner();
        let (room_id, seq) = in_room(&room_id, message_seq(seq).map_err(|violation| vec![violation]))?;
        let message = self.chat.delete(&caller.user_id, &room_id, seq).await.map_err(|error| self.refused(error))?;
        Ok(Response::new(pb::DeleteMessageResponse { message: Some(message_to_pb(message)) }))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn mute_member(
        &self,
        request: Request<pb::MuteMemberRequest>,
    ) -> Result<Response<pb::MuteMemberResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::MuteMemberRequest { room_id, user_id, duration } = request.into_inner();
        let target = UserId::parse("user_id", &user_id);
        let duration = mute_duration(duration_from_pb(duration));
        let (room_id, (target, duration)) = in_room(&room_id, all_of(target, duration))?;
        let until =
            self.chat.mute(&caller.user_id, &room_id, &target, duration).await.map_err(|error| self.refused(error))?;
        Ok(Response::new(pb::MuteMemberResponse { mute_until: Some(proto::timestamp_from_ms(until)) }))
    }

    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn unmute_member(
        &self,
        request: Request<pb::UnmuteMemberRequest>,
    ) -> Result<Response<pb::UnmuteMemberResponse>, Status> {
        let caller = Caller::of(&request)?;
        let pb::UnmuteMemberRequest { room_id, user_id } = request.into_inner();
        let target = UserId::parse("user_id", &user_id).map_err(|violation| vec![violation]);
        let (room_id, target) = in_room(&room_id, target)?;
        self.chat.unmute(&caller.user_id, &room_id, &target).await.map_err(|error| self.refused(error))?;
        Ok(Response::new(pb::UnmuteMemberResponse {}))
    }
}

/// `xiaowo.chat.v1.ChatAdminService`, for operators holding the admin token (its guard checks
/// it).
#[derive(Debug, Clone)]
pub struct AdminApi {
    pub(crate) chat: Arc<Chat>,
}

#[tonic::async_trait]
impl pb::chat_admin_service_server::ChatAdminService for AdminApi {
    #[tracing::instrument(skip_all, fields(room_id = %request.get_ref().room_id))]
    async fn list_moderation_actions(
        &self,
        request: Request<pb::ListModerationActionsRequest>,
    ) -> Result<Response<pb::ListModerationActionsResponse>, Status> {
        let pb::ListModerationActionsRequest { room_id, page_size, page_token } = request.into_inner();
        // The room is an optional filter: empty means every room.
        let room_id = (!room_id.is_empty()).then(|| RoomId::parse("room_id", &room_id)).transpose();
        let room_id = room_id.map_err(Error::from)?;
        let (actions, next) = self.chat.moderation_actions(room_id.as_ref(), page_size, &page_token).await?;
        Ok(Response::new(pb::ListModerationActionsResponse {
            moderation_actions: actions.into_iter().map(action_to_pb).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }
}
