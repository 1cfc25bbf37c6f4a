//! The sync rules around the timeline: who may change it, the optimistic lock, publishing
//! every accepted change, presence and reported drift, wait for everyone, auto-advance, and
//! the live room stream.
//!
//! The database decides every version (see `store.rs`); what is held in memory here is only
//! what this process needs for its own watchers (presence, the last state it saw), so another
//! instance may accept any command.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};
use svc_kit::auth::Caller;
use svc_kit::clock::{SharedClock, millis};
use svc_kit::id::{RoomId, UserId};
use svc_kit::metrics::{Refusal, refusal_counter, registered};
use svc_kit::peer::room::{RoomAccess, RoomAccessClient, RoomAccessError, RoomChange};
use svc_kit::ratelimit::KeyedLimiter;
use svc_kit::status::Violation;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::bus::{RoomBus, RoomEvent, Subscription};
use crate::config::Config;
use crate::grpc::wire;
use crate::store::{Commit, Store, SyncLog};
use crate::timeline::{self, Command, RoomState};

/// The furthest ahead a caller may schedule a play.
pub const MAX_START_AHEAD: Duration = Duration::from_secs(10);
/// The longest lead the server itself schedules, however slow members' links are.
const MAX_START_LEAD: Duration = Duration::from_secs(3);
/// Most heartbeat interval allowed (nginx cuts idle streams at 60 s).
const MAX_HEARTBEAT: Duration = Duration::from_secs(20);
/// Report-only presence entries (no open stream here) are forgotten after this long.
const STALE_REPORT: Duration = Duration::from_secs(30);
/// How often a command that lost only to concurrent queue additions is retried.
const APPEND_RETRIES: usize = 5;
/// Largest sync log page.
pub const MAX_PAGE_SIZE: u64 = 500;
const DEFAULT_PAGE_SIZE: u64 = 100;

/// A player's state as its client reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayerState {
    Unknown,
    Ready,
    Buffering,
    Ended,
    /// Cannot play the current media (a [`LoadError`] says why); never holds the room.
    Failed,
}

/// What went wrong when a player loaded the current media.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadErrorKind {
    Network,
    HttpStatus,
    Decode,
    Unsupported,
    NoRangeSupport,
}

/// A player's trouble with a media item, as reported; every member sees it in presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The media it is about (clients show it only while that media plays).
    pub media_id: String,
    pub kind: LoadErrorKind,
    /// With `HttpStatus`: the status; else 0.
    pub http_status: i32,
    /// The player's words, plain text.
    pub detail: String,
}

/// One person watching a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watcher {
    pub user_id: String,
    pub display_name: String,
    pub state: PlayerState,
    pub offset_ms: i64,
    /// How far the true offset may be from `offset_ms` either way.
    pub offset_uncertainty_ms: i64,
    pub round_trip_ms: i64,
    pub ignore_wait: bool,
    pub reported_at: i64,
    pub load_error: Option<LoadError>,
}

/// A client's status report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub state: PlayerState,
    pub offset_ms: i64,
    /// How far the true offset may be from `offset_ms` either way (the client's clock error).
    pub offset_uncertainty_ms: i64,
    pub round_trip_ms: i64,
    pub ignore_wait: bool,
    /// With `Ended`: which media ended.
    pub media_id: String,
    /// The player's trouble with the current media, if any.
    pub load_error: Option<LoadError>,
}

#[derive(Debug)]
struct WatcherEntry {
    watcher: Watcher,
    /// Open streams of this user on this room in this process.
    streams: usize,
    buffering_since: Option<i64>,
    /// The room already waited the full timeout for this user; they block nobody again until
    /// they report ready.
    waited_out: bool,
}

#[derive(Debug, Default)]
struct RoomPresence {
    watchers: HashMap<UserId, WatcherEntry>,
    /// Users whose presence (here or on another instance) changed since it was last published:
    /// the next delta carries exactly them.
    touched: HashSet<UserId>,
    /// How many delta messages were published; a stream skips those its snapshot already
    /// covers.
    published: u64,
    last_published: Option<Instant>,
    /// This instance's own watchers changed since they were last shared with other instances.
    changed_here: bool,
    last_shared: Option<Instant>,
    /// Another instance accepted a newer version than `latest`: reload it before the rules run.
    stale: bool,
    /// The newest state this process saw; a stale one only costs a refused conditional update.
    latest: Option<RoomState>,
}

impl RoomPresence {
    fn visible_watchers(&self) -> Vec<Watcher> {
        let mut watchers: Vec<Watcher> =
            self.watchers.values().filter(|entry| entry.streams > 0).map(|entry| entry.watcher.clone()).collect();
        watchers.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        watchers
    }

    fn touch(&mut self, user_id: &UserId) {
        if !self.touched.contains(user_id) {
            self.touched.insert(user_id.clone());
        }
    }
}

/// Who watches a room on another instance, as that instance last said.
#[derive(Debug)]
struct RemotePresence {
    watchers: Vec<Watcher>,
    expires_at: Instant,
}

/// sync-svc's counters, gauges and the drift histogram.
#[derive(Debug, Clone)]
pub struct SyncMetrics {
    commands: IntCounterVec,
    conflicts: IntCounter,
    drift: Histogram,
    watchers: IntGauge,
    resyncs: IntCounter,
    permission_denied: IntCounter,
    flood_limited: IntCounter,
}

