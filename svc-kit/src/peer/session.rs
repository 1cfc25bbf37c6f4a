//! session-svc as a peer: validating the session tokens callers present (with a deadline and
//! a cache that session-svc's change feed keeps current). session-svc's protobuf stays in here;
//! services see [`Caller`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use proto::session::v1 as pb;
use proto::session::v1::session_internal_service_client::SessionInternalServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::auth::{AuthError, Caller, InternalToken, token_hash};
use crate::feed::Followed;
use crate::id::UserId;

/// Validates session tokens with session-svc, caching answers so that a chatty client costs
/// one validation per TTL, not one per call.
///
/// While [`Self::follow_session_changes`] keeps session-svc's change stream live, an end
/// (logout, revocation, rotation) or rename drops the user's cached answers at once, so they
/// are kept for [`LIVE_CACHE_TTL`]; without the stream a revoked session keeps working for at
/// most `cache_ttl`. An answer is never served past the session's own expiry.
///
/// An answer past half its TTL is still served while it is validated again in the background,
/// so a client in steady use never waits for session-svc. The same happens once a quarter of the
/// session's remaining idle life has passed, so that using a service keeps sliding the session's
/// idle expiry at session-svc (at most once per idle timeout / 4).
#[derive(Debug)]
pub struct SessionValidator {
    client: SessionInternalServiceClient<Channel>,
    internal_token: Option<InternalToken>,
    cache_ttl: Duration,
    cache: Arc<Mutex<CallerCache>>,
    /// session-svc's change stream is live, so cached answers are dropped as soon as they change.
    changes_live: AtomicBool,
}

/// Cached answers with the count of invalidations so far: an answer asked for before a change
/// dropped its user must not be stored after it.
#[derive(Debug, Default)]
struct CallerCache {
    entries: HashMap<String, CachedCaller>,
    invalidations: u64,
}

#[derive(Debug)]
struct CachedCaller {
    caller: Caller,
    at: Instant,
    /// The session's own expiry, as far as session-svc said.
    expires_at: Option<Instant>,
    /// A background validation is on its way.
    refreshing: bool,
}

/// session-svc's answer: the caller and until when the session is valid unless used.
#[derive(Debug, Clone)]
struct Validated {
    caller: Caller,
    expires_at: Option<Instant>,
}

/// What a cached answer is good for now.
enum Cached {
    /// Fresh: use it.
    Fresh(Caller),
    /// Past half its TTL: use it, and validate again in the background.
    Refresh(Caller),
    /// Absent or expired: validate before answering.
    Missing,
}

/// Entries above which the cache is swept of stale ones before inserting.
const CACHE_SWEEP_AT: usize = 10_000;
/// How long an answer is kept while session-svc's change stream is live. Every end and rename
/// arrives as a change and drops the user's answers at once, so this only bounds what a change
/// lost without the stream breaking could leave behind; it spares the services a ValidateSession
/// round trip per session every few seconds.
pub const LIVE_CACHE_TTL: Duration = Duration::from_secs(300);

impl SessionValidator {
    /// A validator calling session-svc over `channel`, keeping answers for `cache_ttl` (for
    /// [`LIVE_CACHE_TTL`] while [`Self::follow_session_changes`] is live, whichever is longer;
    /// a zero `cache_ttl` keeps none).
    #[must_use]
    pub fn new(channel: Channel, cache_ttl: Duration) -> Self {
        Self {
            client: SessionInternalServiceClient::new(channel),
            internal_token: None,
            cache_ttl,
            cache: Arc::default(),
            changes_live: AtomicBool::new(false),
        }
    }

    /// Presents `token` to session-svc's internal API on every validation.
    #[must_use]
    pub fn with_internal_token(mut self, token: Option<InternalToken>) -> Self {
        self.internal_token = token;
        self
    }

    /// The caller owning `token`.
    ///
    /// # Errors
    /// `Unauthenticated` for an unknown or expired token; `Unavailable` when session-svc does
    /// not answer within its deadline.
    pub async fn validate(&self, token: &str) -> Result<Caller, AuthError> {
        let key = token_hash(token);
        let (cached, invalidations) = self.cached(&key);
        match cached {
            Cached::Fresh(caller) => return Ok(caller),
            Cached::Refresh(caller) => {
                self.refresh_in_background(key, token.to_owned(), invalidations);
                return Ok(caller);
            }
            Cached::Missing => {}
        }
        let validated = ask(self.client.clone(), self.internal_token.clone(), token.to_owned()).await?;
        let caller = validated.caller.clone();
        remember(&self.cache, key, validated, invalidations);
        Ok(caller)
    }

