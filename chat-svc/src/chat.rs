//! The chat domain: who may send, validation and flood limits, idempotent persisted sends,
//! history and cursors, moderation, and the watch streams that replay from the database and
//! then go live without a gap or a duplicate.

use std::sync::Arc;
use std::time::Duration;

use svc_kit::clock::SharedClock;
use svc_kit::id::{RoomId, UserId};
use svc_kit::peer::room::{RoomAccess, RoomAccessClient, RoomRole};
use svc_kit::ratelimit::KeyedLimiter;
use svc_kit::status::Violation;
use svc_kit::text::TextRule;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::ChatMetrics;
use crate::access::ChatRights;
use crate::error::Error;
use crate::model::{Cursor, Message, MessageStatus, ModerationAction, NewMessage, RoomEvent, Sent, WatchEvent};
use crate::pubsub::PubSub;
use crate::store::Store;
use crate::writer::Writer;

pub(crate) const TEXT: TextRule = TextRule { field: "text", min_chars: 1, max_chars: 1000, allow_newline: true };
const MAX_CLIENT_MESSAGE_ID: usize = 64;
const REPLAY_PAGE: u64 = 200;
pub(crate) const DEFAULT_HISTORY_PAGE: i32 = 50;
pub(crate) const MAX_HISTORY_PAGE: i32 = 200;
const DEFAULT_MODERATION_PAGE: i32 = 100;
const MAX_MODERATION_PAGE: i32 = 500;
pub(crate) const MIN_MUTE: Duration = Duration::from_secs(1);
pub(crate) const MAX_MUTE: Duration = Duration::from_secs(30 * 86_400);
/// Deletions are re-sent after a lag from a little before the last live event, since the
/// clocks of the deleting instance and this one are not the same clock.
const DELETION_SLACK_MS: i64 = 2_000;
/// How long a watcher tries to hand over its closing status to a client that is not reading.
const FINAL_STATUS_WAIT: Duration = Duration::from_secs(1);

/// Limits and intervals the domain needs from the configuration.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    pub max_replay: i64,
    pub heartbeat_interval: Duration,
    pub watch_buffer: usize,
}

/// A page of history.
#[derive(Debug, Clone)]
pub struct History {
    /// Newest first.
    pub messages: Vec<Message>,
    /// 0 when there is nothing older.
    pub next_before_seq: i64,
    pub cursors: Vec<Cursor>,
    pub latest_seq: i64,
}

/// The chat service's state, shared by the gRPC handlers and the watch tasks.
#[derive(Debug)]
pub struct Chat {
    pub(crate) store: Store,
    pub(crate) writer: Writer,
    pub(crate) pubsub: Arc<dyn PubSub>,
    pub(crate) access: Arc<RoomAccessClient>,
    pub(crate) flood: KeyedLimiter,
    pub(crate) clock: SharedClock,
    pub(crate) settings: ChatSettings,
    pub(crate) metrics: ChatMetrics,
    pub(crate) shutdown: CancellationToken,
}

/// A message as a member wrote it, checked: its text trimmed and within the rules, its client
/// message id usable as an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    text: String,
    client_message_id: String,
}

impl Draft {
    /// A checked draft, or every violation in it.
    ///
    /// # Errors
    /// `text` and `client_message_id` violations.
    pub fn new(text: &str, client_message_id: &str) -> Result<Self, Vec<Violation>> {
        let mut violations = Vec::new();
        let text = TEXT.check(text).map_err(|violation| violations.push(violation)).ok();
        violations.extend(check_client_message_id(client_message_id).err());
        match text {
            Some(text) if violations.is_empty() => Ok(Self { text, client_message_id: client_message_id.to_owned() }),
            _ => Err(violations),
        }
    }

    /// The text, trimmed.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Where a history page ends and how long it is, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryPage {
    /// Messages before this seq; `None` for the newest.
    before_seq: Option<i64>,
    limit: u64,
}

impl HistoryPage {
    /// A checked page, or every violation in it.
    ///
    /// # Errors
    /// `before_seq` and `page_size` violations.
    pub fn new(before_seq: i64, page_size_requested: i32) -> Result<Self, Vec<Violation>> {
        let mut violations = Vec::new();
        if before_seq < 0 {
            violations.push(Violation::new("before_seq", "must not be negative"));
        }
        let limit = page_size(page_size_requested, DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE)
            .map_err(|violation| violations.push(violation))
            .unwrap_or(1);
        if violations.is_empty() {
            Ok(Self { before_seq: (before_seq > 0).then_some(before_seq), limit })
        } else {
            Err(violations)
        }
    }
}