impl SyncMetrics {
    /// Counts a refused request for monitor-svc's anomaly rules.
    pub fn note_refusal(&self, error: &Error) {
        match error {
            Error::NotMember | Error::Forbidden(_) => self.permission_denied.inc(),
            Error::RateLimited(_) => self.flood_limited.inc(),
            _ => {}
        }
    }

    /// Creates and registers the metrics.
    #[must_use]
    pub fn new(registry: &prometheus::Registry) -> Self {
        Self {
            commands: registered(
                registry,
                IntCounterVec::new(
                    Opts::new("xiaowo_sync_commands_total", "Accepted timeline and queue changes by action."),
                    &["action"],
                ),
            ),
            conflicts: registered(
                registry,
                IntCounter::new(
                    "xiaowo_sync_version_conflicts_total",
                    "Commands refused because another change won (stale version).",
                ),
            ),
            drift: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "xiaowo_sync_drift_seconds",
                        "How far ready players may be from the shared timeline: |measured offset| plus its clock uncertainty.",
                    )
                    .buckets(vec![0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12]),
                ),
            ),
            watchers: registered(registry, IntGauge::new("xiaowo_sync_watch_streams", "Open WatchRoom streams.")),
            resyncs: registered(
                registry,
                IntCounter::new(
                    "xiaowo_sync_watcher_resyncs_total",
                    "Times a watcher fell behind and was sent a fresh snapshot.",
                ),
            ),
            permission_denied: refusal_counter(registry, Refusal::PermissionDenied, "sync"),
            flood_limited: refusal_counter(registry, Refusal::FloodLimited, "sync"),
        }
    }
}

/// Timing settings the rules need (from [`Config`]).
#[derive(Debug, Clone)]
struct Timing {
    heartbeat: Duration,
    min_start_lead: Duration,
    wait_grace_ms: i64,
    wait_timeout_ms: i64,
    presence_interval: Duration,
    presence_heartbeat: Duration,
    presence_expiry: Duration,
}

/// The sync domain: commands, presence, streams and the background rules.
#[derive(Debug)]
pub struct Rooms {
    store: Store,
    bus: Arc<dyn RoomBus>,
    access: Arc<RoomAccessClient>,
    clock: SharedClock,
    limiter: KeyedLimiter,
    /// Status reports come every few seconds from each player; this only stops floods.
    report_limiter: KeyedLimiter,
    timing: Timing,
    presence: Mutex<HashMap<RoomId, RoomPresence>>,
    /// Per room, per other instance: their watchers (only with a broker).
    remote_presence: Mutex<HashMap<RoomId, HashMap<String, RemotePresence>>>,
    metrics: SyncMetrics,
}

/// The stream of encoded `WatchRoomResponse`s a watcher receives.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Bytes, Error>> + Send>>;

/// How a command is checked before it is applied.
enum Lock {
    /// The caller's version must be the stored one.
    Expect(i64),
    /// Applies to whatever the current state is (queue additions).
    Any,
}

impl Rooms {
    /// Counts a refused request (not allowed, flood-limited).
    pub fn note_refusal(&self, error: &Error) {
        self.metrics.note_refusal(error);
    }

    /// The sync domain over `store`, publishing through `bus`.
    #[must_use]
    pub fn new(
        store: Store,
        bus: Arc<dyn RoomBus>,
        access: Arc<RoomAccessClient>,
        clock: SharedClock,
        config: &Config,
        metrics: SyncMetrics,
    ) -> Self {
        Self {
            store,
            bus,
            access,
            clock,
            limiter: KeyedLimiter::new(config.command_burst, f64::from(config.commands_per_second)),
            report_limiter: KeyedLimiter::new(
                config.command_burst.saturating_mul(2),
                f64::from(config.commands_per_second) * 2.0,
            ),
            timing: Timing {
                heartbeat: config.heartbeat_interval.min(MAX_HEARTBEAT).max(Duration::from_millis(10)),
                min_start_lead: config.min_start_lead,
                wait_grace_ms: millis(config.wait_grace),
                wait_timeout_ms: millis(config.wait_timeout),
                presence_interval: config.presence_interval,
                presence_heartbeat: config.presence_heartbeat.max(Duration::from_millis(10)),
                presence_expiry: config.presence_expiry,
            },
            presence: Mutex::new(HashMap::new()),
            remote_presence: Mutex::new(HashMap::new()),
            metrics,
        }
    }

    /// The injected clock's time (server time for clients).
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    fn presence(&self) -> MutexGuard<'_, HashMap<RoomId, RoomPresence>> {
        match self.presence.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    fn remote_presence(&self) -> MutexGuard<'_, HashMap<RoomId, HashMap<String, RemotePresence>>> {
        match self.remote_presence.lock() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Everyone watching the room: here, and on other instances that said so recently. A user
    /// watching on several instances appears once (this instance's entry first).
    ///
    /// With the number of presence deltas published so far: read together, so that a stream
    /// starting from this list skips exactly the deltas it already reflects.
    fn all_watchers(&self, room_id: &RoomId) -> (Vec<Watcher>, u64) {
        let (mut watchers, published) =
            self.presence().get(room_id).map(|room| (room.visible_watchers(), room.published)).unwrap_or_default();
        self.add_remote_watchers(room_id, &mut watchers);
        (watchers, published)
    }

