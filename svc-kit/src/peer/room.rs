//! room-svc as a peer (`xiaowo.room.v1.RoomInternalService`, and `RoomAccessInternalService` for
//! checks in bulk), as every room-scoped service needs it: what a user may do in a room (cached,
//! and checks that miss the cache queued and sent together), room activity (debounced per room,
//! queued and sent together in the background), and the room event stream, which drops the
//! cached access each event changes at once and hands the changes that matter to the service.
//! room-svc's protobuf stays in here; services see plain Rust types.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::room::v1 as room_pb;
use proto::room::v1::room_access_internal_service_client::RoomAccessInternalServiceClient;
use proto::room::v1::room_internal_service_client::RoomInternalServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::feed::Followed;
use crate::id::{RoomId, UserId};

/// A user's standing in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoomRole {
    /// Not a member.
    None,
    Member,
    Moderator,
    Owner,
}

/// What room-svc answered about one user in one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomAccess {
    /// The room is open (not closed).
    pub active: bool,
    /// The user's standing in the room.
    pub role: RoomRole,
    /// The room's control mode lets the user control playback and the queue.
    pub can_control: bool,
    /// Owner or moderator of an active room.
    pub can_moderate: bool,
}

impl RoomAccess {
    /// The user is a member of the room, whatever the role.
    #[must_use]
    pub fn is_member(&self) -> bool {
        self.role != RoomRole::None
    }
}

/// Why room-svc gave no answer about access.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomAccessError {
    /// room-svc does not know the room.
    #[error("room not found")]
    RoomNotFound,
    /// room-svc could not be asked in time.
    #[error("room service unavailable: {0}")]
    Unavailable(String),
}

/// A change in a room reported by room-svc's event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomChange {
    /// A user joined the room.
    MemberJoined { room_id: RoomId, user_id: UserId },
    /// A user left or was kicked.
    MemberRemoved { room_id: RoomId, user_id: UserId },
    /// A member's role changed.
    RoleChanged { room_id: RoomId, user_id: UserId },
    /// The room's settings changed.
    Updated { room_id: RoomId },
    /// The room closed, at `closed_at_ms` (Unix ms) when room-svc said when.
    Closed { room_id: RoomId, closed_at_ms: Option<i64> },
    /// The event stream (re)connected; events may have been missed meanwhile, so every cached
    /// answer has been dropped.
    Reconnected,
}

/// Entries above which stale ones are swept before inserting.
const SWEEP_AT: usize = 10_000;
/// How long an access answer is kept while room-svc's event stream is live. Every change that
/// alters an answer (membership, role, settings, closing) arrives as an event and drops the
/// answers it alters at once, so this only bounds what an event lost without the stream breaking
/// could leave behind; it spares busy rooms a CheckAccess round trip every few seconds.
const LIVE_CACHE_TTL: Duration = Duration::from_secs(60);

/// Entries that stay fresh for `ttl`, swept of stale ones once there are `SWEEP_AT` of them so
/// that keys never asked for again do not pile up.
#[derive(Debug)]
struct TimedMap<K, V> {
    ttl: Duration,
    entries: HashMap<K, (V, Instant)>,
}

impl<K: Eq + Hash, V: Copy> TimedMap<K, V> {
    fn new(ttl: Duration) -> Self {
        Self { ttl, entries: HashMap::new() }
    }

    fn fresh(&self, key: &K, now: Instant) -> Option<V> {
        self.fresh_within(key, now, self.ttl)
    }

    fn fresh_within(&self, key: &K, now: Instant, ttl: Duration) -> Option<V> {
        let (value, at) = self.entries.get(key)?;
        (now.saturating_duration_since(*at) < ttl).then_some(*value)
    }

    fn insert(&mut self, key: K, value: V, now: Instant) {
        if self.entries.len() >= SWEEP_AT {
            let ttl = self.ttl;
            self.entries.retain(|_, (_, at)| now.saturating_duration_since(*at) < ttl);
        }
        self.entries.insert(key, (value, now));
    }
}