/// How long a mute lasts, or the violation.
///
/// # Errors
/// A `duration` violation outside 1 s to 30 days.
pub fn mute_duration(duration: Option<Duration>) -> Result<Duration, Violation> {
    duration
        .filter(|duration| (MIN_MUTE..=MAX_MUTE).contains(duration))
        .ok_or_else(|| Violation::new("duration", "must be 1 s to 30 days"))
}

/// A message's seq, or the violation.
///
/// # Errors
/// A `seq` violation when it is not positive.
pub fn message_seq(seq: i64) -> Result<i64, Violation> {
    if seq > 0 { Ok(seq) } else { Err(Violation::new("seq", "must be positive")) }
}

pub(crate) fn check_client_message_id(client_message_id: &str) -> Result<(), Violation> {
    let valid = !client_message_id.is_empty()
        && client_message_id.len() <= MAX_CLIENT_MESSAGE_ID
        && client_message_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(Violation::new(
            "client_message_id",
            format!("must be 1 to {MAX_CLIENT_MESSAGE_ID} characters of A-Z, a-z, 0-9, '-' and '_'"),
        ))
    }
}

pub(crate) fn page_size(value: i32, default: i32, max: i32) -> Result<u64, Violation> {
    match value {
        0 => Ok(u64::try_from(default).unwrap_or(1)),
        1.. if value <= max => Ok(u64::try_from(value).unwrap_or(1)),
        _ => Err(Violation::new("page_size", format!("must be 0 (default) or 1 to {max}"))),
    }
}

pub(crate) fn into_result(violations: Vec<Violation>) -> Result<(), Error> {
    if violations.is_empty() { Ok(()) } else { Err(Error::InvalidArgument(violations)) }
}

/// Why a watch stream ended.
enum End {
    /// The client went away; nobody to tell.
    ClientGone,
    /// End with this status.
    Status(Error),
}

impl From<Error> for End {
    fn from(error: Error) -> Self {
        Self::Status(error)
    }
}

impl From<sea_orm::DbErr> for End {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::Status(Error::Database(error))
    }
}

/// One watch stream's position.
struct Watch {
    user_id: UserId,
    room_id: RoomId,
    out: mpsc::Sender<Result<WatchEvent, Error>>,
    /// Highest seq handed to the stream.
    last_seq: i64,
    /// When the last live event arrived (clock ms): deletions since then are re-sent after a lag.
    last_live_at: i64,
}

impl Chat {
    async fn member(&self, room_id: &RoomId, user_id: &UserId) -> Result<RoomAccess, Error> {
        self.access.check(room_id, user_id).await?.require_member()
    }

    /// Stores and publishes a message; returns once it is committed.
    ///
    /// # Errors
    /// `NotMember`, `RoomClosed`, `RoomNotFound`, `Muted`, `RateLimited`, `Unavailable`,
    /// `Database`.
    pub async fn send(&self, user_id: &UserId, room_id: &RoomId, draft: Draft) -> Result<Sent, Error> {
        let Draft { text, client_message_id } = draft;
        self.member(room_id, user_id).await?;
        let now = self.clock.now_ms();
        if let Err(retry_after) = self.flood.try_take(&format!("{room_id}/{user_id}")) {
            // A muted sender hears that they are muted; a retry of a message already stored
            // is answered, not limited.
            if let Some(until) = self.store.muted_until(room_id, user_id).await?
                && until > now
            {
                return Err(Error::Muted { until });
            }
            return match self.store.find_by_client_id(room_id, user_id, &client_message_id).await? {
                Some(message) => Ok(Sent { message, duplicate: true }),
                None => Err(Error::RateLimited(retry_after)),
            };
        }
        // The writer checks mutes in the transaction that would store the message.
        let new = NewMessage {
            room_id: room_id.clone(),
            sender_id: user_id.clone(),
            text,
            client_message_id,
            created_at: now,
        };
        let sent = self.writer.send(new).await?;
        self.access.record_activity(room_id);
        Ok(sent)
    }

    /// A page of history, newest first, with every member's cursor.
    ///
    /// # Errors
    /// Access errors, `Database`.
    pub async fn history(&self, user_id: &UserId, room_id: &RoomId, page: HistoryPage) -> Result<History, Error> {
        let HistoryPage { before_seq, limit } = page;
        self.member(room_id, user_id).await?;
        let latest_seq = self.store.latest_seq(room_id).await?;
        let messages = self.store.messages_before(room_id, before_seq, limit).await?;
        let oldest = messages.last().map_or(0, |message| message.seq);
        let full_page = u64::try_from(messages.len()).unwrap_or(u64::MAX) >= limit;
        let next_before_seq = if full_page && oldest > 1 { oldest } else { 0 };
        let cursors = self.store.cursors(room_id).await?;
        Ok(History { messages, next_before_seq, cursors, latest_seq })
    }