    /// One user's entry as the room's streams show it: this instance's, else another's.
    fn merged_watcher(
        room: &RoomPresence,
        remote: Option<&HashMap<String, RemotePresence>>,
        user_id: &UserId,
        now: Instant,
    ) -> Option<Watcher> {
        if let Some(entry) = room.watchers.get(user_id).filter(|entry| entry.streams > 0) {
            return Some(entry.watcher.clone());
        }
        remote?
            .values()
            .filter(|remote| remote.expires_at > now)
            .find_map(|remote| remote.watchers.iter().find(|watcher| watcher.user_id == user_id.as_str()))
            .cloned()
    }

    /// How many users the room's streams show: this instance's and other instances'.
    fn merged_count(room: &RoomPresence, remote: Option<&HashMap<String, RemotePresence>>, now: Instant) -> usize {
        let mut users: HashSet<&str> =
            room.watchers.iter().filter(|(_, entry)| entry.streams > 0).map(|(user_id, _)| user_id.as_str()).collect();
        if let Some(instances) = remote {
            let elsewhere = instances
                .values()
                .filter(|remote| remote.expires_at > now)
                .flat_map(|remote| remote.watchers.iter().map(|watcher| watcher.user_id.as_str()));
            users.extend(elsewhere);
        }
        users.len()
    }

    fn add_remote_watchers(&self, room_id: &RoomId, watchers: &mut Vec<Watcher>) {
        let now = Instant::now();
        if let Some(instances) = self.remote_presence().get(room_id) {
            for remote in instances.values().filter(|remote| remote.expires_at > now) {
                for watcher in &remote.watchers {
                    if !watchers.iter().any(|known| known.user_id == watcher.user_id) {
                        watchers.push(watcher.clone());
                    }
                }
            }
        }
        watchers.sort_by(|a, b| a.user_id.cmp(&b.user_id));
    }

    /// Another instance's watchers of `room_id` (an empty list: none any more).
    pub fn on_remote_presence(&self, room_id: &RoomId, instance: &str, watchers: Vec<Watcher>) {
        // The instance re-sends its list every heartbeat: only entries that differ from what
        // it said before are news for the streams here.
        let changed: Vec<UserId> = {
            let mut remote = self.remote_presence();
            let before = if watchers.is_empty() {
                let removed = remote.get_mut(room_id).and_then(|instances| instances.remove(instance));
                if remote.get(room_id).is_some_and(HashMap::is_empty) {
                    remote.remove(room_id);
                }
                removed.map(|removed| removed.watchers).unwrap_or_default()
            } else {
                let expires_at = Instant::now() + self.timing.presence_expiry;
                let previous = remote
                    .entry(room_id.to_owned())
                    .or_default()
                    .insert(instance.to_owned(), RemotePresence { watchers: watchers.clone(), expires_at });
                previous.map(|previous| previous.watchers).unwrap_or_default()
            };
            differing_users(&before, &watchers)
        };
        if !changed.is_empty()
            && let Some(room) = self.presence().get_mut(room_id)
        {
            for user_id in &changed {
                room.touch(user_id);
            }
        }
    }

    /// Another instance accepted `version` of the room: the rules here must not run on an older
    /// state (the next tick reloads it).
    pub fn on_remote_change(&self, room_id: &RoomId, version: i64) {
        if let Some(room) = self.presence().get_mut(room_id)
            && room.latest.as_ref().is_none_or(|latest| latest.version < version)
        {
            room.stale = true;
        }
    }

    /// Makes the next tick share every room's watchers with other instances (after the broker
    /// came back, they may have forgotten them).
    pub fn share_presence_again(&self) {
        for room in self.presence().values_mut() {
            room.changed_here = true;
        }
    }

    /// Checks that `caller` is a member of the open room `room_id`.
    async fn require_member(&self, room_id: &RoomId, caller: &Caller) -> Result<RoomAccess, Error> {
        let access = self.access.check(room_id, &caller.user_id).await?;
        if !access.is_member() {
            return Err(Error::NotMember);
        }
        if !access.active {
            return Err(Error::FailedPrecondition("the room is closed"));
        }
        Ok(access)
    }

    async fn current(&self, room_id: &RoomId) -> Result<RoomState, Error> {
        Ok(self.store.load(room_id).await?.unwrap_or_else(|| RoomState::initial(room_id, self.now_ms())))
    }

    /// The room's state and who is watching it here (members only).
    ///
    /// # Errors
    /// Access errors, or a database failure.
    pub async fn get(&self, room_id: &RoomId, caller: &Caller) -> Result<(RoomState, Vec<Watcher>), Error> {
        self.require_member(room_id, caller).await?;
        let state = self.current(room_id).await?;
        Ok((state, self.all_watchers(room_id).0))
    }

    /// The server time a play or rate change should happen at: `requested` (clamped to now, at
    /// most [`MAX_START_AHEAD`] ahead), else now plus a lead covering members' round trips.
    ///
    /// # Errors
    /// A violation of `field` for a time too far ahead.
    pub fn start_time(&self, room_id: &RoomId, requested: Option<i64>, field: &str) -> Result<i64, Violation> {
        let lead_ms = self.start_lead_ms(room_id);
        timeline::schedule_at(self.now_ms(), requested, lead_ms, millis(MAX_START_AHEAD), field)
    }