/// Access answers with the count of invalidations so far: an answer asked for before an event
/// dropped its room must not be stored after it.
#[derive(Debug)]
struct AccessCache {
    answers: TimedMap<AccessKey, RoomAccess>,
    invalidations: u64,
}

impl AccessCache {
    /// Stores an answer asked for when `invalidations` events had dropped answers, unless
    /// another has since: that event may have changed it.
    fn remember(&mut self, key: AccessKey, access: RoomAccess, invalidations: u64) {
        if self.invalidations == invalidations {
            self.answers.insert(key, access, Instant::now());
        }
    }
}

type AccessKey = (RoomId, UserId);
type AccessAnswer = Result<RoomAccess, RoomAccessError>;

/// Most checks sent in one `BatchCheckAccess` (room-svc's limit).
const MAX_BATCH: usize = 500;
/// Calls to room-svc for access in flight at once. A burst of first-time checks (a thousand
/// people sending their first message, or opening their streams, in the same second) used to be
/// a thousand concurrent `CheckAccess` calls, each with its own deadline, queueing inside
/// room-svc for its database connections until some ran out of time. Now the checks queue here,
/// outside any deadline, and each call carries everything queued so far: the burst becomes a
/// few calls of up to [`MAX_BATCH`] checks, two queries each.
const MAX_FLIGHTS: usize = 4;

/// Checks waiting for room-svc: the queue of keys not yet sent, and everyone waiting for each
/// key's answer. A key asked for again while its first check is queued or in flight waits for
/// that answer instead of asking again, unless an event dropped answers in between (then it is
/// a different entry, keyed by the newer invalidation count).
#[derive(Debug, Default)]
struct PendingChecks {
    queued: Vec<(AccessKey, u64)>,
    waiting: HashMap<(AccessKey, u64), Vec<tokio::sync::oneshot::Sender<AccessAnswer>>>,
    flights: usize,
    /// room-svc answered `BatchCheckAccess` with UNIMPLEMENTED (an older room-svc, or a stand-in
    /// that only serves `RoomInternalService`): checks go one by one from then on.
    batch_unsupported: bool,
}

/// Cached access checks, debounced activity reports and the room event follower, over one
/// channel to room-svc.
#[derive(Debug)]
pub struct RoomAccessClient {
    client: RoomInternalServiceClient<Channel>,
    batch_client: RoomAccessInternalServiceClient<Channel>,
    internal_token: Option<crate::auth::InternalToken>,
    cache: Arc<Mutex<AccessCache>>,
    pending: Arc<Mutex<PendingChecks>>,
    /// room-svc's event stream is live, so cached answers are dropped as soon as they change.
    events_live: AtomicBool,
    /// Spreads expiries over the last quarter of the TTL so that answers cached together are
    /// not all asked for again in the same instant.
    jitter: std::hash::RandomState,
    activity: Mutex<TimedMap<RoomId, ()>>,
    reports: Arc<Mutex<ActivityReports>>,
}

/// Rooms whose activity is waiting to be sent, and whether a sender is on its way.
#[derive(Debug, Default)]
struct ActivityReports {
    queued: Vec<RoomId>,
    sending: bool,
    /// room-svc answered `BatchRecordActivity` with UNIMPLEMENTED: reports go one by one.
    batch_unsupported: bool,
}

impl RoomAccessClient {
    /// Asks room-svc over `channel` (which carries the per-call deadline), keeping answers for
    /// `cache_ttl` (for [`LIVE_CACHE_TTL`] while [`Self::follow_events`] is live, whichever is
    /// longer; a zero `cache_ttl` keeps none) and reporting each room's activity at most once per `activity_debounce`.
    #[must_use]
    pub fn new(channel: Channel, cache_ttl: Duration, activity_debounce: Duration) -> Self {
        Self {
            client: RoomInternalServiceClient::new(channel.clone()),
            batch_client: RoomAccessInternalServiceClient::new(channel),
            internal_token: None,
            cache: Arc::new(Mutex::new(AccessCache { answers: TimedMap::new(cache_ttl), invalidations: 0 })),
            pending: Arc::default(),
            events_live: AtomicBool::new(false),
            jitter: std::hash::RandomState::new(),
            activity: Mutex::new(TimedMap::new(activity_debounce)),
            reports: Arc::default(),
        }
    }

