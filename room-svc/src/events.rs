//! Room events: every membership or room change, published after its transaction commits,
//! for sync-svc and chat-svc to end streams of kicked members and closed rooms and to drop
//! cached access.
//!
//! [`EventBus`] is the one publish/subscribe boundary: [`LocalBus`] carries events inside the
//! process (a bounded broadcast ring per subscriber); a broker-backed bus can replace it when
//! several room-svc instances must share events, without touching the callers.

use std::pin::Pin;
use std::time::Duration;

use svc_kit::feed::{Delivery, FeedEnded};
use svc_kit::id::{RoomId, UserId};
use tokio::sync::broadcast;
use tokio_stream::wrappers::{BroadcastStream, ReceiverStream, errors::BroadcastStreamRecvError};
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::model::{CloseReason, ControlMode, RemovalReason, Role};

/// A change to one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEvent {
    pub room_id: RoomId,
    /// When the change committed (Unix milliseconds).
    pub at_ms: i64,
    pub change: Change,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    MemberJoined { user_id: UserId },
    MemberRemoved { user_id: UserId, reason: RemovalReason },
    RoleChanged { user_id: UserId, role: Role },
    RoomUpdated { control_mode: ControlMode },
    RoomClosed { reason: CloseReason },
}

/// A subscriber fell so far behind that events were dropped for it; it must reconnect and
/// re-check whatever it cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("fell behind by {missed} room events")]
pub struct FellBehind {
    pub missed: u64,
}

/// Events from the moment of subscription on; ends after the first [`FellBehind`].
pub type EventStream = Pin<Box<dyn Stream<Item = Result<RoomEvent, FellBehind>> + Send>>;

/// Carries room events from the code that commits changes to whoever watches them.
pub trait EventBus: Send + Sync + std::fmt::Debug {
    /// Sends `event` to every current subscriber; never blocks, never fails the change.
    fn publish(&self, event: RoomEvent);
    /// Starts receiving events published from now on.
    fn subscribe(&self) -> EventStream;
}

/// The in-process bus: a broadcast ring of `capacity` events. A subscriber more than
/// `capacity` events behind loses the oldest and is told so.
#[derive(Debug)]
pub struct LocalBus {
    sender: broadcast::Sender<RoomEvent>,
}

impl LocalBus {
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self { sender: broadcast::Sender::new(capacity.max(1)) }
    }
}

impl EventBus for LocalBus {
    fn publish(&self, event: RoomEvent) {
        // No subscriber is not an error: nobody needs to hear about it.
        let _ = self.sender.send(event);
    }

    fn subscribe(&self) -> EventStream {
        let stream = BroadcastStream::new(self.sender.subscribe())
            .map(|item| item.map_err(|BroadcastStreamRecvError::Lagged(missed)| FellBehind { missed }));
        Box::pin(stream)
    }
}

/// Subscribes to `bus` now and forwards its events as [`svc_kit::feed::watch`] does: a
/// heartbeat first and every `heartbeat`, through a buffer of `buffer` items, ending with
/// [`FeedEnded::FellBehind`] for a watcher that stops reading.
pub fn watch(
    bus: &dyn EventBus,
    heartbeat: Duration,
    buffer: usize,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<Delivery<RoomEvent>, FeedEnded>> {
    let events = bus.subscribe().map(|event| event.map_err(|FellBehind { missed }| missed));
    svc_kit::feed::watch(events, heartbeat, buffer, shutdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: i64) -> RoomEvent {
        let user_id = UserId::issued(n.to_string());
        RoomEvent { room_id: RoomId::issued("r".to_owned()), at_ms: n, change: Change::MemberJoined { user_id } }
    }

    #[tokio::test]
    async fn heartbeat_first_then_events_in_order() {
        let bus = LocalBus::new(16);
        let mut stream = watch(&bus, Duration::from_secs(3600), 4, CancellationToken::new());
        assert_eq!(stream.next().await, Some(Ok(Delivery::Heartbeat)));
        bus.publish(event(1));
        bus.publish(event(2));
        assert_eq!(stream.next().await, Some(Ok(Delivery::Item(event(1)))));
        assert_eq!(stream.next().await, Some(Ok(Delivery::Item(event(2)))));
    }

    #[tokio::test]
    async fn a_watcher_that_stops_reading_is_ended_not_buffered_forever() {
        let bus = LocalBus::new(4);
        let mut stream = watch(&bus, Duration::from_secs(3600), 2, CancellationToken::new());
        assert_eq!(stream.next().await, Some(Ok(Delivery::Heartbeat)));
        for n in 0..100 {
            bus.publish(event(n));
            tokio::task::yield_now().await;
        }
        let mut delivered = 0;
        let ended = loop {
            match stream.next().await {
                Some(Ok(Delivery::Item(_))) => delivered += 1,
                Some(Ok(Delivery::Heartbeat)) => {}
                Some(Err(ended)) => break ended,
                None => panic!("stream closed without saying why"),
            }
        };
        assert!(matches!(ended, FeedEnded::FellBehind { missed } if missed > 0));
        assert!(delivered < 100);
        assert_eq!(stream.next().await, None);
    }
}
