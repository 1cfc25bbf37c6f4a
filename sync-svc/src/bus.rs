//! The one publish/subscribe boundary room events pass through. Whoever accepts a change
//! publishes it here, already encoded; every stream watching the room subscribes here. The
//! in-process implementation is a tokio broadcast channel per room; a broker (NATS) can take
//! its place to carry events between instances without touching the rest of the service.
//!
//! Memory is bounded by construction: each room's channel keeps at most `capacity` events,
//! shared by all its subscribers, and a subscriber that falls further behind is told how many
//! it missed (it then resynchronises from a fresh snapshot) instead of holding the others up.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use bytes::Bytes;
use tokio::sync::broadcast;

/// Something that happened in a room.
#[derive(Debug, Clone)]
pub enum RoomEvent {
    /// A `WatchRoomResponse`, encoded once for every watcher.
    Message {
        /// The room state version it carries, if it is a state change (watchers skip states
        /// older than what they have).
        version: Option<i64>,
        encoded: Bytes,
    },
    /// The user is no longer a member (left or kicked): their streams end.
    MemberRemoved { user_id: String },
    /// The room closed: every stream ends.
    RoomClosed,
}

/// A subscription to one room's events.
pub type Subscription = broadcast::Receiver<RoomEvent>;

/// Carries room events from publishers to subscribers.
pub trait RoomBus: Send + Sync + fmt::Debug {
    /// Delivers `event` to the room's subscribers (none is fine).
    fn publish(&self, room_id: &str, event: RoomEvent);
    /// Starts receiving the room's events from now on.
    fn subscribe(&self, room_id: &str) -> Subscription;
}

/// Rooms and their channels inside this process.
#[derive(Debug)]
pub struct InProcessBus {
    capacity: usize,
    rooms: Mutex<HashMap<String, broadcast::Sender<RoomEvent>>>,
}

impl InProcessBus {
    /// A bus keeping at most `capacity` undelivered events per room.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), rooms: Mutex::new(HashMap::new()) }
    }

    /// Rooms with a channel (for tests and the gauge).
    #[must_use]
    pub fn room_count(&self) -> usize {
        self.rooms.lock().map(|rooms| rooms.len()).unwrap_or(0)
    }
}

impl RoomBus for InProcessBus {
    fn publish(&self, room_id: &str, event: RoomEvent) {
        let Ok(mut rooms) = self.rooms.lock() else { return };
        // Nobody listening any more: forget the room so that idle rooms cost nothing.
        if let Some(sender) = rooms.get(room_id)
            && sender.send(event).is_err()
        {
            rooms.remove(room_id);
        }
    }

    fn subscribe(&self, room_id: &str) -> Subscription {
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

    fn message(byte: u8) -> RoomEvent {
        RoomEvent::Message { version: None, encoded: Bytes::from(vec![byte]) }
    }

    #[tokio::test]
    async fn delivers_per_room_and_bounds_a_slow_subscriber() {
        let bus = InProcessBus::new(4);
        let mut fast = bus.subscribe("a");
        let mut slow = bus.subscribe("a");
        let mut other = bus.subscribe("b");
        for byte in 0..10 {
            bus.publish("a", message(byte));
            assert!(matches!(fast.recv().await, Ok(RoomEvent::Message { encoded, .. }) if encoded[0] == byte));
        }
        assert!(matches!(slow.recv().await, Err(broadcast::error::RecvError::Lagged(6))));
        assert!(matches!(slow.recv().await, Ok(RoomEvent::Message { encoded, .. }) if encoded[0] == 6));
        assert!(other.try_recv().is_err(), "room b heard nothing");
    }

    #[tokio::test]
    async fn forgets_rooms_nobody_watches() {
        let bus = InProcessBus::new(4);
        drop(bus.subscribe("a"));
        bus.publish("a", message(1));
        assert_eq!(bus.room_count(), 0);
    }
}
