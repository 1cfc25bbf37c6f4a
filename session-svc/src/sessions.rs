//! The session rules: token issue, sliding and absolute expiry, renames, logout, revocation,
//! and the janitor that deletes what expired. Every change that makes another service's
//! cached validation wrong (an end before expiry, a rename) is announced on a broadcast
//! channel once committed, for `WatchSessionChanges`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounter, IntGauge};
use rand::RngCore;
use svc_kit::auth::token_hash;
use svc_kit::clock::{SharedClock, millis};
use svc_kit::id::UserId;
use svc_kit::metrics::{Refusal, refusal_counter, registered};
use svc_kit::text::TextRule;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::config::Config;
use crate::store::{NewSession, Store};

/// Display names: 1 to 32 characters, one line.
pub const DISPLAY_NAME: TextRule =
    TextRule { field: "display_name", min_chars: 1, max_chars: 32, allow_newline: false };
/// Most ids one display-name look-up may ask for.
pub const MAX_LOOKUP_IDS: usize = 1000;
/// Largest admin page.
pub const MAX_PAGE_SIZE: u64 = 500;
const DEFAULT_PAGE_SIZE: u64 = 50;
const JANITOR_BATCH: u64 = 500;
/// Changes a watcher may be behind before it loses the oldest and its stream is ended. Ends
/// come one per logout, revocation or rotation, so only a stuck watcher ever gets this far.
pub const CHANGES_BUFFER: usize = 1024;

/// Why a session stopped working before its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The user logged out.
    LoggedOut,
    /// An operator revoked it.
    Revoked,
    /// It took a new token; the old one ended.
    Rotated,
}

/// What changed about a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// A token of the session stopped working.
    Ended(EndReason),
    /// The display name changed.
    Renamed,
}

/// A committed change that makes cached validations of `user_id`'s session wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionChange {
    pub user_id: UserId,
    /// When it committed (Unix milliseconds).
    pub at_ms: i64,
    pub kind: ChangeKind,
}

/// A session as the rest of the system sees it. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user_id: UserId,
    pub display_name: String,
    pub created_at: i64,
    pub last_accessed: i64,
    pub expires_at: i64,
}

/// session-svc's counters and gauges.
#[derive(Debug, Clone)]
pub struct SessionMetrics {
    created: IntCounter,
    auth_failures: IntCounter,
    expired_deleted: IntCounter,
    live: IntGauge,
}

impl SessionMetrics {
    /// Creates and registers the metrics.
    #[must_use]
    pub fn new(registry: &prometheus::Registry) -> Self {
        Self {
            created: registered(registry, IntCounter::new("xiaowo_sessions_created_total", "Sessions created.")),
            auth_failures: refusal_counter(registry, Refusal::AuthFailure, "session"),
            expired_deleted: registered(
                registry,
                IntCounter::new("xiaowo_sessions_expired_deleted_total", "Expired sessions deleted by the janitor."),
            ),
            live: registered(
                registry,
                IntGauge::new(
                    "xiaowo_sessions_live",
                    "Live sessions: counted by each janitor pass, moved by every start and end between.",
                ),
            ),
        }
    }
}

/// The session domain.
#[derive(Debug)]
pub struct Sessions {
    store: Store,
    clock: SharedClock,
    idle_ms: i64,
    absolute_ms: i64,
    metrics: SessionMetrics,
    changes: broadcast::Sender<SessionChange>,
}

/// A freshly created session with its token, which exists nowhere else.
#[derive(Debug)]
pub struct Created {
    pub session: Session,
    pub token: String,
}

impl Sessions {
    #[must_use]
    pub fn new(store: Store, clock: SharedClock, config: &Config, metrics: SessionMetrics) -> Self {
        Self {
            store,
            clock,
            idle_ms: millis(config.idle_timeout),
            absolute_ms: millis(config.absolute_lifetime),
            metrics,
            changes: broadcast::Sender::new(CHANGES_BUFFER),
        }
    }

