//! How long each service keeps what it no longer needs, and the batched deletion its janitor
//! prunes with. The periods live in one block so that an operator sets the whole policy in one
//! place; each service enforces only its own tables, on its own clock.
//!
//! Deletion goes in batches of `--retention-batch` rows, one short statement each, yielding to
//! the runtime between batches: SQLite has one writer, and a single `DELETE` of a million rows
//! would hold the write lock for as long as it takes, stalling every live request behind it.

use std::future::Future;
use std::time::Duration;

use prometheus::{Gauge, IntCounterVec, Opts, Registry};

use tokio_util::sync::CancellationToken;

use crate::metrics::registered;
use crate::server::parse_duration;

/// The counter every service's janitor adds its pruned rows to.
pub const PRUNED_METRIC: &str = "xiaowo_retention_pruned_total";
/// The clock time (Unix milliseconds) that the last finished retention pass pruned up to.
pub const LAST_PASS_METRIC: &str = "xiaowo_retention_last_pass_timestamp_seconds";

/// The retention periods of every service. A period of `0s` keeps those rows forever.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
#[group(id = "retention")]
pub struct RetentionConfig {
    /// How long a closed room (with its members and bans) is kept after it closed; enforced
    /// by room-svc.
    #[arg(id = "retention-closed-rooms", long = "retention-closed-rooms", env = "XIAOWO_RETENTION_CLOSED_ROOMS", default_value = "30d", value_parser = parse_duration)]
    pub closed_rooms: Duration,
    /// How long rows of room-svc's `audit_logs` are kept.
    #[arg(id = "retention-audit-logs", long = "retention-audit-logs", env = "XIAOWO_RETENTION_AUDIT_LOGS", default_value = "365d", value_parser = parse_duration)]
    pub audit_logs: Duration,
    /// How long rows of sync-svc's `sync_logs` are kept.
    #[arg(id = "retention-sync-logs", long = "retention-sync-logs", env = "XIAOWO_RETENTION_SYNC_LOGS", default_value = "30d", value_parser = parse_duration)]
    pub sync_logs: Duration,
    /// How long the chat of a closed room is kept after the room closed; enforced by chat-svc.
    #[arg(
        id = "retention-chat-of-closed-rooms",
        long = "retention-chat-of-closed-rooms",
        env = "XIAOWO_RETENTION_CHAT_OF_CLOSED_ROOMS",
        default_value = "30d",
        value_parser = parse_duration
    )]
    pub chat_of_closed_rooms: Duration,
    /// How often each service's retention janitor runs.
    #[arg(id = "retention-interval", long = "retention-interval", env = "XIAOWO_RETENTION_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub interval: Duration,
    /// Rows deleted per statement; the write lock is released between batches.
    #[arg(id = "retention-batch", long = "retention-batch", env = "XIAOWO_RETENTION_BATCH", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch: u64,
}

impl RetentionConfig {
    /// A policy that prunes nothing, for embedders and tests that are not about retention.
    #[must_use]
    pub fn keep_everything() -> Self {
        Self {
            closed_rooms: Duration::ZERO,
            audit_logs: Duration::ZERO,
            sync_logs: Duration::ZERO,
            chat_of_closed_rooms: Duration::ZERO,
            interval: Duration::from_secs(600),
            batch: 500,
        }
    }
}

/// The time before which rows kept for `period` are due at `now_ms`; `None` when the period
/// is zero (keep forever). Rows strictly older than the cut-off are pruned, so a row exactly
/// `period` old is still kept.
#[must_use]
pub fn cutoff_ms(now_ms: i64, period: Duration) -> Option<i64> {
    if period.is_zero() {
        return None;
    }
    let period_ms = i64::try_from(period.as_millis()).unwrap_or(i64::MAX);
    Some(now_ms.saturating_sub(period_ms))
}

/// Prunes one service's tables in batches, logging and counting what it deleted.
#[derive(Debug, Clone)]
pub struct Pruner {
    batch: u64,
    pruned: IntCounterVec,
    last_pass: Gauge,
}