    fn start_lead_ms(&self, room_id: &RoomId) -> i64 {
        let highest_round_trip = self
            .presence()
            .get(room_id)
            .map(|room| room.watchers.values().map(|entry| entry.watcher.round_trip_ms).max().unwrap_or(0))
            .unwrap_or(0);
        (2 * highest_round_trip).clamp(millis(self.timing.min_start_lead), millis(MAX_START_LEAD))
    }

    /// Applies a caller's command if they may control the room and `expected_version` is
    /// current; returns the new state.
    ///
    /// # Errors
    /// `RateLimited`, access errors, `Conflict` with the current state for a stale version,
    /// the command's own errors, or a database failure.
    pub async fn command(
        &self,
        room_id: &RoomId,
        caller: &Caller,
        expected_version: Option<i64>,
        command: Command,
    ) -> Result<RoomState, Error> {
        self.limiter.try_take(caller.user_id.as_str()).map_err(Error::RateLimited)?;
        let access = self.require_member(room_id, caller).await?;
        if !access.can_control {
            return Err(Error::Forbidden("the room's control mode does not allow you to control it"));
        }
        let lock = expected_version.map_or(Lock::Any, Lock::Expect);
        let state = self.execute(room_id, Some(&caller.user_id), lock, command).await?;
        self.access.record_activity(room_id);
        Ok(state)
    }

    /// Loads, checks the lock, applies and commits conditionally; publishes what was accepted.
    /// Applies `command` for `user_id` (`None`: the server's own rules).
    async fn execute(
        &self,
        room_id: &RoomId,
        user_id: Option<&UserId>,
        lock: Lock,
        command: Command,
    ) -> Result<RoomState, Error> {
        let mut attempts = 0;
        loop {
            attempts += 1;
            // The state this process last saw is good to build on when it is the version the
            // caller names: versions are unique (each is written once, by the one conditional
            // update that won), and a newer stored one makes the commit stale anyway.
            let cached = match lock {
                Lock::Expect(expected) if attempts == 1 => {
                    self.latest(room_id).filter(|latest| latest.version == expected)
                }
                Lock::Expect(_) | Lock::Any => None,
            };
            let current = match cached {
                Some(state) => state,
                None => self.current(room_id).await?,
            };
            if let Lock::Expect(expected) = lock
                && expected != current.version
            {
                self.metrics.conflicts.inc();
                self.remember(&current);
                return Err(Error::Conflict(Box::new(current)));
            }
            let next = timeline::apply(&current, command.clone(), user_id, self.now_ms())?;
            match self.store.commit(current.version, &next).await? {
                Commit::Accepted => {
                    self.metrics.commands.with_label_values(&[next.last_action.as_str()]).inc();
                    tracing::info!(%room_id, version = next.version, action = next.last_action.as_str(), "room changed");
                    self.publish_state(&next);
                    return Ok(next);
                }
                Commit::Stale if matches!(lock, Lock::Any) && attempts < APPEND_RETRIES => {}
                Commit::Stale => {
                    self.metrics.conflicts.inc();
                    let current = self.current(room_id).await?;
                    self.remember(&current);
                    return Err(Error::Conflict(Box::new(current)));
                }
            }
        }
    }

    fn latest(&self, room_id: &RoomId) -> Option<RoomState> {
        self.presence().get(room_id).and_then(|room| room.latest.clone())
    }

    fn remember(&self, state: &RoomState) {
        if let Some(room) = self.presence().get_mut(&state.room_id)
            && room.latest.as_ref().is_none_or(|latest| latest.version <= state.version)
        {
            room.latest = Some(state.clone());
        }
    }

    fn publish_state(&self, state: &RoomState) {
        self.remember(state);
        let encoded = wire::encode_state(state, self.now_ms());
        self.bus.publish(&state.room_id, RoomEvent::Message { version: Some(state.version), encoded });
    }