    /// How long the answer for `key` stays fresh now: longer while events keep the cache
    /// current, and between 3/4 and all of that depending on the key. A zero `base` turns
    /// caching off.
    fn ttl_for(&self, key: &(RoomId, UserId), base: Duration) -> Duration {
        let live = self.events_live.load(Ordering::Acquire);
        crate::clock::cache_ttl(base, live, LIVE_CACHE_TTL, self.jitter.hash_one(key))
    }

    /// Presents `token` to room-svc's internal API on every call.
    #[must_use]
    pub fn with_internal_token(mut self, token: Option<crate::auth::InternalToken>) -> Self {
        self.internal_token = token;
        self
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        crate::auth::InternalToken::request(self.internal_token.as_ref(), message)
    }

    /// What `user_id` may do in `room_id`: from the cache, or from the answer to a check
    /// already on its way, or queued for the next call to room-svc (see [`MAX_FLIGHTS`]).
    ///
    /// # Errors
    /// `RoomNotFound` for a room room-svc does not know, `Unavailable` when it does not answer.
    pub async fn check(&self, room_id: &RoomId, user_id: &UserId) -> Result<RoomAccess, RoomAccessError> {
        let key = (room_id.clone(), user_id.clone());
        let mut invalidations = 0;
        if let Ok(cache) = self.cache.lock() {
            let ttl = self.ttl_for(&key, cache.answers.ttl);
            if let Some(access) = cache.answers.fresh_within(&key, Instant::now(), ttl) {
                return Ok(access);
            }
            invalidations = cache.invalidations;
        }
        let (answer, answered) = tokio::sync::oneshot::channel();
        let start_flight = {
            let Ok(mut pending) = self.pending.lock() else {
                return Err(RoomAccessError::Unavailable("access check queue poisoned".to_owned()));
            };
            let pending = &mut *pending;
            let entry = (key, invalidations);
            match pending.waiting.get_mut(&entry) {
                Some(waiters) => waiters.push(answer),
                None => {
                    pending.queued.push(entry.clone());
                    pending.waiting.insert(entry, vec![answer]);
                }
            }
            // A check that joined one already queued needs no new flight.
            let start = pending.flights < MAX_FLIGHTS && !pending.queued.is_empty();
            if start {
                pending.flights += 1;
            }
            start
        };
        if start_flight {
            // In a task of its own, so that a caller going away does not strand the checks
            // the flight carries for everyone else.
            let flight = Flight {
                client: self.client.clone(),
                batch_client: self.batch_client.clone(),
                internal_token: self.internal_token.clone(),
                cache: Arc::clone(&self.cache),
                pending: Arc::clone(&self.pending),
            };
            tokio::spawn(flight.run());
        }
        answered.await.unwrap_or_else(|_| Err(RoomAccessError::Unavailable("access check abandoned".to_owned())))
    }

