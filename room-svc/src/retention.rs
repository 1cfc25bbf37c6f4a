//! room-svc's share of the retention policy: closed rooms (with their members and bans) once
//! they have been closed for the closed-rooms period, and audit rows older than the audit
//! period. Each batch is its own short transaction, so requests interleave with a long prune.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::DbErr;
use svc_kit::clock::SharedClock;
use svc_kit::retention::{Pruner, RetentionConfig, cutoff_ms};

use crate::store::Store;

/// The retention janitor of room-svc.
#[derive(Debug)]
pub struct RoomRetention {
    store: Store,
    clock: SharedClock,
    pruner: Pruner,
    closed_rooms: Duration,
    audit_logs: Duration,
}

impl RoomRetention {
    pub fn new(store: Store, clock: SharedClock, config: &RetentionConfig, registry: &prometheus::Registry) -> Self {
        Self {
            store,
            clock,
            pruner: Pruner::new(registry, "room", config.batch),
            closed_rooms: config.closed_rooms,
            audit_logs: config.audit_logs,
        }
    }

    /// Deletes everything past its period as of now.
    pub async fn prune(&self) -> Result<(), DbErr> {
        let now = self.clock.now_ms();
        if let Some(before) = cutoff_ms(now, self.closed_rooms) {
            let (members, bans) = (AtomicU64::new(0), AtomicU64::new(0));
            let rooms = self
                .pruner
                .prune("rooms", |limit| {
                    let batch = self.store.prune_closed_rooms(before, limit);
                    let (members, bans) = (&members, &bans);
                    async move {
                        let pruned = batch.await?;
                        members.fetch_add(pruned.members, Ordering::Relaxed);
                        bans.fetch_add(pruned.bans, Ordering::Relaxed);
                        Ok::<_, DbErr>(pruned.rooms)
                    }
                })
                .await;
            // Members and bans go with their rooms, also when a later batch failed.
            self.pruner.record("room_members", members.into_inner());
            self.pruner.record("room_bans", bans.into_inner());
            rooms?;
        }
        if let Some(before) = cutoff_ms(now, self.audit_logs) {
            self.pruner.prune("audit_logs", |limit| self.store.prune_audit_logs(before, limit)).await?;
        }
        self.pruner.finish_pass(now);
        Ok(())
    }

    /// Prunes every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: tokio_util::sync::CancellationToken) {
        svc_kit::retention::run_every(interval, shutdown, || async {
            if let Err(error) = self.prune().await {
                tracing::warn!(%error, "room retention failed");
            }
        })
        .await;
    }
}