    /// Changes committed from now on. A receiver more than [`CHANGES_BUFFER`] behind is told
    /// it lagged.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<SessionChange> {
        self.changes.subscribe()
    }

    fn announce(&self, user_id: &UserId, kind: ChangeKind) {
        let change = SessionChange { user_id: user_id.clone(), at_ms: self.clock.now_ms(), kind };
        // Nobody watching is not an error: nobody has anything cached to drop.
        let _ = self.changes.send(change);
    }

    /// The absolute lifetime, for the cookie's `Max-Age`.
    #[must_use]
    pub fn absolute_lifetime(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.absolute_ms).unwrap_or(0))
    }

    /// Starts a session named `display_name`.
    pub async fn create(&self, display_name: &str) -> Result<Created, Error> {
        let display_name = DISPLAY_NAME.check(display_name)?;
        let token = new_token();
        let now = self.clock.now_ms();
        let absolute_expires_at = now.saturating_add(self.absolute_ms);
        let session = Session {
            user_id: UserId::generate(),
            display_name,
            created_at: now,
            last_accessed: now,
            expires_at: now.saturating_add(self.idle_ms).min(absolute_expires_at),
        };
        self.store
            .insert(NewSession { session: session.clone(), token_hash: token_hash(&token), absolute_expires_at })
            .await?;
        self.metrics.created.inc();
        self.metrics.live.inc();
        tracing::info!(user_id = %session.user_id, "session created");
        Ok(Created { session, token })
    }

    /// The live session behind `token`, its expiry slid forward by this use.
    pub async fn authenticate(&self, token: Option<&str>) -> Result<Session, Error> {
        let result = self.authenticate_inner(token).await;
        if matches!(result, Err(Error::Unauthenticated)) {
            self.metrics.auth_failures.inc();
        }
        result
    }

    async fn authenticate_inner(&self, token: Option<&str>) -> Result<Session, Error> {
        let token = token.filter(|token| !token.is_empty()).ok_or(Error::Unauthenticated)?;
        let now = self.clock.now_ms();
        let live = self.store.find_live_by_token(&token_hash(token), now).await?.ok_or(Error::Unauthenticated)?;
        let mut session = live.session;
        // The slide is written at most once per `touch_granularity_ms`: validations are reads
        // otherwise, and the idle expiry is late by no more than that.
        if now.saturating_sub(session.last_accessed) < self.touch_granularity_ms() {
            return Ok(session);
        }
        session.last_accessed = now;
        session.expires_at = now.saturating_add(self.idle_ms).min(live.absolute_expires_at);
        self.store.touch(&session.user_id, now, session.expires_at).await?;
        Ok(session)
    }

    /// How long a use may go unrecorded: a minute, or a sixtieth of the idle timeout when
    /// that is shorter.
    fn touch_granularity_ms(&self) -> i64 {
        (self.idle_ms / 60).min(60_000)
    }

    /// Gives the session behind `token` a new token; the old one stops working at once. The
    /// user, display name and lifetime stay, so memberships and roles elsewhere are kept.
    pub async fn rotate(&self, token: Option<&str>) -> Result<Created, Error> {
        let session = self.authenticate(token).await?;
        let old_hash = token_hash(token.unwrap_or_default());
        let token = new_token();
        if !self.store.replace_token(&session.user_id, &old_hash, &token_hash(&token)).await? {
            // Ended or rotated by a concurrent call: this token is no longer the session's.
            return Err(Error::Unauthenticated);
        }
        self.announce(&session.user_id, ChangeKind::Ended(EndReason::Rotated));
        tracing::info!(user_id = %session.user_id, "session token rotated");
        Ok(Created { session, token })
    }

    /// Renames the session behind `token`.
    pub async fn rename(&self, token: Option<&str>, display_name: &str) -> Result<Session, Error> {
        let display_name = DISPLAY_NAME.check(display_name)?;
        let mut session = self.authenticate(token).await?;
        self.store.rename(&session.user_id, &display_name).await?;
        self.announce(&session.user_id, ChangeKind::Renamed);
        session.display_name = display_name;
        Ok(session)
    }

    /// Logs out: the token stops working.
    pub async fn end(&self, token: Option<&str>) -> Result<(), Error> {
        let session = self.authenticate(token).await?;
        if self.store.delete(&session.user_id).await? {
            self.metrics.live.dec();
        }
        self.announce(&session.user_id, ChangeKind::Ended(EndReason::LoggedOut));
        tracing::info!(user_id = %session.user_id, "session ended");
        Ok(())
    }

    /// Ends `user_id`'s session on an operator's request.
    pub async fn revoke(&self, user_id: &UserId) -> Result<(), Error> {
        if !self.store.delete(user_id).await? {
            return Err(Error::SessionNotFound);
        }
        self.metrics.live.dec();
        self.announce(user_id, ChangeKind::Ended(EndReason::Revoked));
        tracing::info!(%user_id, "session revoked");
        Ok(())
    }

    /// Display names of the live sessions among `user_ids`.
    pub async fn display_names(&self, user_ids: &[String]) -> Result<HashMap<String, String>, Error> {
        if user_ids.len() > MAX_LOOKUP_IDS {
            return Err(svc_kit::status::Violation::new("user_ids", format!("at most {MAX_LOOKUP_IDS} ids")).into());
        }
        Ok(self.store.display_names(user_ids, self.clock.now_ms()).await?)
    }

    /// A page of live sessions, newest first, and the token of the next page.
    pub async fn list(&self, page_size: i32, page_token: &str) -> Result<(Vec<Session>, Option<String>), Error> {
        let page_size = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            size if size < 0 || u64::try_from(size).unwrap_or(u64::MAX) > MAX_PAGE_SIZE => {
                return Err(
                    svc_kit::status::Violation::new("page_size", format!("must be 0 to {MAX_PAGE_SIZE}")).into()
                );
            }
            size => u64::try_from(size).unwrap_or(DEFAULT_PAGE_SIZE),
        };
        let after = if page_token.is_empty() { None } else { Some(decode_page_token(page_token)?) };
        let mut sessions = self.store.page(self.clock.now_ms(), after, page_size + 1).await?;
        let next = if sessions.len() as u64 > page_size {
            sessions.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
            sessions.last().map(|last| format!("{}.{}", last.created_at, last.user_id))
        } else {
            None
        };
        Ok((sessions, next))
    }

    /// Sets `xiaowo_sessions_live` from the database, as of now.
    ///
    /// # Errors
    /// When the count cannot be read.
    pub async fn count_live(&self) -> Result<(), sea_orm::DbErr> {
        let live = self.store.count_live(self.clock.now_ms()).await?;
        self.metrics.live.set(i64::try_from(live).unwrap_or(i64::MAX));
        Ok(())
    }

    /// Deletes expired sessions in batches; how many.
    pub async fn purge_expired(&self) -> Result<u64, Error> {
        let now = self.clock.now_ms();
        let mut total = 0;
        loop {
            let deleted = self.store.delete_expired(now, JANITOR_BATCH).await?;
            total += deleted;
            if deleted < JANITOR_BATCH {
                break;
            }
            // Let live traffic at the database between batches.
            tokio::task::yield_now().await;
        }
        self.metrics.expired_deleted.inc_by(total);
        self.count_live().await?;
        Ok(total)
    }

    /// Runs [`Self::purge_expired`] every `interval` until `shutdown`.
    pub async fn run_janitor(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        // The first pass is one interval after start: `build` counted the live sessions.
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match self.purge_expired().await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "expired sessions deleted"),
                Err(error) => tracing::warn!(%error, "session janitor failed"),
            }
        }
    }
}

/// 256 random bits, hex-encoded: the secret a session is known by.
fn new_token() -> String {
    let mut secret = [0u8; 32];
    rand::rng().fill_bytes(&mut secret);
    hex::encode(secret)
}

pub(crate) fn decode_page_token(page_token: &str) -> Result<(i64, String), Error> {
    let invalid = || Error::from(svc_kit::status::Violation::new("page_token", "not a token from a previous page"));
    let (created_at, user_id) = page_token.split_once('.').ok_or_else(invalid)?;
    let created_at = created_at.parse().map_err(|_| invalid())?;
    let user_id = uuid::Uuid::parse_str(user_id).map_err(|_| invalid())?;
    Ok((created_at, user_id.to_string()))
}
