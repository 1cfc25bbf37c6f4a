//! Keyed token buckets for flood limits (session creation per client address, chat messages
//! per member, wrong room passwords per room and caller).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket per key: `burst` tokens, refilled at `per_second`.
#[derive(Debug)]
pub struct KeyedLimiter {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Keys above which full (idle) buckets are forgotten before adding another.
const SWEEP_AT: usize = 50_000;

impl KeyedLimiter {
    /// A limiter allowing `burst` at once and `per_second` sustained for each key.
    #[must_use]
    pub fn new(burst: u32, per_second: f64) -> Self {
        Self { burst: f64::from(burst.max(1)), per_second: per_second.max(0.0), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `key`.
    ///
    /// # Errors
    /// How long until a token is available, when none is.
    pub fn try_take(&self, key: &str) -> Result<(), Duration> {
        self.update(key, true)
    }

    /// Whether `key` has a token, without taking it.
    #[must_use]
    pub fn has_token(&self, key: &str) -> bool {
        self.update(key, false).is_ok()
    }

    /// How long until `key` has a token; `None` when it has one now.
    #[must_use]
    pub fn wait(&self, key: &str) -> Option<Duration> {
        self.update(key, false).err()
    }

    fn update(&self, key: &str, take: bool) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() >= SWEEP_AT && !buckets.contains_key(key) {
            let (burst, rate) = (self.burst, self.per_second);
            buckets.retain(|_, bucket| refill(*bucket, now, burst, rate).tokens < burst);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket { tokens: self.burst, updated: now });
        *bucket = refill(*bucket, now, self.burst, self.per_second);
        if bucket.tokens >= 1.0 {
            if take {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else if self.per_second > 0.0 {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.per_second))
        } else {
            Err(Duration::MAX)
        }
    }
}

/// Takes a token for each `(limiter, key)` when every one has a token; otherwise takes none
/// and says how long until all of them have one, so that being refused by one limit does not
/// use up another.
///
/// # Errors
/// The longest wait among the limits without a token.
pub fn try_take_all(limits: &[(&KeyedLimiter, &str)]) -> Result<(), Duration> {
    if let Some(wait) = limits.iter().filter_map(|(limiter, key)| limiter.wait(key)).max() {
        return Err(wait);
    }
    for (limiter, key) in limits {
        // Between the check and here another call may have taken the last token; letting this
        // one through as well is one call over the limit, never a wrong refusal.
        let _ = limiter.try_take(key);
    }
    Ok(())
}

fn refill(bucket: Bucket, now: Instant, burst: f64, per_second: f64) -> Bucket {
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    Bucket { tokens: (bucket.tokens + elapsed * per_second).min(burst), updated: now }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refused_per_key() {
        let limiter = KeyedLimiter::new(3, 0.0);
        for _ in 0..3 {
            assert!(limiter.try_take("a").is_ok());
        }
        assert!(limiter.try_take("a").is_err());
        assert!(!limiter.has_token("a"));
        assert!(limiter.try_take("b").is_ok());
    }

    #[test]
    fn all_or_nothing_across_limiters() {
        let per_caller = KeyedLimiter::new(2, 0.0);
        let per_address = KeyedLimiter::new(1, 0.0);
        assert!(try_take_all(&[(&per_caller, "ana"), (&per_address, "10.0.0.1")]).is_ok());
        // The address is spent: refused, and the caller's remaining token is not taken.
        assert!(try_take_all(&[(&per_caller, "ana"), (&per_address, "10.0.0.1")]).is_err());
        assert!(try_take_all(&[(&per_caller, "ana"), (&per_address, "10.0.0.2")]).is_ok());
        assert!(per_caller.wait("ana").is_some());
    }

    #[test]
    fn refills_over_time() {
        let limiter = KeyedLimiter::new(1, 1000.0);
        assert!(limiter.try_take("a").is_ok());
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.try_take("a").is_ok());
    }
}
