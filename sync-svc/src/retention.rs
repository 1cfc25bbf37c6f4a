//! sync-svc's share of the retention policy: `sync_logs` rows older than the sync-logs period,
//! deleted in batches that queue behind live commits like any other writer.

use std::time::Duration;

use sea_orm::DbErr;
use svc_kit::clock::SharedClock;
use svc_kit::retention::{Pruner, RetentionConfig, cutoff_ms};
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// The retention janitor of sync-svc.
#[derive(Debug)]
pub struct SyncRetention {
    store: Store,
    clock: SharedClock,
    pruner: Pruner,
    sync_logs: Duration,
}

impl SyncRetention {
    pub fn new(store: Store, clock: SharedClock, config: &RetentionConfig, registry: &prometheus::Registry) -> Self {
        Self { store, clock, pruner: Pruner::new(registry, "sync", config.batch), sync_logs: config.sync_logs }
    }

    /// Deletes every log row past its period as of now.
    pub async fn prune(&self) -> Result<(), DbErr> {
        let now = self.clock.now_ms();
        if let Some(before) = cutoff_ms(now, self.sync_logs) {
            self.pruner.prune("sync_logs", |limit| self.store.prune_sync_logs(before, limit)).await?;
        }
        self.pruner.finish_pass(now);
        Ok(())
    }

    /// Prunes every `interval` until `shutdown`.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        svc_kit::retention::run_every(interval, shutdown, || async {
            if let Err(error) = self.prune().await {
                tracing::warn!(%error, "sync retention failed");
            }
        })
        .await;
    }
}
