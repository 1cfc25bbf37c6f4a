//! sync-svc's share of the retention policy: `sync_logs` rows older than the sync-logs period,
//! and the timeline and queue of rooms closed longer than the closed-rooms period. Closings
//! come from room-svc's event stream (see [`crate::access`]) and are recorded in
//! `closed_rooms` with this service's clock. Deletions go in batches that queue behind live
//! commits like any other writer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::DbErr;
use svc_kit::clock::SharedClock;
use svc_kit::id::RoomId;
use svc_kit::retention::{Pruner, RetentionConfig, cutoff_ms};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// A room that closed and when (Unix milliseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedRoom {
    pub room_id: RoomId,
    pub closed_at: i64,
}

/// The retention janitor of sync-svc.
#[derive(Debug)]
pub struct SyncRetention {
    store: Store,
    clock: SharedClock,
    pruner: Pruner,
    sync_logs: Duration,
    closed_rooms: Duration,
    closed: mpsc::UnboundedReceiver<ClosedRoom>,
}

impl SyncRetention {
    /// The janitor, and the sender the room-event follower reports closings to.
    pub fn new(
        store: Store,
        clock: SharedClock,
        config: &RetentionConfig,
        registry: &prometheus::Registry,
    ) -> (Self, mpsc::UnboundedSender<ClosedRoom>) {
        let (sender, closed) = mpsc::unbounded_channel();
        let janitor = Self {
            store,
            clock,
            pruner: Pruner::new(registry, "sync", config.batch),
            sync_logs: config.sync_logs,
            closed_rooms: config.closed_rooms,
            closed,
        };
        (janitor, sender)
    }

    async fn record(&self, room: ClosedRoom) {
        if let Err(error) = self.store.record_closed_room(&room.room_id, room.closed_at).await {
            tracing::warn!(room_id = %room.room_id, %error, "cannot record a closed room");
        }
    }

    /// Records the closings heard so far, then deletes everything past its period as of now.
    async fn prune(&mut self) -> Result<(), DbErr> {
        while let Ok(room) = self.closed.try_recv() {
            self.record(room).await;
        }
        let now = self.clock.now_ms();
        if let Some(before) = cutoff_ms(now, self.sync_logs) {
            self.pruner.prune("sync_logs", |limit| self.store.prune_sync_logs(before, limit)).await?;
        }
        if let Some(before) = cutoff_ms(now, self.closed_rooms) {
            let (states, queue) = (AtomicU64::new(0), AtomicU64::new(0));
            let store = &self.store;
            let rooms = self
                .pruner
                .prune("closed_rooms", |limit| {
                    let batch = store.prune_closed_rooms(before, limit);
                    let (states, queue) = (&states, &queue);
                    async move {
                        let pruned = batch.await?;
                        states.fetch_add(pruned.room_states, Ordering::Relaxed);
                        queue.fetch_add(pruned.queue_items, Ordering::Relaxed);
                        Ok::<_, DbErr>(pruned.rooms)
                    }
                })
                .await;
            self.pruner.record("room_states", states.into_inner());
            self.pruner.record("queue_items", queue.into_inner());
            rooms?;
        }
        self.pruner.finish_pass(now);
        Ok(())
    }

    /// Records closings as they come and prunes every `interval`, until `shutdown`.
    pub async fn run(mut self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                Some(room) = self.closed.recv() => self.record(room).await,
                _ = ticker.tick() => {
                    let result = tokio::select! {
                        () = shutdown.cancelled() => return,
                        result = self.prune() => result,
                    };
                    if let Err(error) = result {
                        tracing::warn!(%error, "sync retention failed");
                    }
                }
            }
        }
    }
}