    /// Records a client's player status and drift; an end report advances the queue.
    ///
    /// # Errors
    /// Access errors, or a database failure while advancing.
    pub async fn report(&self, room_id: &RoomId, caller: &Caller, report: StatusReport) -> Result<(), Error> {
        self.report_limiter.try_take(caller.user_id.as_str()).map_err(Error::RateLimited)?;
        self.require_member(room_id, caller).await?;
        let now = self.now_ms();
        if report.state == PlayerState::Ready {
            // What the player measured, widened by what its clock cannot know: a clock estimate
            // off by half a lopsided round trip must show here, not hide behind an offset of 0.
            // Offsets and uncertainties were checked to be within a day: far inside a u32 of
            // milliseconds.
            let drift_ms = report.offset_ms.unsigned_abs().saturating_add(report.offset_uncertainty_ms.unsigned_abs());
            let drift_ms = u32::try_from(drift_ms).unwrap_or(u32::MAX);
            self.metrics.drift.observe(f64::from(drift_ms) / 1000.0);
        }
        {
            let mut presence = self.presence();
            let room = presence.entry(room_id.clone()).or_default();
            let entry = room.watchers.entry(caller.user_id.clone()).or_insert_with(|| WatcherEntry {
                watcher: new_watcher(caller, now),
                streams: 0,
                buffering_since: None,
                waited_out: false,
            });
            entry.buffering_since = match (report.state, entry.buffering_since) {
                (PlayerState::Buffering, Some(since)) => Some(since),
                (PlayerState::Buffering, None) => Some(now),
                _ => None,
            };
            if report.state == PlayerState::Ready {
                entry.waited_out = false;
            }
            let StatusReport {
                state,
                offset_ms,
                offset_uncertainty_ms,
                round_trip_ms,
                ignore_wait,
                media_id: _,
                load_error,
            } = report.clone();
            entry.watcher = Watcher {
                user_id: caller.user_id.to_string(),
                display_name: caller.display_name.clone(),
                state,
                offset_ms,
                offset_uncertainty_ms,
                round_trip_ms,
                ignore_wait,
                reported_at: now,
                load_error,
            };
            room.touch(&caller.user_id);
            room.changed_here = true;
        }
        if report.state == PlayerState::Ended && !report.media_id.is_empty() {
            let current = self.current(room_id).await?;
            let playing_it = current.timeline.media.as_ref().is_some_and(|media| media.media_id == report.media_id);
            if playing_it && !current.timeline.paused {
                let start_at_ms = now + self.start_lead_ms(room_id);
                let command = Command::AutoAdvance { media_id: report.media_id, start_at_ms };
                self.system_command(&current, command).await;
            }
        }
        self.access.record_activity(room_id);
        Ok(())
    }

    /// A change the server makes itself; losing a race to a person is fine (the next tick
    /// looks again at the newer state).
    async fn system_command(&self, current: &RoomState, command: Command) {
        match self.execute(&current.room_id, None, Lock::Expect(current.version), command).await {
            Ok(_) | Err(Error::Conflict(_) | Error::FailedPrecondition(_)) => {}
            Err(error) => tracing::warn!(room_id = %current.room_id, %error, "automatic room change failed"),
        }
    }

    /// Opens the caller's live stream of the room: a snapshot first, then every change.
    ///
    /// # Errors
    /// Access errors, or a database failure loading the snapshot.
    pub async fn watch(
        self: &Arc<Self>,
        room_id: &RoomId,
        caller: &Caller,
        shutdown: &CancellationToken,
    ) -> Result<WatchStream, Error> {
        self.require_member(room_id, caller).await?;
        // Subscribe before loading, so that nothing between the snapshot and the first event
        // is lost; events the snapshot already covers are skipped by version.
        let subscription = self.bus.subscribe(room_id);
        // The ticker tells the streams subscribed when the service stops; one subscribed
        // after it did sees the token cancelled here.
        if shutdown.is_cancelled() {
            return Err(Error::ShuttingDown);
        }
        let guard = PresenceGuard::join(Arc::clone(self), room_id, caller);
        let (snapshot, version, published) = self.snapshot(room_id).await?;
        let watch = Watch {
            rooms: Arc::clone(self),
            room_id: room_id.clone(),
            user_id: caller.user_id.clone(),
            subscription,
            pending: snapshot.into_iter(),
            seen_version: version,
            seen_presence: published,
            finished: false,
            _guard: guard,
        };
        Ok(Box::pin(futures_util::stream::unfold(watch, Watch::next)))
    }

    /// The encoded snapshot (its messages in order), the state version and the presence
    /// deltas it reflects.
    async fn snapshot(&self, room_id: &RoomId) -> Result<(Vec<Bytes>, i64, u64), Error> {
        let state = self.current(room_id).await?;
        self.remember(&state);
        let (watchers, published) = self.all_watchers(room_id);
        Ok((wire::encode_snapshot(&state, &watchers, self.now_ms()), state.version, published))
    }

    fn join(&self, room_id: &RoomId, caller: &Caller) {
        let now = self.now_ms();
        let mut presence = self.presence();
        let room = presence.entry(room_id.clone()).or_default();
        let entry = room.watchers.entry(caller.user_id.clone()).or_insert_with(|| WatcherEntry {
            watcher: new_watcher(caller, now),
            streams: 0,
            buffering_since: None,
            waited_out: false,
        });
        entry.streams += 1;
        room.touch(&caller.user_id);
        room.changed_here = true;
        self.metrics.watchers.inc();
    }

    fn leave(&self, room_id: &RoomId, user_id: &UserId) {
        self.metrics.watchers.dec();
        let mut presence = self.presence();
        let Some(room) = presence.get_mut(room_id) else { return };
        if let Some(entry) = room.watchers.get_mut(user_id) {
            entry.streams = entry.streams.saturating_sub(1);
            if entry.streams == 0 {
                room.watchers.remove(user_id);
            }
        }
        room.touch(user_id);
        room.changed_here = true;
        if room.watchers.is_empty() {
            presence.remove(room_id);
            drop(presence);
            // Other instances drop this one's watchers now rather than at the expiry.
            self.bus.share_presence(room_id, wire::encode_presence(&[], self.now_ms()));
        }
    }