    #[cfg(test)]
    fn remember(&self, key: AccessKey, access: RoomAccess, invalidations: u64) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remember(key, access, invalidations);
        }
    }

    /// Drops the answers `change` may have altered: one member's for a change about that
    /// member (a join, a removal, a new role: nobody else's standing moves with it, so a room
    /// filling up does not send everyone already in it back to room-svc at each join), the
    /// whole room's for a change to the room (settings, closing).
    fn forget(&self, change: &RoomChange) {
        let Ok(mut cache) = self.cache.lock() else { return };
        cache.invalidations += 1;
        match change {
            RoomChange::MemberJoined { room_id, user_id }
            | RoomChange::MemberRemoved { room_id, user_id }
            | RoomChange::RoleChanged { room_id, user_id } => {
                cache.answers.entries.remove(&(room_id.clone(), user_id.clone()));
            }
            RoomChange::Updated { room_id } | RoomChange::Closed { room_id, .. } => {
                cache.answers.entries.retain(|(cached_room, _), _| cached_room != room_id);
            }
            RoomChange::Reconnected => cache.answers.entries.clear(),
        }
    }

    /// Without live events, answers are fresh for the short TTL again: those older than it are
    /// asked for anew.
    fn set_events_live(&self, live: bool) {
        self.events_live.store(live, Ordering::Release);
    }

    /// Tells room-svc the room is in use, at most once per debounce period per room, in the
    /// background: the caller must neither wait for it nor fail because of it. Reports gather
    /// for [`ACTIVITY_GATHERING`] in a queue that one sender empties, up to [`MAX_BATCH`] rooms
    /// per call, so a burst of rooms coming into use (a thousand rooms' first messages in the
    /// same second) is a few calls and writes rather than one of each per room.
    pub fn record_activity(&self, room_id: &RoomId) {
        {
            let Ok(mut activity) = self.activity.lock() else { return };
            let now = Instant::now();
            if activity.fresh(room_id, now).is_some() {
                return;
            }
            activity.insert(room_id.clone(), (), now);
        }
        {
            let Ok(mut reports) = self.reports.lock() else { return };
            reports.queued.push(room_id.clone());
            if reports.sending {
                return;
            }
            reports.sending = true;
        }
        let sender = ActivitySender {
            client: self.client.clone(),
            batch_client: self.batch_client.clone(),
            internal_token: self.internal_token.clone(),
            reports: Arc::clone(&self.reports),
        };
        tokio::spawn(sender.run());
    }

    /// Follows room-svc's event stream until `shutdown`, reconnecting with
    /// [`crate::feed::follow`]'s back-off. Cached access for a room goes on each of its events, and all of it on
    /// every (re)connection since missed events are not replayed; `on_change` then hears of the
    /// change. `on_connected(true)` follows room-svc's first message on a subscription (which
    /// says it is live), `on_connected(false)` the subscription's end.
    pub async fn follow_events(
        &self,
        on_change: impl Fn(RoomChange) + Send + Sync,
        on_connected: impl Fn(bool) + Send + Sync,
        shutdown: CancellationToken,
    ) {
        let subscribe = || {
            let mut client = self.client.clone();
            let request = self.request(room_pb::WatchRoomEventsRequest {});
            async move { client.watch_room_events(request).await.map(tonic::Response::into_inner) }
        };
        let on = |followed| match followed {
            Followed::Subscribed => {
                self.forget(&RoomChange::Reconnected);
                on_change(RoomChange::Reconnected);
            }
            Followed::Live => {
                self.set_events_live(true);
                on_connected(true);
            }
            Followed::Item(event) => {
                if let Some(change) = self.interpret(event) {
                    on_change(change);
                }
            }
            Followed::Lost => {
                self.set_events_live(false);
                on_connected(false);
            }
        };
        crate::feed::follow("room events", subscribe, on, shutdown).await;
    }

    fn interpret(&self, event: room_pb::WatchRoomEventsResponse) -> Option<RoomChange> {
        use room_pb::watch_room_events_response::Event;
        let room_pb::WatchRoomEventsResponse { room_id, event_time, event } = event;
        // room-svc issued these ids: they are not checked again.
        let (room_id, user) = (RoomId::issued(room_id), UserId::issued);
        let change = match event? {
            Event::Heartbeat(room_pb::Heartbeat {}) => return None,
            Event::MemberJoined(room_pb::MemberJoined { user_id }) => {
                RoomChange::MemberJoined { room_id, user_id: user(user_id) }
            }
            Event::MemberRemoved(room_pb::MemberRemoved { user_id, reason: _ }) => {
                RoomChange::MemberRemoved { room_id, user_id: user(user_id) }
            }
            Event::RoleChanged(room_pb::RoleChanged { user_id, role: _ }) => {
                RoomChange::RoleChanged { room_id, user_id: user(user_id) }
            }
            Event::RoomUpdated(room_pb::RoomUpdated { control_mode: _ }) => RoomChange::Updated { room_id },
            Event::RoomClosed(room_pb::RoomClosed { reason: _ }) => {
                RoomChange::Closed { room_id, closed_at_ms: event_time.as_ref().map(proto::ms_from_timestamp) }
            }
        };
        self.forget(&change);
        Some(change)
    }
}

