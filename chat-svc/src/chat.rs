//! The chat domain: who may send, validation and flood limits, idempotent persisted sends,
//! history and cursors, moderation, and the watch streams that replay from the database and
//! then go live without a gap or a duplicate.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;

use svc_kit::clock::SharedClock;
use svc_kit::id::{RoomId, UserId};
use svc_kit::peer::room::{RoomAccess, RoomAccessClient, RoomRole};
use svc_kit::ratelimit::KeyedLimiter;
use svc_kit::status::Violation;
use svc_kit::text::TextRule;
use tokio::sync::broadcast;
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

/// Limits and intervals the domain needs from the configuration.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    pub max_replay: i64,
    pub heartbeat_interval: Duration,
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

/// A watch stream: the events of one member's view of a room, ending with an error when the
/// stream ends for a reason the client should hear.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, Error>> + Send>>;

/// Database pages a watch still has to send before it goes (back) to live events.
enum Replay {
    /// The replay a watch opened with; `caught_up` follows it.
    Opening,
    /// After missing live events: then the deletions since `since` up to seq `up_to`, and a
    /// fresh access check (a removal or closing may have been missed too).
    CatchUp { since: i64, up_to: i64 },
}

/// One watch stream's state, polled by the stream itself: no task or queue of its own between
/// the room's events and the client's connection.
struct Watch {
    chat: Arc<Chat>,
    user_id: UserId,
    room_id: RoomId,
    /// The room's events, heartbeats and the notice of shutdown (all from the room's channel).
    events: broadcast::Receiver<Arc<RoomEvent>>,
    /// Highest seq handed to the stream.
    last_seq: i64,
    /// When the last live event arrived (clock ms): deletions since then are re-sent after a lag.
    last_live_at: i64,
    /// Events decided on and not yet sent (a page of a replay, deletions after one).
    queued: VecDeque<WatchEvent>,
    replay: Option<Replay>,
    finished: bool,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.chat.metrics.watchers.dec();
    }
}

impl Watch {
    fn sent(mut self, event: WatchEvent) -> Option<(Result<WatchEvent, Error>, Self)> {
        if let WatchEvent::Message(message) = &event {
            self.last_seq = self.last_seq.max(message.seq);
        }
        Some((Ok(event), self))
    }

    fn end(mut self, error: Error) -> Option<(Result<WatchEvent, Error>, Self)> {
        tracing::debug!(room_id = %self.room_id, user_id = %self.user_id, %error, "watch ended");
        self.finished = true;
        Some((Err(error), self))
    }

    fn catch_up(&mut self) {
        let since = self.last_live_at.saturating_sub(DELETION_SLACK_MS);
        self.replay = Some(Replay::CatchUp { since, up_to: self.last_seq });
    }

    async fn next(mut self) -> Option<(Result<WatchEvent, Error>, Self)> {
        loop {
            if self.finished {
                return None;
            }
            if let Some(event) = self.queued.pop_front() {
                return self.sent(event);
            }
            if let Some(replay) = self.replay.take() {
                // Boxed: the database reads' state is a few KiB, and inline it would size every
                // idle watcher's stream for this rare path.
                let read: Pin<Box<dyn Future<Output = Result<(), Error>> + Send + '_>> =
                    Box::pin(self.read_replay(replay));
                match read.await {
                    Ok(()) => continue,
                    Err(error) => return self.end(error),
                }
            }
            match self.events.recv().await {
                Ok(event) => {
                    self.last_live_at = self.chat.clock.now_ms();
                    match self.live(&event) {
                        Ok(Some(event)) => return self.sent(event),
                        Ok(None) => {}
                        Err(error) => return self.end(error),
                    }
                }
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::debug!(room_id = %self.room_id, missed, "watcher lagged; catching up from the database");
                    self.chat.metrics.lag_catch_ups.inc();
                    self.catch_up();
                }
                Err(broadcast::error::RecvError::Closed) => return self.end(Error::Unavailable),
            }
        }
    }

    /// What a live event means for this watcher: something to send, nothing, or the end.
    fn live(&mut self, event: &RoomEvent) -> Result<Option<WatchEvent>, Error> {
        Ok(match event {
            // Already replayed: the subscription started before the replay.
            RoomEvent::Message(message) if message.seq <= self.last_seq => None,
            RoomEvent::Message(message) if message.seq > self.last_seq + 1 => {
                // Something in between never reached us live; the database has it.
                self.catch_up();
                None
            }
            RoomEvent::Message(message) => Some(WatchEvent::Message(message.clone())),
            RoomEvent::Deleted { seq, deleted_by, deleted_at } => {
                Some(WatchEvent::Deleted { seq: *seq, deleted_by: deleted_by.clone(), deleted_at: *deleted_at })
            }
            // Delivery ticks are for the sender; everyone else would get a second frame per
            // message for nothing.
            RoomEvent::StatusChanged { seq, sender_id, status }
                if sender_id.as_str() == self.user_id.as_str() && *seq <= self.last_seq =>
            {
                Some(WatchEvent::StatusChanged { seq: *seq, status: *status })
            }
            RoomEvent::StatusChanged { .. } => None,
            // A member's cursor is news to their own other streams (another tab or device);
            // everyone else's come with history when asked. Every client moves its cursor
            // about once a second while messages arrive, so sending each to every watcher
            // would be a frame per member per watcher — more than the messages.
            RoomEvent::CursorUpdated(cursor) if cursor.user_id == self.user_id.as_str() => {
                Some(WatchEvent::CursorUpdated(cursor.clone()))
            }
            RoomEvent::CursorUpdated(_) => None,
            RoomEvent::MemberRemoved { user_id } if *user_id == self.user_id => return Err(Error::NotMember),
            RoomEvent::MemberRemoved { .. } => None,
            RoomEvent::RoomClosed => return Err(Error::RoomClosed),
            RoomEvent::ShuttingDown => return Err(Error::Unavailable),
            RoomEvent::Heartbeat { server_time } => Some(WatchEvent::Heartbeat { server_time: *server_time }),
            RoomEvent::Resync => {
                self.catch_up();
                None
            }
        })
    }

    /// Queues the next page after the watcher's position, or, once there is none, what ends
    /// the replay.
    async fn read_replay(&mut self, replay: Replay) -> Result<(), Error> {
        let chat = &self.chat;
        let page = chat.store.messages_after(&self.room_id, self.last_seq, REPLAY_PAGE).await?;
        if let Some(last) = page.last().map(|message| message.seq) {
            self.queued.extend(page.into_iter().map(WatchEvent::Message));
            self.last_seq = self.last_seq.max(last);
            self.replay = Some(replay);
            return Ok(());
        }
        match replay {
            Replay::Opening => self.queued.push_back(WatchEvent::CaughtUp { latest_seq: self.last_seq }),
            Replay::CatchUp { since, up_to } => {
                for message in chat.store.deleted_since(&self.room_id, since, up_to).await? {
                    self.queued.push_back(WatchEvent::Deleted {
                        seq: message.seq,
                        deleted_by: message.deleted_by.unwrap_or_default(),
                        deleted_at: message.deleted_at.unwrap_or_default(),
                    });
                }
                chat.member(&self.room_id, &self.user_id).await?;
                self.last_live_at = chat.clock.now_ms();
            }
        }
        Ok(())
    }
}

