//! The heartbeat of a watch stream that is polled by its connection: it fires only after an
//! interval in which nothing was sent, and what is sent only notes the time — the timer is
//! pushed back when it fires early, so that events never touch it.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// See the module.
#[derive(Debug)]
pub struct QuietHeartbeat {
    sleep: Pin<Box<Sleep>>,
    last_sent: Instant,
    interval: Duration,
}

impl QuietHeartbeat {
    /// First due `interval` from now.
    #[must_use]
    pub fn new(interval: Duration) -> Self {
        Self { sleep: Box::pin(tokio::time::sleep(interval)), last_sent: Instant::now(), interval }
    }

    /// Something was sent now: the next heartbeat is due an interval later.
    pub fn sent(&mut self) {
        self.last_sent = Instant::now();
    }

    /// Waits until an interval has passed with nothing sent. Cancel-safe: a wait dropped
    /// part-way (another branch of a `select!` won) leaves the timer where it was.
    pub async fn due(&mut self) {
        loop {
            self.sleep.as_mut().await;
            let due = self.last_sent + self.interval;
            let now = Instant::now();
            if now >= due {
                self.sleep.as_mut().reset(now + self.interval);
                return;
            }
            self.sleep.as_mut().reset(due);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timers never fire early, so every bound below holds however busy the machine is.
    #[tokio::test]
    async fn fires_only_after_an_interval_with_nothing_sent() {
        let interval = Duration::from_millis(200);
        let started = Instant::now();
        let mut heartbeat = QuietHeartbeat::new(interval);
        heartbeat.due().await;
        assert!(started.elapsed() >= interval);

        // Something sent part-way pushes the next one back to an interval after it (without
        // that, the timer set when it last fired would go off first).
        tokio::time::sleep(interval / 2).await;
        heartbeat.sent();
        let sent_at = Instant::now();
        // A wait given up part-way changes nothing.
        tokio::select! {
            biased;
            () = tokio::time::sleep(interval / 4) => {}
            () = heartbeat.due() => panic!("due a quarter interval after something was sent"),
        }
        heartbeat.due().await;
        assert!(sent_at.elapsed() >= interval, "fired {:?} after the send", sent_at.elapsed());
    }
}