/// The one sender of queued activity reports: goes on while reports keep arriving.
struct ActivitySender {
    client: RoomInternalServiceClient<Channel>,
    batch_client: RoomAccessInternalServiceClient<Channel>,
    internal_token: Option<crate::auth::InternalToken>,
    reports: Arc<Mutex<ActivityReports>>,
}

/// How long reports gather before each call: activity only postpones a close that is minutes
/// away, and waiting this long turns a burst of rooms into a few calls of many.
const ACTIVITY_GATHERING: Duration = Duration::from_millis(250);

impl ActivitySender {
    async fn run(mut self) {
        loop {
            tokio::time::sleep(ACTIVITY_GATHERING).await;
            let (rooms, batch_unsupported) = {
                let Ok(mut reports) = self.reports.lock() else { return };
                if reports.queued.is_empty() {
                    reports.sending = false;
                    return;
                }
                let take = reports.queued.len().min(MAX_BATCH);
                (reports.queued.drain(..take).collect::<Vec<_>>(), reports.batch_unsupported)
            };
            if rooms.len() > 1 && !batch_unsupported {
                let room_ids = rooms.iter().map(ToString::to_string).collect();
                let request = room_pb::BatchRecordActivityRequest { room_ids };
                let request = crate::auth::InternalToken::request(self.internal_token.as_ref(), request);
                match self.batch_client.batch_record_activity(request).await {
                    Err(status) if status.code() == tonic::Code::Unimplemented => {
                        if let Ok(mut reports) = self.reports.lock() {
                            reports.batch_unsupported = true;
                        }
                    }
                    Err(status) => {
                        tracing::debug!(rooms = rooms.len(), code = ?status.code(), "recording room activity failed");
                        continue;
                    }
                    Ok(_) => continue,
                }
            }
            for room_id in rooms {
                let request = room_pb::RecordActivityRequest { room_id: room_id.to_string() };
                let request = crate::auth::InternalToken::request(self.internal_token.as_ref(), request);
                if let Err(status) = self.client.record_activity(request).await {
                    tracing::debug!(%room_id, code = ?status.code(), "recording room activity failed");
                }
            }
        }
    }
}

/// One caller of room-svc for queued access checks: sends what is queued, answers everyone
/// waiting, and goes on while checks keep arriving.
struct Flight {
    client: RoomInternalServiceClient<Channel>,
    batch_client: RoomAccessInternalServiceClient<Channel>,
    internal_token: Option<crate::auth::InternalToken>,
    cache: Arc<Mutex<AccessCache>>,
    pending: Arc<Mutex<PendingChecks>>,
}

impl Flight {
    async fn run(mut self) {
        loop {
            let (batch, batch_unsupported) = {
                let Ok(mut pending) = self.pending.lock() else { return };
                if pending.queued.is_empty() {
                    pending.flights -= 1;
                    return;
                }
                let take = pending.queued.len().min(MAX_BATCH);
                (pending.queued.drain(..take).collect::<Vec<_>>(), pending.batch_unsupported)
            };
            let keys: Vec<&AccessKey> = batch.iter().map(|(key, _)| key).collect();
            let answers = self.ask(&keys, batch_unsupported).await;
            if let Ok(mut cache) = self.cache.lock() {
                for ((key, invalidations), answer) in batch.iter().zip(&answers) {
                    if let Ok(access) = answer {
                        cache.remember(key.clone(), *access, *invalidations);
                    }
                }
            }
            let Ok(mut pending) = self.pending.lock() else { return };
            for (entry, answer) in batch.into_iter().zip(answers) {
                for waiter in pending.waiting.remove(&entry).unwrap_or_default() {
                    // A waiter that went away needs no answer.
                    let _ = waiter.send(answer.clone());
                }
            }
        }
    }