impl Chat {
    /// Until the service stops, gives the streams of every room that has been sent nothing for
    /// the heartbeat interval a heartbeat (looking four times an interval); then tells every
    /// stream to end. Streams hold no timer or shutdown wait of their own.
    pub async fn run_heartbeats(self: Arc<Self>) {
        let interval = self.settings.heartbeat_interval.max(Duration::from_millis(10));
        let mut ticker = tokio::time::interval(interval / 4);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => {
                    self.pubsub.publish_everywhere(RoomEvent::ShuttingDown);
                    return;
                }
                _ = ticker.tick() => {
                    self.pubsub.publish_where_quiet(interval, RoomEvent::Heartbeat { server_time: self.clock.now_ms() });
                }
            }
        }
    }

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

    /// Opens a watch stream: checks access and subscribes (before replaying, so nothing
    /// published during the replay is missed); the stream replays from the database, then
    /// goes live.
    ///
    /// # Errors
    /// `InvalidArgument` (an `after_seq` past the latest message), access errors, `Database`.
    pub async fn watch(
        self: &Arc<Self>,
        user_id: &UserId,
        room_id: &RoomId,
        after_seq: Option<i64>,
    ) -> Result<WatchStream, Error> {
        self.member(room_id, user_id).await?;
        let events = self.pubsub.subscribe(room_id);
        // Streams subscribed when the service stops are told through their room's channel
        // (`run_heartbeats`); one subscribed after that sees the token cancelled here.
        if self.shutdown.is_cancelled() {
            return Err(Error::Unavailable);
        }
        let latest = self.store.latest_seq(room_id).await?;
        if let Some(after_seq) = after_seq
            && !(0..=latest).contains(&after_seq)
        {
            return Err(Violation::new("after_seq", format!("must be 0 to the latest seq ({latest})")).into());
        }
        let max_replay = self.settings.max_replay;
        let (last_seq, queued, replay) = match after_seq {
            Some(after_seq) if latest - after_seq > max_replay => {
                let told = [
                    WatchEvent::TooFarBehind { latest_seq: latest, max_replay },
                    WatchEvent::CaughtUp { latest_seq: latest },
                ];
                (latest, VecDeque::from(told), None)
            }
            Some(after_seq) => (after_seq, VecDeque::new(), Some(Replay::Opening)),
            None => (latest, VecDeque::from([WatchEvent::CaughtUp { latest_seq: latest }]), None),
        };
        self.metrics.watchers.inc();
        let watch = Watch {
            chat: Arc::clone(self),
            user_id: user_id.clone(),
            room_id: room_id.clone(),
            events,
            last_seq,
            last_live_at: self.clock.now_ms(),
            queued,
            replay,
            finished: false,
        };
        Ok(Box::pin(futures_util::stream::unfold(watch, Watch::next)))
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