    /// Moves the caller's received/read cursors forward and tells the caller's other streams;
    /// the messages of others it newly covers become delivered, and their senders hear of it.
    ///
    /// # Errors
    /// `InvalidArgument` (negative or beyond the latest message), access errors, `Database`.
    pub async fn update_cursor(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        received_seq: i64,
        read_seq: i64,
    ) -> Result<Cursor, Error> {
        self.member(room_id, user_id).await?;
        let latest = self.store.latest_seq(room_id).await?;
        let mut violations = Vec::new();
        for (field, value) in [("received_seq", received_seq), ("read_seq", read_seq)] {
            if !(0..=latest).contains(&value) {
                violations.push(Violation::new(field, format!("must be 0 to the latest seq ({latest})")));
            }
        }
        into_result(violations)?;
        let (cursor, delivered) =
            self.store.advance_cursor(room_id, user_id, received_seq, read_seq, self.clock.now_ms()).await?;
        for (seq, sender_id) in delivered {
            self.pubsub.publish(room_id, RoomEvent::StatusChanged { seq, sender_id, status: MessageStatus::Delivered });
        }
        self.pubsub.publish(room_id, RoomEvent::CursorUpdated(cursor.clone()));
        Ok(cursor)
    }

    /// Deletes a message for everyone (moderators and the owner); recorded in the moderation log.
    ///
    /// # Errors
    /// `Forbidden`, access errors, `MessageNotFound`, `Database`.
    pub async fn delete(&self, user_id: &UserId, room_id: &RoomId, seq: i64) -> Result<Message, Error> {
        self.access.check(room_id, user_id).await?.require_moderator()?;
        let (message, newly_deleted) = self
            .store
            .delete_message(room_id, seq, user_id, self.clock.now_ms())
            .await?
            .ok_or(Error::MessageNotFound)?;
        if newly_deleted {
            tracing::info!(%room_id, seq, moderator = %user_id, "message deleted");
            self.pubsub.publish(
                room_id,
                RoomEvent::Deleted {
                    seq,
                    deleted_by: message.deleted_by.clone().unwrap_or_default(),
                    deleted_at: message.deleted_at.unwrap_or_default(),
                },
            );
        }
        Ok(message)
    }

    /// Mutes `target` for `duration`; returns until when.
    ///
    /// # Errors
    /// `Forbidden`, `MemberNotFound`, `Database`.
    pub async fn mute(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        target: &UserId,
        duration: Duration,
    ) -> Result<i64, Error> {
        let moderator = self.access.check(room_id, user_id).await?.require_moderator()?;
        let target_access = self.access.check(room_id, target).await?;
        match (target_access.role, moderator.role) {
            (RoomRole::None, _) => return Err(Error::MemberNotFound),
            (RoomRole::Owner, _) | (RoomRole::Moderator, RoomRole::Moderator | RoomRole::Member | RoomRole::None) => {
                return Err(Error::Forbidden("cannot moderate this member"));
            }
            (RoomRole::Member, _) | (RoomRole::Moderator, RoomRole::Owner) => {}
        }
        let now = self.clock.now_ms();
        let until = now.saturating_add(svc_kit::clock::millis(duration));
        self.store.mute(room_id, target, until, user_id, now).await?;
        tracing::info!(%room_id, target = %target, until, moderator = %user_id, "member muted");
        Ok(until)
    }

    /// Lifts a mute.
    ///
    /// # Errors
    /// `Forbidden`, `Database`.
    pub async fn unmute(&self, user_id: &UserId, room_id: &RoomId, target: &UserId) -> Result<(), Error> {
        self.access.check(room_id, user_id).await?.require_moderator()?;
        self.store.unmute(room_id, target, user_id, self.clock.now_ms()).await?;
        Ok(())
    }