    /// Whether session-svc's change stream is live, so answers are kept for [`LIVE_CACHE_TTL`].
    #[must_use]
    pub fn following_changes(&self) -> bool {
        self.changes_live.load(Ordering::Acquire)
    }

    /// How long an answer stays fresh now: longer while changes keep the cache current, and
    /// between 3/4 and all of that depending on the key (a token hash), so that answers cached
    /// together are not all asked for again in the same instant. Zero turns caching off.
    fn ttl_for(&self, key: &str) -> Duration {
        // The key is a SHA-256 in hex: its first digits are as good a seed as any.
        let seed = key.get(..3).and_then(|digits| u64::from_str_radix(digits, 16).ok()).unwrap_or(0);
        crate::clock::cache_ttl(self.cache_ttl, self.following_changes(), LIVE_CACHE_TTL, seed)
    }

    /// The cached answer for `key` and the invalidation count to store a new one under.
    fn cached(&self, key: &str) -> (Cached, u64) {
        let ttl = self.ttl_for(key);
        let Ok(mut cache) = self.cache.lock() else { return (Cached::Missing, 0) };
        let invalidations = cache.invalidations;
        let now = Instant::now();
        let Some(entry) = cache.entries.get_mut(key) else { return (Cached::Missing, invalidations) };
        if entry.expires_at.is_some_and(|expires_at| now >= expires_at) {
            cache.entries.remove(key);
            return (Cached::Missing, invalidations);
        }
        let age = now.saturating_duration_since(entry.at);
        if age >= ttl {
            return (Cached::Missing, invalidations);
        }
        // Using any service is using the session: once a quarter of the life the session had
        // left when validated has passed, a use validates it again, which slides its idle
        // expiry at session-svc. With a short idle timeout the answer would otherwise outlive
        // the session while its owner is busy chatting.
        let slide_due =
            entry.expires_at.is_some_and(|expires_at| age >= expires_at.saturating_duration_since(entry.at) / 4);
        if (age >= ttl / 2 || slide_due) && !entry.refreshing {
            entry.refreshing = true;
            return (Cached::Refresh(entry.caller.clone()), invalidations);
        }
        (Cached::Fresh(entry.caller.clone()), invalidations)
    }

    /// Validates `token` again without holding up the caller: a new answer restarts the TTL
    /// (unless a change dropped answers meanwhile), a refusal drops the cached one at once, and
    /// no answer leaves it to expire.
    fn refresh_in_background(&self, key: String, token: String, invalidations: u64) {
        let (client, internal_token) = (self.client.clone(), self.internal_token.clone());
        let cache = Arc::clone(&self.cache);
        tokio::spawn(async move {
            match ask(client, internal_token, token).await {
                Ok(validated) => remember(&cache, key, validated, invalidations),
                Err(error) => {
                    if let Ok(mut cache) = cache.lock() {
                        if matches!(error, AuthError::Unauthenticated) {
                            cache.entries.remove(&key);
                        } else if let Some(entry) = cache.entries.get_mut(&key) {
                            entry.refreshing = false;
                        }
                    }
                }
            }
        });
    }

    fn forget_user(&self, user_id: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.invalidations += 1;
            cache.entries.retain(|_, entry| entry.caller.user_id.as_str() != user_id);
        }
    }

    fn forget_all(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.invalidations += 1;
            cache.entries.clear();
        }
    }

    /// Without live changes, answers are fresh for the short TTL again: those older than it are
    /// asked for anew.
    fn set_changes_live(&self, live: bool) {
        self.changes_live.store(live, Ordering::Release);
    }

    /// Follows session-svc's change stream until `shutdown`, reconnecting with
    /// [`crate::feed::follow`]'s back-off. A user's cached answers go on each end or rename of their
    /// session, and all of them on every (re)connection since missed changes are not replayed.
    /// Answers are kept for [`LIVE_CACHE_TTL`] from session-svc's first message on a
    /// subscription (which says it is live) until the subscription ends.
    pub async fn follow_session_changes(&self, shutdown: CancellationToken) {
        let subscribe = || {
            let mut client = self.client.clone();
            let request = InternalToken::request(self.internal_token.as_ref(), pb::WatchSessionChangesRequest {});
            async move { client.watch_session_changes(request).await.map(tonic::Response::into_inner) }
        };
        let on = |followed| match followed {
            Followed::Subscribed => self.forget_all(),
            Followed::Live => self.set_changes_live(true),
            Followed::Item(change) => self.apply(change),
            Followed::Lost => self.set_changes_live(false),
        };
        crate::feed::follow("session changes", subscribe, on, shutdown).await;
    }

    fn apply(&self, change: pb::WatchSessionChangesResponse) {
        use pb::watch_session_changes_response::Event;
        let pb::WatchSessionChangesResponse { event_time: _, event } = change;
        match event {
            Some(Event::SessionEnded(pb::SessionEnded { user_id, reason: _ })) => self.forget_user(&user_id),
            Some(Event::DisplayNameChanged(pb::DisplayNameChanged { user_id })) => self.forget_user(&user_id),
            Some(Event::Heartbeat(pb::Heartbeat {})) => {}
            // A kind of change this build does not know: whatever it is, nothing cached can be
            // trusted to survive it.
            None => self.forget_all(),
        }
    }
}