    /// Turns a room-svc event into ended streams.
    pub fn on_room_change(self: &Arc<Self>, change: RoomChange) {
        match change {
            RoomChange::MemberRemoved { room_id, user_id } => {
                self.bus.publish(&room_id, RoomEvent::MemberRemoved { user_id });
            }
            RoomChange::Closed { room_id, closed_at_ms: _ } => self.bus.publish(&room_id, RoomEvent::RoomClosed),
            RoomChange::MemberJoined { .. } | RoomChange::RoleChanged { .. } | RoomChange::Updated { .. } => {}
            RoomChange::Reconnected => {
                // Events missed while disconnected are not replayed: ask again for every
                // watcher here, so that nobody keeps watching a room they were removed from.
                let watched: Vec<(RoomId, Vec<UserId>)> = self
                    .presence()
                    .iter()
                    .map(|(room_id, room)| (room_id.clone(), room.watchers.keys().cloned().collect()))
                    .filter(|(_, users): &(RoomId, Vec<UserId>)| !users.is_empty())
                    .collect();
                if !watched.is_empty() {
                    let rooms = Arc::clone(self);
                    tokio::spawn(async move { rooms.recheck_watchers(watched).await });
                }
            }
        }
    }

    async fn recheck_watchers(&self, watched: Vec<(RoomId, Vec<UserId>)>) {
        for (room_id, users) in watched {
            for user_id in users {
                match self.access.check(&room_id, &user_id).await {
                    Ok(access) if !access.active => {
                        self.bus.publish(&room_id, RoomEvent::RoomClosed);
                        break;
                    }
                    Err(RoomAccessError::RoomNotFound) => {
                        self.bus.publish(&room_id, RoomEvent::RoomClosed);
                        break;
                    }
                    Ok(access) if !access.is_member() => {
                        self.bus.publish(&room_id, RoomEvent::MemberRemoved { user_id });
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(%room_id, %error, "re-checking a watcher's access failed"),
                }
            }
        }
    }

    /// Runs the room rules every `interval` until `shutdown`: auto-advance at the end of an
    /// item, wait for everyone, presence publishing and heartbeats; at `shutdown`, tells every
    /// stream here to end (streams hold no timer or shutdown wait of their own: an idle stream
    /// is polled only when its room's channel has something).
    pub async fn run_ticker(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => {
                    self.bus.publish_everywhere(&RoomEvent::ShuttingDown);
                    return;
                }
                _ = ticker.tick() => {}
            }
            self.tick().await;
        }
    }

    /// One pass of the room rules over the rooms watched here.
    pub async fn tick(&self) {
        let stale: Vec<RoomId> = self
            .presence()
            .iter_mut()
            .filter(|(_, room)| room.stale)
            .map(|(room_id, room)| {
                room.stale = false;
                room_id.clone()
            })
            .collect();
        for room_id in stale {
            match self.store.load(&room_id).await {
                Ok(Some(state)) => self.remember(&state),
                Ok(None) => {}
                Err(error) => tracing::warn!(%room_id, %error, "reloading a room changed elsewhere failed"),
            }
        }
        let now = self.now_ms();
        let mut due = Vec::new();
        let expired = self.expire_remote_presence();
        let shares_presence = self.bus.shares_presence();
        {
            let mut presence = self.presence();
            for (room_id, room) in presence.iter_mut() {
                room.watchers
                    .retain(|_, entry| entry.streams > 0 || now - entry.watcher.reported_at < millis(STALE_REPORT));
                if let Some(users) = expired.get(room_id) {
                    for user_id in users {
                        room.touch(user_id);
                    }
                }
                let share_due = room.last_shared.is_none_or(|at| at.elapsed() >= self.timing.presence_heartbeat);
                // Without other instances there is nobody to tell, and nothing to encode.
                if shares_presence
                    && (share_due
                        || (room.changed_here
                            && room.last_shared.is_none_or(|at| at.elapsed() >= self.timing.presence_interval)))
                {
                    room.changed_here = false;
                    room.last_shared = Some(Instant::now());
                    self.bus.share_presence(room_id, wire::encode_presence(&room.visible_watchers(), now));
                }
                let publish_due = room.last_published.is_none_or(|at| at.elapsed() >= self.timing.presence_interval);
                if !room.touched.is_empty() && publish_due {
                    room.last_published = Some(Instant::now());
                    for encoded in self.presence_delta(room_id, room, now) {
                        room.published += 1;
                        self.bus.publish(room_id, RoomEvent::Presence { published: room.published, encoded });
                    }
                }
                // The state is lent out and put back, so that only rooms with something due
                // cost a copy on each tick.
                if let Some(state) = room.latest.take() {
                    let command = self.automatic_command(&state, room, now);
                    if let Some(command) = command {
                        due.push((state.clone(), command));
                    }
                    room.latest.get_or_insert(state);
                }
            }
        }
        for (state, command) in due {
            self.system_command(&state, command).await;
        }
        // A heartbeat for the streams of every room that has been quiet for an interval.
        let heartbeat = RoomEvent::Message { version: None, encoded: wire::encode_heartbeat(self.now_ms()) };
        self.bus.publish_where_quiet(self.timing.heartbeat, &heartbeat);
    }

    /// The delta of `room`'s presence since its last one (its touched users, each with their
    /// entry now or as left), as its messages; clears the touched set.
    fn presence_delta(&self, room_id: &RoomId, room: &mut RoomPresence, now_ms: i64) -> Vec<Bytes> {
        let now = Instant::now();
        let remote_presence = self.remote_presence();
        let remote = remote_presence.get(room_id);
        let mut watchers = Vec::new();
        let mut left = Vec::new();
        for user_id in std::mem::take(&mut room.touched) {
            match Self::merged_watcher(room, remote, &user_id, now) {
                Some(watcher) => watchers.push(watcher),
                None => left.push(user_id),
            }
        }
        watchers.sort_by(|a, b| a.user_id.cmp(&b.user_id));
        left.sort();
        let count = Self::merged_count(room, remote, now);
        drop(remote_presence);
        wire::encode_presence_delta(&watchers, &left, count, now_ms)
    }

    /// Forgets other instances' watchers that were not confirmed in time (that instance died
    /// or lost the broker); returns, per room, the users whose entries went with them.
    fn expire_remote_presence(&self) -> HashMap<RoomId, Vec<UserId>> {
        let now = Instant::now();
        let mut expired: HashMap<RoomId, Vec<UserId>> = HashMap::new();
        self.remote_presence().retain(|room_id, instances| {
            instances.retain(|_, remote| {
                let alive = remote.expires_at > now;
                if !alive {
                    let users = remote.watchers.iter().map(|watcher| UserId::issued(watcher.user_id.clone()));
                    expired.entry(room_id.clone()).or_default().extend(users);
                }
                alive
            });
            !instances.is_empty()
        });
        expired
    }

    /// What the server should do to `state` by itself now, if anything.
    fn automatic_command(&self, state: &RoomState, room: &mut RoomPresence, now: i64) -> Option<Command> {
        let timeline = &state.timeline;
        if timeline.has_ended_at(now) {
            let media_id = timeline.media.as_ref()?.media_id.clone();
            return Some(Command::AutoAdvance { media_id, start_at_ms: now + millis(self.timing.min_start_lead) });
        }
        if !state.wait_for_everyone {
            return None;
        }
        let blocking = |entry: &&WatcherEntry| {
            entry.streams > 0
                && !entry.watcher.ignore_wait
                && !entry.waited_out
                && entry.watcher.state == PlayerState::Buffering
        };
        if !state.waiting_for.is_empty() {
            // Watchers on other instances count too: their buffering is known from presence.
            let still_waiting =
                room.watchers.values().filter(blocking).any(|entry| state.waiting_for.contains(&entry.watcher.user_id))
                    || self.remote_presence().get(&state.room_id).is_some_and(|instances| {
                        instances.values().flat_map(|remote| &remote.watchers).any(|watcher| {
                            watcher.state == PlayerState::Buffering
                                && !watcher.ignore_wait
                                && state.waiting_for.contains(&watcher.user_id)
                        })
                    });
            let timed_out = now - state.updated_at >= self.timing.wait_timeout_ms;
            if timed_out {
                // Those still buffering no longer hold the room until they have been ready.
                for entry in room.watchers.values_mut() {
                    if state.waiting_for.contains(&entry.watcher.user_id) {
                        entry.waited_out = true;
                    }
                }
            }
            if !still_waiting || timed_out {
                return Some(Command::WaitResume { start_at_ms: now + millis(self.timing.min_start_lead) });
            }
            return None;
        }
        if timeline.paused || timeline.media.is_none() {
            return None;
        }
        let mut users: Vec<String> = room
            .watchers
            .values()
            .filter(blocking)
            .filter(|entry| entry.buffering_since.is_some_and(|since| now - since >= self.timing.wait_grace_ms))
            .map(|entry| entry.watcher.user_id.clone())
            .collect();
        users.sort();
        (!users.is_empty()).then_some(Command::WaitPause { users })
    }

    /// A page of the room's sync log for operators.
    ///
    /// # Errors
    /// A bad page token or size, or a database failure.
    pub async fn sync_logs(
        &self,
        room_id: &RoomId,
        start_ms: Option<i64>,
        end_ms: Option<i64>,
        page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<SyncLog>, Option<String>), Error> {
        let limit = match u64::try_from(page_size) {
            Ok(0) => DEFAULT_PAGE_SIZE,
            Ok(size) if size <= MAX_PAGE_SIZE => size,
            _ => return Err(Violation::new("page_size", "must be from 0 to 500").into()),
        };
        let after_id = if page_token.is_empty() {
            0
        } else {
            page_token.parse::<i64>().map_err(|_| Violation::new("page_token", "not a token from a previous page"))?
        };
        let end_ms = end_ms.unwrap_or_else(|| self.now_ms() + 1);
        let logs = self.store.sync_logs(room_id, start_ms.unwrap_or(0), end_ms, after_id, limit).await?;
        let next = (logs.len() as u64 == limit).then(|| logs.last().map(|log| log.sync_log_id.to_string())).flatten();
        Ok((logs, next))
    }
}