impl Pruner {
    /// Registers `xiaowo_retention_pruned_total{service, table}` for `service` in `registry`.
    /// Services sharing a process's registry each register their own series: the service is a
    /// constant label, so the registrations do not collide.
    #[must_use]
    pub fn new(registry: &Registry, service: &str, batch: u64) -> Self {
        let pruned = registered(
            registry,
            IntCounterVec::new(
                Opts::new(PRUNED_METRIC, "Rows deleted by retention, by service and table.")
                    .const_label("service", service),
                &["table"],
            ),
        );
        let last_pass = registered(
            registry,
            Gauge::with_opts(
                Opts::new(LAST_PASS_METRIC, "Clock time (Unix seconds) as of which the last retention pass finished.")
                    .const_label("service", service),
            ),
        );
        Self { batch: batch.max(1), pruned, last_pass }
    }

    /// Rows per delete statement.
    #[must_use]
    pub fn batch(&self) -> u64 {
        self.batch
    }

    /// Counts rows of `table` deleted alongside the rows [`Self::prune`] drives (a room's
    /// members with the room).
    pub fn record(&self, table: &'static str, deleted: u64) {
        if deleted > 0 {
            self.pruned.with_label_values(&[table]).inc_by(deleted);
            tracing::info!(table, deleted, "pruned");
        }
    }

    /// Marks a pass that pruned everything due at `now_ms` as finished, so that operators
    /// (and tests) can tell when the policy was last applied.
    pub fn finish_pass(&self, now_ms: i64) {
        #[expect(clippy::cast_precision_loss, reason = "Unix milliseconds stay below 2^53: exact in an f64")]
        self.last_pass.set(now_ms as f64 / 1000.0);
    }

    /// Calls `delete_batch(limit)` until it deletes fewer than `limit` rows, yielding between
    /// batches so that other writers get the lock; logs and counts the total. Rows deleted
    /// before an error are still counted.
    ///
    /// # Errors
    /// The first error of `delete_batch`.
    pub async fn prune<E, F, Fut>(&self, table: &'static str, mut delete_batch: F) -> Result<u64, E>
    where
        F: FnMut(u64) -> Fut,
        Fut: Future<Output = Result<u64, E>>,
    {
        let mut deleted = 0_u64;
        let result = loop {
            match delete_batch(self.batch).await {
                Ok(count) => {
                    deleted += count;
                    self.pruned.with_label_values(&[table]).inc_by(count);
                    if count < self.batch {
                        break Ok(deleted);
                    }
                    tokio::task::yield_now().await;
                }
                Err(error) => break Err(error),
            }
        };
        if deleted > 0 {
            tracing::info!(table, deleted, "pruned");
        }
        result
    }
}

/// Runs `pass` every `interval` (the first right away) until `shutdown`; for a service's
/// retention worker.
pub async fn run_every<F, Fut>(interval: Duration, shutdown: CancellationToken, mut pass: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = pass() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoff_keeps_rows_exactly_one_period_old() {
        assert_eq!(cutoff_ms(10_000, Duration::from_secs(3)), Some(7_000));
        assert_eq!(cutoff_ms(10_000, Duration::ZERO), None);
    }

    #[tokio::test]
    async fn prune_runs_batches_until_a_short_one_and_counts_them() {
        let registry = Registry::new();
        let pruner = Pruner::new(&registry, "test", 10);
        let mut remaining = 25_u64;
        let deleted = pruner
            .prune("rows", |limit| {
                let count = remaining.min(limit);
                remaining -= count;
                async move { Ok::<_, ()>(count) }
            })
            .await;
        assert_eq!(deleted, Ok(25));
        assert_eq!(remaining, 0);
        assert_eq!(pruner.pruned.with_label_values(&["rows"]).get(), 25);
    }

    #[test]
    fn two_services_register_the_counter_in_one_registry() {
        let registry = Registry::new();
        let room = Pruner::new(&registry, "room", 10);
        let sync = Pruner::new(&registry, "sync", 10);
        room.pruned.with_label_values(&["audit_logs"]).inc_by(2);
        sync.pruned.with_label_values(&["sync_logs"]).inc_by(3);
        let families = registry.gather();
        let family = families.iter().find(|family| family.name() == PRUNED_METRIC);
        assert_eq!(family.map(|family| family.get_metric().len()), Some(2));
    }
}