/// session-svc's answer for `token`.
async fn ask(
    mut client: SessionInternalServiceClient<Channel>,
    internal_token: Option<InternalToken>,
    token: String,
) -> Result<Validated, AuthError> {
    let request = InternalToken::request(internal_token.as_ref(), pb::ValidateSessionRequest { token });
    let asked_at = (Instant::now(), SystemTime::now());
    let response = client.validate_session(request).await.map_err(|status| match status.code() {
        tonic::Code::Unauthenticated | tonic::Code::InvalidArgument | tonic::Code::NotFound => {
            AuthError::Unauthenticated
        }
        _ => AuthError::Unavailable(status.message().to_owned()),
    })?;
    let pb::ValidateSessionResponse { session, validate_time } = response.into_inner();
    let session = session.ok_or_else(|| AuthError::Unavailable("empty validation answer".to_owned()))?;
    let pb::Session { user_id, display_name, create_time: _, last_access_time: _, expire_time } = session;
    let validate_ms = validate_time.as_ref().map(proto::ms_from_timestamp);
    let expires_at =
        expire_time.map(|expire_time| expiry(asked_at, validate_ms, proto::ms_from_timestamp(&expire_time)));
    // session-svc issued the id: it is not checked again.
    Ok(Validated { caller: Caller { user_id: UserId::issued(user_id), display_name }, expires_at })
}

/// The local instant of session-svc's `expire_ms`: measured from its own `validate_ms` when
/// it sent one (so clock offsets between hosts do not matter), else from this host's clock, and
/// counted from when the question was asked (never later than session-svc answered).
fn expiry((asked_at, asked_at_wall): (Instant, SystemTime), validate_ms: Option<i64>, expire_ms: i64) -> Instant {
    let now_ms = validate_ms.unwrap_or_else(|| {
        asked_at_wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    });
    let left_ms = expire_ms.saturating_sub(now_ms);
    asked_at + Duration::from_millis(u64::try_from(left_ms).unwrap_or(0))
}