    /// A page of the moderation log and the token of the next one.
    ///
    /// # Errors
    /// `InvalidArgument`, `Database`.
    pub async fn moderation_actions(
        &self,
        room_id: Option<&RoomId>,
        page_size_requested: i32,
        page_token: &str,
    ) -> Result<(Vec<ModerationAction>, Option<String>), Error> {
        let mut violations = Vec::new();
        let limit = page_size(page_size_requested, DEFAULT_MODERATION_PAGE, MAX_MODERATION_PAGE)
            .map_err(|violation| violations.push(violation))
            .unwrap_or(1);
        let after = if page_token.is_empty() {
            0
        } else {
            page_token
                .parse::<i64>()
                .map_err(|_| violations.push(Violation::new("page_token", "not a page token")))
                .unwrap_or(0)
        };
        into_result(violations)?;
        let actions = self.store.moderation_actions(room_id, after, limit).await?;
        let full_page = u64::try_from(actions.len()).unwrap_or(u64::MAX) >= limit;
        let next = if full_page { actions.last().map(|action| action.moderation_action_id.to_string()) } else { None };
        Ok((actions, next))
    }

    /// Opens a watch stream: checks access, subscribes (before replaying, so nothing published
    /// during the replay is missed) and starts the task that feeds the returned receiver.
    ///
    /// # Errors
    /// `InvalidArgument` (an `after_seq` past the latest message), access errors, `Database`.
    pub async fn watch(
        self: &Arc<Self>,
        user_id: &UserId,
        room_id: &RoomId,
        after_seq: Option<i64>,
    ) -> Result<mpsc::Receiver<Result<WatchEvent, Error>>, Error> {
        self.member(room_id, user_id).await?;
        let events = self.pubsub.subscribe(room_id);
        let latest = self.store.latest_seq(room_id).await?;
        if let Some(after_seq) = after_seq
            && !(0..=latest).contains(&after_seq)
        {
            return Err(Violation::new("after_seq", format!("must be 0 to the latest seq ({latest})")).into());
        }
        let (out, receiver) = mpsc::channel(self.settings.watch_buffer.max(1));
        let watch = Watch {
            user_id: user_id.clone(),
            room_id: room_id.clone(),
            out,
            last_seq: 0,
            last_live_at: self.clock.now_ms(),
        };
        self.metrics.watchers.inc();
        let chat = Arc::clone(self);
        tokio::spawn(async move { chat.run_watch(watch, events, after_seq, latest).await });
        Ok(receiver)
    }

    async fn run_watch(
        self: Arc<Self>,
        mut watch: Watch,
        events: broadcast::Receiver<Arc<RoomEvent>>,
        after_seq: Option<i64>,
        latest: i64,
    ) {
        let result = self.watch_loop(&mut watch, events, after_seq, latest).await;
        self.metrics.watchers.dec();
        if let Err(End::Status(error)) = result {
            tracing::debug!(room_id = %watch.room_id, user_id = %watch.user_id, %error, "watch ended");
            let _ = tokio::time::timeout(FINAL_STATUS_WAIT, watch.out.send(Err(error))).await;
        }
    }

