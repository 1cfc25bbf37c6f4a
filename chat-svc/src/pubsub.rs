//! The one publish/subscribe boundary that live delivery passes through. Today it is an
//! in-process broadcast per room; running several instances means putting a broker (NATS)
//! behind the same trait, with nothing else changing: sequence numbers already come from the
//! database and watchers already catch up from it whenever they miss something.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::model::RoomEvent;

/// Publishes room events and hands out subscriptions to them.
pub trait PubSub: Send + Sync + std::fmt::Debug {
    /// Sends `event` to every current subscriber of `room_id`; never blocks.
    fn publish(&self, room_id: &str, event: RoomEvent);

    /// Receives the room's events from now on. The receiver holds a bounded ring: a
    /// subscriber that falls further behind gets `Lagged` and must catch up from the database.
    fn subscribe(&self, room_id: &str) -> broadcast::Receiver<Arc<RoomEvent>>;
}

/// One bounded broadcast channel per room with subscribers.
#[derive(Debug)]
pub struct InProcess {
    capacity: usize,
    rooms: Mutex<HashMap<String, broadcast::Sender<Arc<RoomEvent>>>>,
}

impl InProcess {
    /// Each room's channel keeps the last `capacity` events for subscribers that are behind.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), rooms: Mutex::new(HashMap::new()) }
    }
}

impl PubSub for InProcess {
    fn publish(&self, room_id: &str, event: RoomEvent) {
        let Ok(mut rooms) = self.rooms.lock() else {
            return;
        };
        if let Some(sender) = rooms.get(room_id) {
            // An error means nobody listens any more: forget the room's channel.
            if sender.send(Arc::new(event)).is_err() {
                rooms.remove(room_id);
            }
        }
    }

    fn subscribe(&self, room_id: &str) -> broadcast::Receiver<Arc<RoomEvent>> {
        let mut rooms = match self.rooms.lock() {
            Ok(rooms) => rooms,
            Err(poisoned) => poisoned.into_inner(),
        };
        if rooms.len() > 1024 {
            rooms.retain(|_, sender| sender.receiver_count() > 0);
        }
        rooms.entry(room_id.to_owned()).or_insert_with(|| broadcast::channel(self.capacity).0).subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_only_to_the_room_and_signals_lag() {
        let pubsub = InProcess::new(2);
        let mut a = pubsub.subscribe("a");
        let mut b = pubsub.subscribe("b");
        pubsub.publish("a", RoomEvent::RoomClosed);
        assert_eq!(*a.recv().await.unwrap(), RoomEvent::RoomClosed);
        assert!(b.try_recv().is_err());
        for _ in 0..3 {
            pubsub.publish("a", RoomEvent::RoomClosed);
        }
        assert!(matches!(a.recv().await, Err(broadcast::error::RecvError::Lagged(1))));
    }
}