/// The users whose entries differ between two lists of one instance's watchers (joined, left
/// or changed).
fn differing_users(before: &[Watcher], after: &[Watcher]) -> Vec<UserId> {
    let old: HashMap<&str, &Watcher> = before.iter().map(|watcher| (watcher.user_id.as_str(), watcher)).collect();
    let new: HashMap<&str, &Watcher> = after.iter().map(|watcher| (watcher.user_id.as_str(), watcher)).collect();
    let changed = after.iter().filter(|watcher| old.get(watcher.user_id.as_str()) != Some(watcher));
    let gone = before.iter().filter(|watcher| !new.contains_key(watcher.user_id.as_str()));
    changed.chain(gone).map(|watcher| UserId::issued(watcher.user_id.clone())).collect()
}

fn new_watcher(caller: &Caller, now: i64) -> Watcher {
    Watcher {
        user_id: caller.user_id.to_string(),
        display_name: caller.display_name.clone(),
        state: PlayerState::Unknown,
        offset_ms: 0,
        offset_uncertainty_ms: 0,
        round_trip_ms: 0,
        ignore_wait: false,
        reported_at: now,
        load_error: None,
    }
}

/// Counts a stream in the room's presence for as long as it lives.
struct PresenceGuard {
    rooms: Arc<Rooms>,
    room_id: RoomId,
    user_id: UserId,
}