fn remember(cache: &Mutex<CallerCache>, key: String, validated: Validated, invalidations: u64) {
    let Ok(mut cache) = cache.lock() else { return };
    if cache.invalidations != invalidations {
        // A change dropped answers while this one was asked for: it may be about this session.
        if let Some(entry) = cache.entries.get_mut(&key) {
            entry.refreshing = false;
        }
        return;
    }
    let now = Instant::now();
    if cache.entries.len() >= CACHE_SWEEP_AT {
        let longest = LIVE_CACHE_TTL;
        cache.entries.retain(|_, entry| {
            now.saturating_duration_since(entry.at) < longest && entry.expires_at.is_none_or(|at| now < at)
        });
    }
    let Validated { caller, expires_at } = validated;
    cache.entries.insert(key, CachedCaller { caller, at: now, expires_at, refreshing: false });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validator(cache_ttl: Duration) -> SessionValidator {
        // Nothing listens there: these tests never reach session-svc.
        let channel = tonic::transport::Endpoint::from_static("http://127.0.0.1:9").connect_lazy();
        SessionValidator::new(channel, cache_ttl)
    }

    fn answer(user_id: &str, expires_at: Option<Instant>) -> Validated {
        Validated {
            caller: Caller { user_id: UserId::issued(user_id.to_owned()), display_name: "n".to_owned() },
            expires_at,
        }
    }

    fn invalidations(validator: &SessionValidator) -> u64 {
        validator.cache.lock().map(|cache| cache.invalidations).unwrap_or_default()
    }

    fn cached_users(validator: &SessionValidator) -> Vec<String> {
        let mut users: Vec<String> = validator
            .cache
            .lock()
            .map(|cache| cache.entries.values().map(|entry| entry.caller.user_id.to_string()).collect())
            .unwrap_or_default();
        users.sort();
        users
    }

    #[tokio::test]
    async fn an_end_drops_every_answer_of_that_user_and_only_those() {
        use pb::watch_session_changes_response::Event;
        let validator = validator(Duration::from_secs(60));
        for (key, user) in [("a1", "alice"), ("a2", "alice"), ("b1", "bob"), ("c1", "carol")] {
            remember(&validator.cache, key.to_owned(), answer(user, None), invalidations(&validator));
        }
        let change = |event| pb::WatchSessionChangesResponse { event_time: None, event: Some(event) };
        validator.apply(change(Event::Heartbeat(pb::Heartbeat {})));
        assert_eq!(cached_users(&validator).len(), 4);
        let ended = pb::SessionEnded { user_id: "alice".to_owned(), reason: pb::SessionEndReason::Revoked.into() };
        validator.apply(change(Event::SessionEnded(ended)));
        assert_eq!(cached_users(&validator), ["bob", "carol"]);
        validator.apply(change(Event::DisplayNameChanged(pb::DisplayNameChanged { user_id: "bob".to_owned() })));
        assert_eq!(cached_users(&validator), ["carol"]);
        // A change this build cannot read drops everything rather than guess.
        validator.apply(pb::WatchSessionChangesResponse { event_time: None, event: None });
        assert!(cached_users(&validator).is_empty());
    }

    #[tokio::test]
    async fn an_answer_asked_for_before_an_end_is_not_kept() {
        let validator = validator(Duration::from_secs(60));
        let asked_at = invalidations(&validator);
        // The end arrives while the ValidateSession call is in flight.
        validator.forget_user("alice");
        remember(&validator.cache, "a1".to_owned(), answer("alice", None), asked_at);
        assert!(cached_users(&validator).is_empty());
        remember(&validator.cache, "a1".to_owned(), answer("alice", None), invalidations(&validator));
        assert_eq!(cached_users(&validator), ["alice"]);
    }

    #[tokio::test]
    async fn answers_live_longer_while_following_and_expire_spread() {
        let base = Duration::from_secs(2);
        let validator = validator(base);
        let keys: Vec<String> = (0..200).map(|n| token_hash(&n.to_string())).collect();
        let short: Vec<Duration> = keys.iter().map(|key| validator.ttl_for(key)).collect();
        assert!(short.iter().all(|ttl| *ttl <= base && *ttl >= base.mul_f64(0.75)));
        assert!(short.iter().any(|ttl| *ttl != short[0]), "expiries are spread, not identical");
        validator.set_changes_live(true);
        assert!(keys.iter().all(|key| validator.ttl_for(key) >= LIVE_CACHE_TTL.mul_f64(0.75)));
        validator.set_changes_live(false);
        assert!(keys.iter().all(|key| validator.ttl_for(key) <= base));
        let off = self::validator(Duration::ZERO);
        off.set_changes_live(true);
        assert_eq!(off.ttl_for(&keys[0]), Duration::ZERO);
    }

    #[tokio::test]
    async fn an_answer_is_never_served_past_the_sessions_expiry() {
        let validator = validator(Duration::from_secs(3600));
        validator.set_changes_live(true);
        let now = Instant::now();
        remember(&validator.cache, "gone".to_owned(), answer("alice", Some(now)), 0);
        remember(&validator.cache, "kept".to_owned(), answer("bob", Some(now + Duration::from_secs(3600))), 0);
        assert!(matches!(validator.cached("gone").0, Cached::Missing));
        assert!(matches!(validator.cached("kept").0, Cached::Fresh(_)));
        assert_eq!(cached_users(&validator), ["bob"]);
    }

    #[test]
    fn expiry_is_counted_on_session_svcs_clock() {
        let asked_at = Instant::now();
        // session-svc's clock is a day ahead of ours: only its own difference counts.
        let wall = SystemTime::now();
        let validate_ms = 1_900_000_000_000;
        let at = expiry((asked_at, wall), Some(validate_ms), validate_ms + 60_000);
        assert_eq!(at - asked_at, Duration::from_secs(60));
        // Already expired on session-svc's clock: expired now.
        assert_eq!(expiry((asked_at, wall), Some(validate_ms), validate_ms - 1), asked_at);
        // Without its clock, ours is used.
        let our_ms = i64::try_from(wall.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_millis()).unwrap();
        assert_eq!(expiry((asked_at, wall), None, our_ms + 5_000) - asked_at, Duration::from_secs(5));
    }
}
