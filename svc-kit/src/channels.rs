//! One bounded broadcast channel per room inside a process: the in-process half of the room
//! buses of sync-svc and chat-svc, which decide what their events are and what crosses
//! instances.
//!
//! Memory is bounded by construction: each room's channel keeps at most `capacity` events,
//! shared by all its subscribers, and a subscriber that falls further behind is told how many
//! it missed (it then catches up from the database) instead of holding the others up. A room
//! nobody listens to any more is forgotten at its next event.
//!
//! Heartbeats and the notice that the service is stopping go through the same channels
//! ([`RoomChannels::publish_where_quiet`], [`RoomChannels::publish_everywhere`]): one timer
//! for all of a room's streams rather than a timer and a shutdown wait in each, so that an idle
//! stream is polled only when its room has something.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::id::RoomId;

/// See the module.
#[derive(Debug)]
pub struct RoomChannels<E> {
    capacity: usize,
    rooms: Mutex<HashMap<RoomId, Channel<E>>>,
}

/// One room's channel, and when it last carried something.
#[derive(Debug)]
struct Channel<E> {
    sender: broadcast::Sender<E>,
    last_sent: Instant,
}

impl<E: Clone> RoomChannels<E> {
    /// Each room's channel keeps the last `capacity` events for subscribers that are behind.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self { capacity: capacity.max(1), rooms: Mutex::new(HashMap::new()) }
    }

    /// Sends `event` to the room's current subscribers (none is fine); never blocks. Every
    /// subscriber passes it on to its client, so it puts the room's next heartbeat back.
    pub fn publish(&self, room_id: &RoomId, event: E) {
        self.send(room_id, event, true);
    }

    /// Sends an event that only some subscribers pass on (one member's news): it does not put
    /// the room's next heartbeat back, since the others' clients hear nothing of it.
    pub fn publish_to_some(&self, room_id: &RoomId, event: E) {
        self.send(room_id, event, false);
    }

    fn send(&self, room_id: &RoomId, event: E, heard_by_all: bool) {
        let Ok(mut rooms) = self.rooms.lock() else { return };
        if let Some(channel) = rooms.get_mut(room_id) {
            if heard_by_all {
                channel.last_sent = Instant::now();
            }
            // Nobody listening any more: forget the room so that idle rooms cost nothing.
            if channel.sender.send(event).is_err() {
                rooms.remove(room_id);
            }
        }
    }

    /// Receives the room's events from now on.
    pub fn subscribe(&self, room_id: &RoomId) -> broadcast::Receiver<E> {
        let mut rooms = match self.rooms.lock() {
            Ok(rooms) => rooms,
            Err(poisoned) => poisoned.into_inner(),
        };
        if rooms.len() > 1024 {
            rooms.retain(|_, channel| channel.sender.receiver_count() > 0);
        }
        let channel = rooms
            .entry(room_id.clone())
            .or_insert_with(|| Channel { sender: broadcast::channel(self.capacity).0, last_sent: Instant::now() });
        channel.sender.subscribe()
    }

    /// Sends `event` to the subscribers of every room that has carried nothing for
    /// `quiet_for` (a heartbeat).
    pub fn publish_where_quiet(&self, quiet_for: Duration, event: &E) {
        let now = Instant::now();
        self.publish_to(event, |channel| now.duration_since(channel.last_sent) >= quiet_for);
    }

    /// Sends `event` to the subscribers of every room.
    pub fn publish_everywhere(&self, event: &E) {
        self.publish_to(event, |_| true);
    }

    fn publish_to(&self, event: &E, mut pick: impl FnMut(&Channel<E>) -> bool) {
        let Ok(mut rooms) = self.rooms.lock() else { return };
        let now = Instant::now();
        rooms.retain(|_, channel| {
            if !pick(channel) {
                return true;
            }
            channel.last_sent = now;
            channel.sender.send(event.clone()).is_ok()
        });
    }

    /// Rooms with subscribers here.
    #[must_use]
    pub fn watched_rooms(&self) -> Vec<RoomId> {
        let Ok(rooms) = self.rooms.lock() else { return Vec::new() };
        rooms
            .iter()
            .filter(|(_, channel)| channel.sender.receiver_count() > 0)
            .map(|(room_id, _)| room_id.clone())
            .collect()
    }

    /// Rooms with a channel (for tests and gauges).
    #[must_use]
    pub fn room_count(&self) -> usize {
        self.rooms.lock().map(|rooms| rooms.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomId {
        RoomId::issued(name.to_owned())
    }

    #[tokio::test]
    async fn delivers_per_room_and_bounds_a_slow_subscriber() {
        let channels = RoomChannels::new(4);
        let mut fast = channels.subscribe(&room("a"));
        let mut slow = channels.subscribe(&room("a"));
        let mut other = channels.subscribe(&room("b"));
        for byte in 0..10_u8 {
            channels.publish(&room("a"), byte);
            assert_eq!(fast.recv().await.ok(), Some(byte));
        }
        assert!(matches!(slow.recv().await, Err(broadcast::error::RecvError::Lagged(6))));
        assert_eq!(slow.recv().await.ok(), Some(6));
        assert!(other.try_recv().is_err(), "room b heard nothing");
    }

    #[tokio::test]
    async fn forgets_rooms_nobody_watches() {
        let channels = RoomChannels::new(4);
        drop(channels.subscribe(&room("a")));
        channels.publish(&room("a"), 1_u8);
        assert_eq!(channels.room_count(), 0);
    }

    #[tokio::test]
    async fn heartbeats_and_the_shutdown_notice_reach_every_watched_room_and_forget_unwatched_ones() {
        let channels = RoomChannels::new(4);
        let mut a = channels.subscribe(&room("a"));
        let mut b = channels.subscribe(&room("b"));
        drop(channels.subscribe(&room("c")));
        channels.publish(&room("a"), 1_u8);
        assert_eq!(a.recv().await.ok(), Some(1));

        // Nothing has been quiet for an hour: no heartbeat.
        channels.publish_where_quiet(Duration::from_secs(3600), &2);
        assert!(a.try_recv().is_err() && b.try_recv().is_err());
        // Quiet for no time at all: every room with a subscriber gets one; c, unwatched, is forgotten.
        channels.publish_where_quiet(Duration::ZERO, &3);
        assert_eq!((a.try_recv().ok(), b.try_recv().ok()), (Some(3), Some(3)));
        assert_eq!(channels.room_count(), 2);
        assert_eq!(channels.watched_rooms().len(), 2);
        // Having just carried the heartbeat, the rooms are not quiet.
        channels.publish_where_quiet(Duration::from_secs(3600), &4);
        assert!(a.try_recv().is_err());
        // News for some of a room's subscribers is delivered, and leaves the room as quiet as
        // it was: quiet for 50 ms, though that news came just now. (Sleeps only ever last
        // longer, so a busy machine cannot make this fail.)
        tokio::time::sleep(Duration::from_millis(60)).await;
        channels.publish_to_some(&room("a"), 6);
        assert_eq!(a.try_recv().ok(), Some(6));
        channels.publish_where_quiet(Duration::from_millis(50), &7);
        assert_eq!(a.try_recv().ok(), Some(7));
        b.try_recv().unwrap();

        channels.publish_everywhere(&5);
        assert_eq!((a.try_recv().ok(), b.try_recv().ok()), (Some(5), Some(5)));
    }
}