impl PresenceGuard {
    fn join(rooms: Arc<Rooms>, room_id: &RoomId, caller: &Caller) -> Self {
        rooms.join(room_id, caller);
        Self { rooms, room_id: room_id.to_owned(), user_id: caller.user_id.clone() }
    }
}

impl Drop for PresenceGuard {
    fn drop(&mut self) {
        self.rooms.leave(&self.room_id, &self.user_id);
    }
}

/// One watcher's stream state.
struct Watch {
    rooms: Arc<Rooms>,
    room_id: RoomId,
    user_id: UserId,
    /// The room's events, heartbeats and the notice of shutdown (all from the room's channel).
    subscription: Subscription,
    /// Messages to send before the room's events (a snapshot's).
    pending: std::vec::IntoIter<Bytes>,
    /// The newest state version this watcher has been sent; older state events are skipped.
    seen_version: i64,
    /// The presence deltas its snapshot reflects; those are skipped.
    seen_presence: u64,
    finished: bool,
    _guard: PresenceGuard,
}

/// What a watch yields next with its state for the item after (the shape `unfold` takes).
type WatchStep = Option<(Result<Bytes, Error>, Watch)>;

impl Watch {
    fn sent(self, encoded: Bytes) -> Option<(Result<Bytes, Error>, Self)> {
        Some((Ok(encoded), self))
    }

    fn pop_pending(&mut self) -> Option<Bytes> {
        let message = self.pending.next()?;
        if self.pending.len() == 0 {
            // An idle stream holds no room for the pages it sent.
            self.pending = Vec::new().into_iter();
        }
        Some(message)
    }

    fn end(mut self, error: Error) -> Option<(Result<Bytes, Error>, Self)> {
        self.finished = true;
        Some((Err(error), self))
    }

    /// Sends a fresh snapshot from the database instead of the events that were missed.
    ///
    /// Boxed: the database read's state is a few KiB, and inline it would size every idle
    /// watcher's stream for this rare path.
    fn resync(self, reason: &'static str) -> futures_util::future::BoxFuture<'static, WatchStep> {
        Box::pin(self.resync_now(reason))
    }

    async fn resync_now(self, reason: &'static str) -> Option<(Result<Bytes, Error>, Self)> {
        self.rooms.metrics.resyncs.inc();
        tracing::debug!(room_id = %self.room_id, reason, "resending a snapshot");
        match self.rooms.snapshot(&self.room_id).await {
            Ok((snapshot, version, published)) => {
                let mut watch = self;
                watch.seen_version = version;
                watch.seen_presence = published;
                watch.pending = snapshot.into_iter();
                let first = watch.pop_pending()?;
                watch.sent(first)
            }
            Err(error) => self.end(error),
        }
    }

    async fn next(mut self) -> Option<(Result<Bytes, Error>, Self)> {
        if self.finished {
            return None;
        }
        if let Some(message) = self.pop_pending() {
            return self.sent(message);
        }
        loop {
            match self.subscription.recv().await {
                Ok(RoomEvent::Message { version: Some(version), .. }) if version <= self.seen_version => {}
                // A version was skipped (lost between instances, or published out of order):
                // the database has the truth.
                Ok(RoomEvent::Message { version: Some(version), .. }) if version > self.seen_version + 1 => {
                    return self.resync("version gap").await;
                }
                Ok(RoomEvent::Resync) => return self.resync("broker reconnected").await,
                Ok(RoomEvent::Presence { published, .. }) if published <= self.seen_presence => {}
                Ok(RoomEvent::Presence { published, encoded }) => {
                    self.seen_presence = published;
                    return self.sent(encoded);
                }
                Ok(RoomEvent::Message { version, encoded }) => {
                    if let Some(version) = version {
                        self.seen_version = version;
                    }
                    return self.sent(encoded);
                }
                Ok(RoomEvent::MemberRemoved { user_id }) if user_id == self.user_id => {
                    return self.end(Error::NotMember);
                }
                Ok(RoomEvent::MemberRemoved { .. }) => {}
                Ok(RoomEvent::RoomClosed) => return self.end(Error::FailedPrecondition("the room was closed")),
                Ok(RoomEvent::ShuttingDown) => return self.end(Error::ShuttingDown),
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(room_id = %self.room_id, missed, "watcher fell behind");
                    return self.resync("lagged").await;
                }
                Err(RecvError::Closed) => return None,
            }
        }
    }
}
