//! The one publish/subscribe boundary room events pass through. Whoever accepts a change
//! publishes it here, already encoded; every stream watching the room subscribes here. The
//! in-process implementation is a tokio broadcast channel per room; with a broker configured,
//! [`NatsBus`] also carries state changes and presence between instances through NATS.
//!
//! What crosses instances: state changes (subject `xiaowo.sync.room.<room id>`, the encoded
//! `WatchRoomResponse` with its version in a header) and each instance's own watchers
//! (`xiaowo.sync.presence.<room id>`, re-sent every heartbeat, forgotten after the expiry).
//! What does not: presence as streamed (each instance streams the union it computes),
//! removals and closings (every instance follows room-svc's events itself), heartbeats and the
//! notice that the service is stopping (each instance's own, for its own streams). Versions are
//! authoritative: a watcher that sees one skipped reloads a snapshot from the database, and
//! after a broker outage every watched room does.
//!
//! Memory is bounded by construction ([`RoomChannels`]): a watcher that falls more than the
//! room's capacity behind is told how many it missed and resynchronises from a fresh snapshot.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use svc_kit::bus::{Broker, Delivery, is_subject_token};
use svc_kit::channels::RoomChannels;
use svc_kit::id::{RoomId, UserId};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::rooms::Rooms;

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
    /// A presence delta (`WatchRoomResponse`), encoded once for every watcher of this
    /// instance; `published` numbers the room's deltas, so that a stream skips those its
    /// snapshot already reflects. Never crosses instances (each streams the union it computes).
    Presence { published: u64, encoded: Bytes },
    /// The user is no longer a member (left or kicked): their streams end.
    MemberRemoved { user_id: UserId },
    /// The room closed: every stream ends.
    RoomClosed,
    /// Events may have been lost (the broker was unreachable): watchers reload a snapshot.
    Resync,
    /// The service is stopping: every stream ends (never crosses instances).
    ShuttingDown,
}

/// A subscription to one room's events.
pub type Subscription = broadcast::Receiver<RoomEvent>;

/// Carries room events from publishers to subscribers.
pub trait RoomBus: Send + Sync + fmt::Debug {
    /// Delivers `event` to the room's subscribers (none is fine).
    fn publish(&self, room_id: &RoomId, event: RoomEvent);
    /// Starts receiving the room's events from now on.
    fn subscribe(&self, room_id: &RoomId) -> Subscription;
    /// Delivers `event` to this instance's subscribers of every room that has been sent
    /// nothing here for `quiet_for` (a heartbeat: one timer for all of a room's streams rather
    /// than one per stream); never crosses instances.
    fn publish_where_quiet(&self, quiet_for: Duration, event: &RoomEvent);
    /// Delivers `event` to this instance's subscribers of every room; never crosses instances.
    fn publish_everywhere(&self, event: &RoomEvent);
    /// Tells other instances who watches the room here (an encoded presence); nothing to do
    /// without them.
    fn share_presence(&self, _room_id: &RoomId, _encoded: Bytes) {}
    /// Whether [`Self::share_presence`] reaches anyone (so presence is worth encoding).
    fn shares_presence(&self) -> bool {
        false
    }
}

/// Rooms and their channels inside this process.
pub type InProcessBus = RoomChannels<RoomEvent>;

impl RoomBus for InProcessBus {
    fn publish(&self, room_id: &RoomId, event: RoomEvent) {
        match event {
            // Only the removed member's streams pass it on.
            RoomEvent::MemberRemoved { .. } => self.publish_to_some(room_id, event),
            _ => RoomChannels::publish(self, room_id, event),
        }
    }

    fn subscribe(&self, room_id: &RoomId) -> Subscription {
        RoomChannels::subscribe(self, room_id)
    }

    fn publish_where_quiet(&self, quiet_for: Duration, event: &RoomEvent) {
        RoomChannels::publish_where_quiet(self, quiet_for, event);
    }

    fn publish_everywhere(&self, event: &RoomEvent) {
        RoomChannels::publish_everywhere(self, event);
    }
}

const STATE_SUBJECT: &str = "xiaowo.sync.room";
const PRESENCE_SUBJECT: &str = "xiaowo.sync.presence";
const VERSION_HEADER: &str = "Xiaowo-Version";

/// The in-process bus plus NATS: what this instance publishes reaches its own watchers at
/// once and the other instances through the broker; what they publish is delivered here.
#[derive(Debug)]
pub struct NatsBus {
    local: InProcessBus,
    broker: Broker,
}

