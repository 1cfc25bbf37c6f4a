//! Wall-clock time as milliseconds since the Unix epoch, behind a trait so that tests can
//! move time (session expiry, idle rooms) without sleeping.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of the current time in Unix milliseconds.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since 1970-01-01T00:00:00Z.
    fn now_ms(&self) -> i64;
}

/// The clock every service shares.
pub type SharedClock = Arc<dyn Clock>;

/// How long a cached answer stays fresh: `base` (zero turns caching off), or at least
/// `live_ttl` while a change stream keeps the cache current, shortened by up to a quarter
/// according to `seed` so that answers cached together do not all expire in the same instant.
pub(crate) fn cache_ttl(base: Duration, live: bool, live_ttl: Duration, seed: u64) -> Duration {
    if base.is_zero() {
        return base;
    }
    let ttl = if live { base.max(live_ttl) } else { base };
    let spread = u16::try_from(seed % 1024).map_or(0.0, f64::from) / 4096.0;
    ttl.mul_f64(1.0 - spread)
}

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
    }
}

/// The system clock as a [`SharedClock`].
#[must_use]
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

/// A clock that only moves when told to; for tests.
#[derive(Debug)]
pub struct ManualClock {
    now_ms: AtomicI64,
}

impl ManualClock {
    /// A clock standing at `start_ms`.
    #[must_use]
    pub fn new(start_ms: i64) -> Arc<Self> {
        Arc::new(Self { now_ms: AtomicI64::new(start_ms) })
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let by_ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.now_ms.fetch_add(by_ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now_ms.load(Ordering::SeqCst)
    }
}

/// A duration as whole milliseconds, saturating.
#[must_use]
pub fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}
