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
    fn refills_over_time() {
        let limiter = KeyedLimiter::new(1, 1000.0);
        assert!(limiter.try_take("a").is_ok());
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.try_take("a").is_ok());
    }
}