    /// One answer per key, in order: one `CheckAccess` for a lone key (or for each key when
    /// room-svc is too old to batch), one `BatchCheckAccess` otherwise.
    async fn ask(&mut self, keys: &[&AccessKey], batch_unsupported: bool) -> Vec<AccessAnswer> {
        if keys.len() > 1 && !batch_unsupported {
            match self.ask_batch(keys).await {
                Err(status) if status.code() == tonic::Code::Unimplemented => {
                    if let Ok(mut pending) = self.pending.lock() {
                        pending.batch_unsupported = true;
                    }
                }
                Err(status) => {
                    let unavailable = unavailable("BatchCheckAccess", &status);
                    return keys.iter().map(|_| Err(unavailable.clone())).collect();
                }
                Ok(answers) => return answers,
            }
        }
        let mut answers = Vec::with_capacity(keys.len());
        for (room_id, user_id) in keys {
            answers.push(self.ask_one(room_id, user_id).await);
        }
        answers
    }

    async fn ask_one(&mut self, room_id: &RoomId, user_id: &UserId) -> AccessAnswer {
        let request = room_pb::CheckAccessRequest { room_id: room_id.to_string(), user_id: user_id.to_string() };
        let request = crate::auth::InternalToken::request(self.internal_token.as_ref(), request);
        match self.client.check_access(request).await {
            Ok(response) => Ok(access_from(response.into_inner())),
            Err(status) if matches!(status.code(), tonic::Code::NotFound | tonic::Code::InvalidArgument) => {
                Err(RoomAccessError::RoomNotFound)
            }
            Err(status) => Err(unavailable("CheckAccess", &status)),
        }
    }

    async fn ask_batch(&mut self, keys: &[&AccessKey]) -> Result<Vec<AccessAnswer>, tonic::Status> {
        let checks = keys
            .iter()
            .map(|(room_id, user_id)| room_pb::CheckAccessRequest {
                room_id: room_id.to_string(),
                user_id: user_id.to_string(),
            })
            .collect();
        let request = room_pb::BatchCheckAccessRequest { checks };
        let request = crate::auth::InternalToken::request(self.internal_token.as_ref(), request);
        let room_pb::BatchCheckAccessResponse { results } =
            self.batch_client.batch_check_access(request).await?.into_inner();
        if results.len() != keys.len() {
            return Err(tonic::Status::internal("BatchCheckAccess answered a different number of checks"));
        }
        let answers = results.into_iter().map(|room_pb::CheckAccessResult { outcome }| {
            use room_pb::check_access_result::Outcome;
            match outcome {
                Some(Outcome::Access(access)) => Ok(access_from(access)),
                Some(Outcome::RoomNotFound(_)) => Err(RoomAccessError::RoomNotFound),
                None => Err(RoomAccessError::Unavailable("BatchCheckAccess answered without an outcome".to_owned())),
            }
        });
        Ok(answers.collect())
    }
}

fn unavailable(rpc: &str, status: &tonic::Status) -> RoomAccessError {
    RoomAccessError::Unavailable(format!("room-svc {rpc}: {}", status.message()))
}