impl NatsBus {
    /// A bus keeping at most `capacity` undelivered events per room, linked through `broker`.
    #[must_use]
    pub fn new(capacity: usize, broker: Broker) -> Self {
        Self { local: InProcessBus::new(capacity), broker }
    }

    /// Delivers other instances' state changes and presence to this one until `shutdown`;
    /// after every reconnection, watched rooms reload a snapshot and presence is re-sent.
    pub async fn run(self: Arc<Self>, rooms: Arc<Rooms>, shutdown: CancellationToken) {
        let mut connections = self.broker.connections();
        connections.borrow_and_update();
        let subscribed = async {
            let states = self.broker.subscribe(&format!("{STATE_SUBJECT}.*")).await?;
            let presence = self.broker.subscribe(&format!("{PRESENCE_SUBJECT}.*")).await?;
            Ok::<_, svc_kit::bus::BusError>((states, presence))
        };
        let (mut states, mut presence) = match subscribed.await {
            Ok(subscriptions) => subscriptions,
            Err(error) => {
                tracing::error!(%error, "sync events from other instances will not arrive");
                return;
            }
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                delivery = states.next() => match delivery {
                    Some(delivery) => self.on_state(&rooms, delivery),
                    None => return,
                },
                delivery = presence.next() => match delivery {
                    Some(delivery) => on_presence(&rooms, &delivery),
                    None => return,
                },
                changed = connections.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let watched = self.local.watched_rooms();
                    tracing::info!(rooms = watched.len(), "broker reconnected; resynchronising watched rooms");
                    for room_id in watched {
                        self.local.publish(&room_id, RoomEvent::Resync);
                    }
                    rooms.share_presence_again();
                }
            }
        }
    }

    fn on_state(&self, rooms: &Rooms, delivery: Delivery) {
        let Some(room_id) = room_of(&delivery.subject, STATE_SUBJECT) else { return };
        let version = delivery.header(VERSION_HEADER).and_then(|version| version.parse::<i64>().ok());
        if version.is_none() {
            tracing::warn!(%room_id, "state change without a version from another instance; ignored");
            return;
        }
        if let Some(version) = version {
            rooms.on_remote_change(&room_id, version);
        }
        self.local.publish(&room_id, RoomEvent::Message { version, encoded: delivery.payload });
    }
}

/// The room a subject names; other instances of this install publish only rooms it issued.
fn room_of(subject: &str, prefix: &str) -> Option<RoomId> {
    let room_id = subject.strip_prefix(prefix)?.strip_prefix('.').filter(|room_id| is_subject_token(room_id))?;
    Some(RoomId::issued(room_id.to_owned()))
}

fn on_presence(rooms: &Rooms, delivery: &Delivery) {
    let (Some(room_id), Some(origin)) = (room_of(&delivery.subject, PRESENCE_SUBJECT), delivery.origin()) else {
        return;
    };
    match crate::grpc::wire::decode_presence(&delivery.payload) {
        Some(watchers) => rooms.on_remote_presence(&room_id, origin, watchers),
        None => tracing::warn!(%room_id, "unreadable presence from another instance; ignored"),
    }
}

impl RoomBus for NatsBus {
    fn publish(&self, room_id: &RoomId, event: RoomEvent) {
        if let RoomEvent::Message { version: Some(version), encoded } = &event
            && is_subject_token(room_id.as_str())
        {
            let version = version.to_string();
            self.broker.publish(format!("{STATE_SUBJECT}.{room_id}"), &[(VERSION_HEADER, &version)], encoded.clone());
        }
        RoomBus::publish(&self.local, room_id, event);
    }

    fn subscribe(&self, room_id: &RoomId) -> Subscription {
        self.local.subscribe(room_id)
    }

    fn publish_where_quiet(&self, quiet_for: Duration, event: &RoomEvent) {
        self.local.publish_where_quiet(quiet_for, event);
    }

    fn publish_everywhere(&self, event: &RoomEvent) {
        self.local.publish_everywhere(event);
    }

    fn shares_presence(&self) -> bool {
        true
    }

    fn share_presence(&self, room_id: &RoomId, encoded: Bytes) {
        if is_subject_token(room_id.as_str()) {
            self.broker.publish(format!("{PRESENCE_SUBJECT}.{room_id}"), &[], encoded);
        }
    }
}