    async fn watch_loop(
        &self,
        watch: &mut Watch,
        mut events: broadcast::Receiver<Arc<RoomEvent>>,
        after_seq: Option<i64>,
        latest: i64,
    ) -> Result<(), End> {
        match after_seq {
            Some(after_seq) if latest - after_seq > self.settings.max_replay => {
                self.emit(watch, WatchEvent::TooFarBehind { latest_seq: latest, max_replay: self.settings.max_replay })
                    .await?;
                Self::handed(watch, latest);
            }
            Some(after_seq) => {
                watch.last_seq = after_seq;
                self.replay(watch).await?;
            }
            None => Self::handed(watch, latest),
        }
        self.emit(watch, WatchEvent::CaughtUp { latest_seq: watch.last_seq }).await?;

        let period = self.settings.heartbeat_interval.max(Duration::from_millis(10));
        let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return Err(End::Status(Error::Unavailable)),
                _ = heartbeat.tick() => {
                    self.emit(watch, WatchEvent::Heartbeat { server_time: self.clock.now_ms() }).await?;
                }
                received = events.recv() => match received {
                    Ok(event) => {
                        watch.last_live_at = self.clock.now_ms();
                        self.on_event(watch, &event).await?;
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::debug!(room_id = %watch.room_id, missed, "watcher lagged; catching up from the database");
                        self.metrics.lag_catch_ups.inc();
                        self.catch_up(watch).await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Err(End::Status(Error::Unavailable)),
                },
            }
        }
    }

    async fn on_event(&self, watch: &mut Watch, event: &RoomEvent) -> Result<(), End> {
        match event {
            RoomEvent::Message(message) => {
                if message.seq <= watch.last_seq {
                    // Already replayed: the subscription started before the replay.
                    return Ok(());
                }
                if message.seq > watch.last_seq + 1 {
                    // Something in between never reached us live; the database has it.
                    return self.catch_up(watch).await;
                }
                self.emit(watch, WatchEvent::Message(message.clone())).await?;
                Self::handed(watch, message.seq);
            }
            RoomEvent::Deleted { seq, deleted_by, deleted_at } => {
                let event = WatchEvent::Deleted { seq: *seq, deleted_by: deleted_by.clone(), deleted_at: *deleted_at };
                self.emit(watch, event).await?;
            }
            RoomEvent::StatusChanged { seq, sender_id, status } => {
                // Delivery ticks are for the sender; everyone else would get a second frame per
                // message for nothing.
                if sender_id.as_str() == watch.user_id.as_str() && *seq <= watch.last_seq {
                    self.emit(watch, WatchEvent::StatusChanged { seq: *seq, status: *status }).await?;
                }
            }
            RoomEvent::CursorUpdated(cursor) => {
                // A member's cursor is news to their own other streams (another tab or
                // device); everyone else's come with history when asked. Every client moves its
                // cursor about once a second while messages arrive, so sending each to every
                // watcher would be a frame per member per watcher — more than the messages.
                if cursor.user_id == watch.user_id.as_str() {
                    self.emit(watch, WatchEvent::CursorUpdated(cursor.clone())).await?;
                }
            }
            RoomEvent::MemberRemoved { user_id } => {
                if *user_id == watch.user_id {
                    return Err(End::Status(Error::NotMember));
                }
            }
            RoomEvent::RoomClosed => return Err(End::Status(Error::RoomClosed)),
            RoomEvent::Resync => return self.catch_up(watch).await,
        }
        Ok(())
    }

    /// Sends every message after the watcher's position, from the database.
    async fn replay(&self, watch: &mut Watch) -> Result<(), End> {
        loop {
            let page = self.store.messages_after(&watch.room_id, watch.last_seq, REPLAY_PAGE).await?;
            let Some(last) = page.last().map(|message| message.seq) else {
                return Ok(());
            };
            for message in page {
                self.emit(watch, WatchEvent::Message(message)).await?;
            }
            Self::handed(watch, last);
        }
    }

    /// After missing live events: the messages from the database, the deletions since the last
    /// live event, and a fresh access check (a removal or closing may have been missed too).
    async fn catch_up(&self, watch: &mut Watch) -> Result<(), End> {
        let since = watch.last_live_at.saturating_sub(DELETION_SLACK_MS);
        let up_to = watch.last_seq;
        self.replay(watch).await?;
        for message in self.store.deleted_since(&watch.room_id, since, up_to).await? {
            let event = WatchEvent::Deleted {
                seq: message.seq,
                deleted_by: message.deleted_by.unwrap_or_default(),
                deleted_at: message.deleted_at.unwrap_or_default(),
            };
            self.emit(watch, event).await?;
        }
        self.member(&watch.room_id, &watch.user_id).await?;
        watch.last_live_at = self.clock.now_ms();
        Ok(())
    }

    /// Hands an event to the watcher's bounded buffer, waiting while it is full.
    async fn emit(&self, watch: &mut Watch, event: WatchEvent) -> Result<(), End> {
        let seq = match &event {
            WatchEvent::Message(message) => Some(message.seq),
            _ => None,
        };
        tokio::select! {
            sent = watch.out.send(Ok(event)) => sent.map_err(|_| End::ClientGone)?,
            () = self.shutdown.cancelled() => return Err(End::Status(Error::Unavailable)),
        }
        if let Some(seq) = seq {
            watch.last_seq = watch.last_seq.max(seq);
        }
        Ok(())
    }

    fn handed(watch: &mut Watch, seq: i64) {
        watch.last_seq = watch.last_seq.max(seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_message_ids() {
        assert!(check_client_message_id("a-B_9").is_ok());
        assert!(check_client_message_id(&"x".repeat(64)).is_ok());
        for bad in ["", "has space", "ü", &"x".repeat(65)] {
            assert!(check_client_message_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0, 50, 200).ok(), Some(50));
        assert_eq!(page_size(200, 50, 200).ok(), Some(200));
        assert!(page_size(201, 50, 200).is_err());
        assert!(page_size(-1, 50, 200).is_err());
    }

    #[test]
    fn chat_text_rule() {
        assert_eq!(TEXT.check("  hi\nthere ").ok().as_deref(), Some("hi\nthere"));
        for bad in [String::new(), "x".repeat(1001), "a\u{0}b".to_owned(), "a\u{1b}[31m".to_owned()] {
            assert!(TEXT.check(&bad).is_err());
        }
        assert!(TEXT.check(&"字".repeat(1000)).is_ok());
    }
}