fn access_from(response: room_pb::CheckAccessResponse) -> RoomAccess {
    let room_pb::CheckAccessResponse { status, control_mode: _, role, can_control, can_moderate } = response;
    // An unknown role from a newer room-svc grants nothing rather than guessing.
    let role = match room_pb::Role::try_from(role) {
        Ok(room_pb::Role::Owner) => RoomRole::Owner,
        Ok(room_pb::Role::Moderator) => RoomRole::Moderator,
        Ok(room_pb::Role::Member) => RoomRole::Member,
        Ok(room_pb::Role::Unspecified) | Err(_) => RoomRole::None,
    };
    let active = room_pb::RoomStatus::try_from(status) == Ok(room_pb::RoomStatus::Active);
    RoomAccess { active, role, can_control, can_moderate: can_moderate && active }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomId {
        RoomId::issued(name.to_owned())
    }

    fn user(name: &str) -> UserId {
        UserId::issued(name.to_owned())
    }

    #[test]
    fn entries_expire_after_the_ttl() {
        let start = Instant::now();
        let mut map = TimedMap::new(Duration::from_secs(1));
        map.insert("room", 7, start);
        assert_eq!(map.fresh(&"room", start + Duration::from_millis(999)), Some(7));
        assert_eq!(map.fresh(&"room", start + Duration::from_secs(1)), None);
        assert_eq!(map.fresh(&"other", start), None);
    }

    #[test]
    fn stale_entries_are_swept_once_the_map_is_full() {
        let start = Instant::now();
        let mut map = TimedMap::new(Duration::from_secs(1));
        for key in 0..SWEEP_AT - 1 {
            map.insert(key, (), start);
        }
        let fresh_at = start + Duration::from_millis(500);
        map.insert(SWEEP_AT - 1, (), fresh_at);
        assert_eq!(map.entries.len(), SWEEP_AT);
        // The next insertion sweeps: only the entry still fresh then survives, plus the new one.
        map.insert(SWEEP_AT, (), start + Duration::from_millis(1200));
        assert_eq!(map.entries.len(), 2);
        assert!(map.entries.contains_key(&(SWEEP_AT - 1)));
        assert!(map.entries.contains_key(&SWEEP_AT));
    }

    #[test]
    fn below_the_threshold_nothing_is_swept() {
        let start = Instant::now();
        let mut map = TimedMap::new(Duration::from_secs(1));
        map.insert(1, (), start);
        map.insert(2, (), start + Duration::from_secs(10));
        assert_eq!(map.entries.len(), 2);
    }

    fn client(cache_ttl: Duration, debounce: Duration) -> RoomAccessClient {
        // Nothing listens there: background reports fail quietly, as they may in production.
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        RoomAccessClient::new(channel, cache_ttl, debounce)
    }

    #[tokio::test]
    async fn activity_is_reported_once_per_debounce_period_per_room() {
        let rooms = client(Duration::from_secs(1), Duration::from_secs(60));
        rooms.record_activity(&room("a"));
        rooms.record_activity(&room("a"));
        rooms.record_activity(&room("b"));
        let reported = rooms.activity.lock().map(|map| map.entries.len()).unwrap_or_default();
        assert_eq!(reported, 2);
        let first = rooms.activity.lock().ok().and_then(|map| map.entries.get(&room("a")).map(|(_, at)| *at));
        rooms.record_activity(&room("a"));
        let again = rooms.activity.lock().ok().and_then(|map| map.entries.get(&room("a")).map(|(_, at)| *at));
        assert!(first.is_some());
        assert_eq!(first, again, "a debounced report must not restart the period");
    }

    #[tokio::test]
    async fn events_drop_the_cached_access_they_change_and_heartbeats_do_not() {
        use room_pb::watch_room_events_response::Event;
        let rooms = client(Duration::from_secs(60), Duration::from_secs(60));
        let access = RoomAccess { active: true, role: RoomRole::Member, can_control: true, can_moderate: false };
        let now = Instant::now();
        if let Ok(mut cache) = rooms.cache.lock() {
            cache.answers.insert((room("r1"), user("u1")), access, now);
            cache.answers.insert((room("r1"), user("u2")), access, now);
            cache.answers.insert((room("r2"), user("u1")), access, now);
        }
        let event = |event| room_pb::WatchRoomEventsResponse {
            room_id: "r1".to_owned(),
            event_time: Some(proto::timestamp_from_ms(2_000)),
            event: Some(event),
        };
        let cached = || {
            let mut keys: Vec<_> =
                rooms.cache.lock().map(|c| c.answers.entries.keys().cloned().collect()).unwrap_or_default();
            keys.sort();
            keys
        };
        assert_eq!(rooms.interpret(event(Event::Heartbeat(room_pb::Heartbeat {}))), None);
        assert_eq!(cached().len(), 3);
        // A join changes the joining user's answer only.
        assert_eq!(
            rooms.interpret(event(Event::MemberJoined(room_pb::MemberJoined { user_id: "u2".to_owned() }))),
            Some(RoomChange::MemberJoined { room_id: room("r1"), user_id: user("u2") })
        );
        assert_eq!(cached(), vec![(room("r1"), user("u1")), (room("r2"), user("u1"))]);
        if let Ok(mut cache) = rooms.cache.lock() {
            cache.answers.insert((room("r1"), user("u2")), access, now);
        }
        assert_eq!(
            rooms.interpret(event(Event::RoomClosed(room_pb::RoomClosed { reason: 0 }))),
            Some(RoomChange::Closed { room_id: room("r1"), closed_at_ms: Some(2_000) })
        );
        assert_eq!(cached(), vec![(room("r2"), user("u1"))], "closing drops the whole room's answers");
    }

    #[tokio::test]
    async fn an_answer_asked_for_before_an_event_is_not_kept() {
        let rooms = client(Duration::from_secs(60), Duration::from_secs(60));
        let access = RoomAccess { active: true, role: RoomRole::Owner, can_control: true, can_moderate: true };
        let key = || (room("r1"), user("u1"));
        let asked_at = rooms.cache.lock().map(|cache| cache.invalidations).unwrap_or_default();
        // A kick arrives while the CheckAccess call is in flight.
        rooms.forget(&RoomChange::MemberRemoved { room_id: room("r1"), user_id: user("u1") });
        rooms.remember(key(), access, asked_at);
        assert_eq!(rooms.cache.lock().map(|c| c.answers.entries.len()).unwrap_or_default(), 0);
        let now_at = rooms.cache.lock().map(|cache| cache.invalidations).unwrap_or_default();
        rooms.remember(key(), access, now_at);
        assert_eq!(rooms.cache.lock().map(|c| c.answers.entries.len()).unwrap_or_default(), 1);
    }

    #[tokio::test]
    async fn answers_live_longer_while_events_keep_them_current_and_expire_spread() {
        let rooms = client(Duration::from_secs(2), Duration::from_secs(60));
        let base = Duration::from_secs(2);
        let keys: Vec<_> = (0..200).map(|n| (room(&format!("room-{n}")), user("u"))).collect();
        let short: Vec<_> = keys.iter().map(|key| rooms.ttl_for(key, base)).collect();
        assert!(short.iter().all(|ttl| *ttl <= base && *ttl >= base.mul_f64(0.75)));
        assert!(short.iter().any(|ttl| *ttl != short[0]), "expiries are spread, not identical");
        rooms.set_events_live(true);
        assert!(keys.iter().all(|key| rooms.ttl_for(key, base) >= LIVE_CACHE_TTL.mul_f64(0.75)));
        rooms.set_events_live(false);
        assert!(keys.iter().all(|key| rooms.ttl_for(key, base) <= base));
    }

    #[test]
    fn unknown_roles_grant_nothing_and_closed_rooms_moderate_nothing() {
        let response = room_pb::CheckAccessResponse {
            status: room_pb::RoomStatus::Closed as i32,
            control_mode: 0,
            role: 99,
            can_control: false,
            can_moderate: true,
        };
        let access = access_from(response);
        assert!(!access.active);
        assert!(!access.is_member());
        assert!(!access.can_moderate);
    }
}
