//! chat-svc's share of the retention policy: the chat of rooms closed longer than the
//! chat-of-closed-rooms period. room-svc's `RoomClosed` events (followed in [`crate::access`])
//! arrive here with their time and are recorded in `closed_rooms`; each pass then deletes the
//! messages of due rooms in batches, and after them their read cursors, mutes and sequence
//! counters. The moderation log stays: it is the record of what moderators did.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sea_orm::DbErr;
use svc_kit::clock::SharedClock;
use svc_kit::retention::{Pruner, RetentionConfig, cutoff_ms};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// A room that closed and when (Unix milliseconds; `None` when the event had no time, then
/// the janitor's clock stands in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedRoom {
    pub room_id: svc_kit::id::RoomId,
    pub closed_at: Option<i64>,
}

/// The retention janitor of chat-svc.
#[derive(Debug)]
pub struct ChatRetention {
    store: Store,
    clock: SharedClock,
    pruner: Pruner,
    period: Duration,
    closed: mpsc::UnboundedReceiver<ClosedRoom>,
}

impl ChatRetention {
    /// The janitor, and the sender the room-event follower reports closings to.
    pub fn new(
        store: Store,
        clock: SharedClock,
        config: &RetentionConfig,
        registry: &prometheus::Registry,
    ) -> (Self, mpsc::UnboundedSender<ClosedRoom>) {
        let (sender, closed) = mpsc::unbounded_channel();
        let pruner = Pruner::new(registry, "chat", config.batch);
        (Self { store, clock, pruner, period: config.chat_of_closed_rooms, closed }, sender)
    }

    async fn record(&self, room: ClosedRoom) {
        let closed_at = room.closed_at.unwrap_or_else(|| self.clock.now_ms());
        if let Err(error) = self.store.record_closed_room(&room.room_id, closed_at).await {
            tracing::warn!(room_id = %room.room_id, %error, "cannot record a closed room");
        }
    }

    /// Records the closings heard so far, then deletes every room's chat past its period.
    async fn prune(&mut self) -> Result<(), DbErr> {
        while let Ok(room) = self.closed.try_recv() {
            self.record(room).await;
        }
        let now = self.clock.now_ms();
        if let Some(before) = cutoff_ms(now, self.period) {
            let store = &self.store;
            self.pruner.prune("messages", |limit| store.prune_messages_of_closed_rooms(before, limit)).await?;
            let (messages, cursors, mutes) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
            let rooms = self
                .pruner
                .prune("closed_rooms", |limit| {
                    let batch = store.prune_closed_rooms(before, limit);
                    let (messages, cursors, mutes) = (&messages, &cursors, &mutes);
                    async move {
                        let pruned = batch.await?;
                        messages.fetch_add(pruned.messages, Ordering::Relaxed);
                        cursors.fetch_add(pruned.cursors, Ordering::Relaxed);
                        mutes.fetch_add(pruned.mutes, Ordering::Relaxed);
                        Ok::<_, DbErr>(pruned.rooms)
                    }
                })
                .await;
            self.pruner.record("messages", messages.into_inner());
            self.pruner.record("member_cursors", cursors.into_inner());
            self.pruner.record("mutes", mutes.into_inner());
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
                        tracing::warn!(%error, "chat retention failed");
                    }
                }
            }
        }
    }
}
