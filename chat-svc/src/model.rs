//! chat-svc's own types: what the domain, the store and the live-delivery boundary exchange.
//! Protobuf never reaches past `grpc.rs`; these do.

use svc_kit::id::{RoomId, UserId};

/// Where a message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageStatus {
    /// Committed.
    Stored,
    /// Handed to every watcher connected when it was sent.
    Delivered,
    /// Removed by a moderator.
    Deleted,
}

/// A chat message. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub room_id: String,
    pub seq: i64,
    pub sender_id: String,
    pub text: String,
    pub client_message_id: String,
    pub status: MessageStatus,
    pub created_at: i64,
    pub deleted_at: Option<i64>,
    pub deleted_by: Option<String>,
}

/// A message as submitted, before it has a sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub room_id: RoomId,
    pub sender_id: UserId,
    pub text: String,
    pub client_message_id: String,
    pub created_at: i64,
}

/// The answer to a send: the stored message and whether it had been stored before (a retry).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub message: Message,
    pub duplicate: bool,
}

/// What became of one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored now or before.
    Sent(Sent),
    /// Not stored: the sender is muted until then (Unix milliseconds).
    Muted { until: i64 },
}

/// How far one member has received and read a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub user_id: String,
    pub received_seq: i64,
    pub read_seq: i64,
    pub updated_at: i64,
}

/// What a moderator did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModerationKind {
    DeleteMessage,
    MuteMember,
    UnmuteMember,
}

impl ModerationKind {
    /// The value stored in `moderation_actions.kind`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeleteMessage => "message.delete",
            Self::MuteMember => "member.mute",
            Self::UnmuteMember => "member.unmute",
        }
    }

    /// The kind stored as `value`, if any.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        [Self::DeleteMessage, Self::MuteMember, Self::UnmuteMember].into_iter().find(|kind| kind.as_str() == value)
    }
}

/// One row of the moderation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModerationAction {
    pub moderation_action_id: i64,
    pub created_at: i64,
    pub kind: ModerationKind,
    pub room_id: String,
    pub actor_id: String,
    pub target_user_id: String,
    pub seq: Option<i64>,
    pub mute_until: Option<i64>,
}

/// What passes through the publish/subscribe boundary for one room (a broker between instances
/// carries what crosses them as protobuf: `grpc::wire`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomEvent {
    /// A newly committed message, published in sequence order.
    Message(Message),
    /// A message was deleted.
    Deleted { seq: i64, deleted_by: String, deleted_at: i64 },
    /// A message's status moved on (stored → delivered): only its sender's streams hear it.
    StatusChanged { seq: i64, sender_id: String, status: MessageStatus },
    /// A member's cursor moved.
    CursorUpdated(Cursor),
    /// A member left or was kicked: their streams end.
    MemberRemoved { user_id: UserId },
    /// The room closed: every stream ends.
    RoomClosed,
    /// Live events may have been lost (the broker between instances was unreachable):
    /// watchers catch up from the database.
    Resync,
    /// Nothing was sent to the room for an interval: its streams say they are alive.
    Heartbeat { server_time: i64 },
    /// The service is stopping: every stream ends.
    ShuttingDown,
}

/// What a watcher receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WatchEvent {
    Message(Message),
    CaughtUp { latest_seq: i64 },
    TooFarBehind { latest_seq: i64, max_replay: i64 },
    Deleted { seq: i64, deleted_by: String, deleted_at: i64 },
    StatusChanged { seq: i64, status: MessageStatus },
    CursorUpdated(Cursor),
    Heartbeat { server_time: i64 },
}
