//! room-svc as a peer (`xiaowo.room.v1.RoomInternalService`), as every room-scoped service
//! needs it: what a user may do in a room (cached briefly), room activity (debounced per room and
//! sent in the background), and the room event stream, which drops cached access at once and
//! hands the changes that matter to the service. room-svc's protobuf stays in here; services
//! see plain Rust types.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use proto::room::v1 as room_pb;
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
/// room's answers at once, so this only bounds what an event lost without the stream breaking
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
    answers: TimedMap<(RoomId, UserId), RoomAccess>,
    invalidations: u64,
}

/// Cached access checks, debounced activity reports and the room event follower, over one
/// channel to room-svc.
#[derive(Debug)]
pub struct RoomAccessClient {
    client: RoomInternalServiceClient<Channel>,
    internal_token: Option<crate::auth::InternalToken>,
    cache: Mutex<AccessCache>,
    /// room-svc's event stream is live, so cached answers are dropped as soon as they change.
    events_live: AtomicBool,
    /// Spreads expiries over the last quarter of the TTL so that answers cached together are
    /// not all asked for again in the same instant.
    jitter: std::hash::RandomState,
    activity: Mutex<TimedMap<RoomId, ()>>,
}

impl RoomAccessClient {
    /// Asks room-svc over `channel` (which carries the per-call deadline), keeping answers for
    /// `cache_ttl` (for [`LIVE_CACHE_TTL`] while [`Self::follow_events`] is live, whichever is
    /// longer; a zero `cache_ttl` keeps none) and reporting each room's activity at most once per `activity_debounce`.
    #[must_use]
    pub fn new(channel: Channel, cache_ttl: Duration, activity_debounce: Duration) -> Self {
        Self {
            client: RoomInternalServiceClient::new(channel),
            internal_token: None,
            cache: Mutex::new(AccessCache { answers: TimedMap::new(cache_ttl), invalidations: 0 }),
            events_live: AtomicBool::new(false),
            jitter: std::hash::RandomState::new(),
            activity: Mutex::new(TimedMap::new(activity_debounce)),
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

    /// What `user_id` may do in `room_id`.
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
        let request =
            self.request(room_pb::CheckAccessRequest { room_id: room_id.to_string(), user_id: user_id.to_string() });
        let response = self.client.clone().check_access(request).await.map_err(|status| match status.code() {
            tonic::Code::NotFound | tonic::Code::InvalidArgument => RoomAccessError::RoomNotFound,
            _ => RoomAccessError::Unavailable(format!("room-svc CheckAccess: {}", status.message())),
        })?;
        let access = access_from(response.into_inner());
        self.remember(key, access, invalidations);
        Ok(access)
    }

    /// Stores an answer asked for when `invalidations` events had dropped answers, unless
    /// another has since: that event may have changed it.
    fn remember(&self, key: (RoomId, UserId), access: RoomAccess, invalidations: u64) {
        if let Ok(mut cache) = self.cache.lock()
            && cache.invalidations == invalidations
        {
            cache.answers.insert(key, access, Instant::now());
        }
    }

    fn forget_room(&self, room_id: &RoomId) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.invalidations += 1;
            cache.answers.entries.retain(|(cached_room, _), _| cached_room != room_id);
        }
    }

    fn forget_all(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.invalidations += 1;
            cache.answers.entries.clear();
        }
    }

    /// Without live events, answers are fresh for the short TTL again: those older than it are
    /// asked for anew.
    fn set_events_live(&self, live: bool) {
        self.events_live.store(live, Ordering::Release);
    }

    /// Tells room-svc the room is in use, at most once per debounce period per room, in the
    /// background: the caller must neither wait for it nor fail because of it.
    pub fn record_activity(&self, room_id: &RoomId) {
        {
            let Ok(mut activity) = self.activity.lock() else { return };
            let now = Instant::now();
            if activity.fresh(room_id, now).is_some() {
                return;
            }
            activity.insert(room_id.clone(), (), now);
        }
        let mut client = self.client.clone();
        let room_id = room_id.clone();
        let request = self.request(room_pb::RecordActivityRequest { room_id: room_id.to_string() });
        tokio::spawn(async move {
            if let Err(status) = client.record_activity(request).await {
                tracing::debug!(%room_id, code = ?status.code(), "recording room activity failed");
            }
        });
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
                self.forget_all();
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
        if let Some(room_id) = change_room(&change) {
            self.forget_room(room_id);
        }
        Some(change)
    }
}

fn change_room(change: &RoomChange) -> Option<&RoomId> {
    match change {
        RoomChange::MemberJoined { room_id, .. }
        | RoomChange::MemberRemoved { room_id, .. }
        | RoomChange::RoleChanged { room_id, .. }
        | RoomChange::Updated { room_id }
        | RoomChange::Closed { room_id, .. } => Some(room_id),
        RoomChange::Reconnected => None,
    }
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
    async fn events_drop_the_rooms_cached_access_and_heartbeats_do_not() {
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
        assert_eq!(rooms.interpret(event(Event::Heartbeat(room_pb::Heartbeat {}))), None);
        assert_eq!(rooms.cache.lock().map(|c| c.answers.entries.len()).unwrap_or_default(), 3);
        assert_eq!(
            rooms.interpret(event(Event::RoomClosed(room_pb::RoomClosed { reason: 0 }))),
            Some(RoomChange::Closed { room_id: room("r1"), closed_at_ms: Some(2_000) })
        );
        let left: Vec<_> = rooms.cache.lock().map(|c| c.answers.entries.keys().cloned().collect()).unwrap_or_default();
        assert_eq!(left, vec![(room("r2"), user("u1"))]);
    }

    #[tokio::test]
    async fn an_answer_asked_for_before_an_event_is_not_kept() {
        let rooms = client(Duration::from_secs(60), Duration::from_secs(60));
        let access = RoomAccess { active: true, role: RoomRole::Owner, can_control: true, can_moderate: true };
        let key = || (room("r1"), user("u1"));
        let asked_at = rooms.cache.lock().map(|cache| cache.invalidations).unwrap_or_default();
        // A kick arrives while the CheckAccess call is in flight.
        rooms.forget_room(&room("r1"));
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
