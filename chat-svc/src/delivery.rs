//! When a message becomes `delivered`: once every watcher of the room that was connected when
//! it was published has had it handed to its stream (replayed or live). A watcher that goes
//! away first leaves the message `stored`; its member's received cursor tells the rest.
//!
//! This bookkeeping is per instance; with several instances each one vouches only for its own
//! watchers, which is why the database update is "stored → delivered" and nothing more.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Identifies one open watch stream.
pub type WatcherId = u64;

/// Messages awaiting handover above which the oldest are given up on, per room.
const MAX_PENDING_PER_ROOM: usize = 10_000;

#[derive(Debug, Default)]
struct RoomDelivery {
    /// Highest seq each watcher has handed to its stream.
    handed: HashMap<WatcherId, i64>,
    /// Messages not yet handed to every watcher that should get them.
    pending: BTreeMap<i64, HashSet<WatcherId>>,
}

/// Tracks handover per room and watcher.
#[derive(Debug, Default)]
pub struct DeliveryTracker {
    next_id: AtomicU64,
    rooms: Mutex<HashMap<String, RoomDelivery>>,
}

impl DeliveryTracker {
    /// A new watcher of `room_id`, which has handed nothing yet.
    pub fn register(&self, room_id: &str) -> WatcherId {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut rooms) = self.rooms.lock() {
            rooms.entry(room_id.to_owned()).or_default().handed.insert(id, 0);
        }
        id
    }

    /// The watcher is gone: messages still waiting for it will not become delivered.
    pub fn unregister(&self, room_id: &str, watcher: WatcherId) {
        let Ok(mut rooms) = self.rooms.lock() else {
            return;
        };
        let Some(room) = rooms.get_mut(room_id) else {
            return;
        };
        room.handed.remove(&watcher);
        room.pending.retain(|_, waiting| !waiting.contains(&watcher));
        if room.handed.is_empty() {
            rooms.remove(room_id);
        }
    }

    /// A message was published. True when no connected watcher still needs it, i.e. it is
    /// delivered already (including when nobody is watching).
    pub fn published(&self, room_id: &str, seq: i64) -> bool {
        let Ok(mut rooms) = self.rooms.lock() else {
            return false;
        };
        let Some(room) = rooms.get_mut(room_id) else {
            return true;
        };
        let waiting: HashSet<WatcherId> =
            room.handed.iter().filter(|(_, handed)| **handed < seq).map(|(id, _)| *id).collect();
        if waiting.is_empty() {
            return true;
        }
        room.pending.insert(seq, waiting);
        while room.pending.len() > MAX_PENDING_PER_ROOM {
            room.pending.pop_first();
        }
        false
    }

    /// The watcher handed every message up to `seq` to its stream; the messages that this
    /// completes, in order.
    pub fn handed(&self, room_id: &str, watcher: WatcherId, seq: i64) -> Vec<i64> {
        let Ok(mut rooms) = self.rooms.lock() else {
            return Vec::new();
        };
        let Some(room) = rooms.get_mut(room_id) else {
            return Vec::new();
        };
        if let Some(handed) = room.handed.get_mut(&watcher) {
            *handed = (*handed).max(seq);
        }
        let mut completed = Vec::new();
        for (pending_seq, waiting) in room.pending.range_mut(..=seq) {
            if waiting.remove(&watcher) && waiting.is_empty() {
                completed.push(*pending_seq);
            }
        }
        for done in &completed {
            room.pending.remove(done);
        }
        completed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivered_when_every_connected_watcher_has_it() {
        let tracker = DeliveryTracker::default();
        assert!(tracker.published("r", 1), "nobody watching");
        let a = tracker.register("r");
        let b = tracker.register("r");
        assert!(!tracker.published("r", 2));
        assert!(!tracker.published("r", 3));
        assert!(tracker.handed("r", a, 3).is_empty());
        assert_eq!(tracker.handed("r", b, 2), vec![2]);
        assert_eq!(tracker.handed("r", b, 3), vec![3]);
        // A watcher that has handed a message before it is published (replay) is not waited for.
        assert_eq!(tracker.handed("r", a, 4), Vec::<i64>::new());
        assert!(!tracker.published("r", 4));
        assert_eq!(tracker.handed("r", b, 4), vec![4]);
    }

    #[test]
    fn a_departed_watcher_leaves_its_messages_stored() {
        let tracker = DeliveryTracker::default();
        let a = tracker.register("r");
        let b = tracker.register("r");
        assert!(!tracker.published("r", 1));
        tracker.unregister("r", a);
        assert!(tracker.handed("r", b, 1).is_empty());
        assert!(!tracker.published("r", 2));
        assert_eq!(tracker.handed("r", b, 2), vec![2]);
    }
}
