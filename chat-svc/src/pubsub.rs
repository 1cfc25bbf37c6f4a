//! The one publish/subscribe boundary that live delivery passes through: an in-process
//! broadcast per room ([`RoomChannels`]), and with a broker configured ([`Nats`]) also NATS,
//! which carries what one instance publishes to the watchers of every other (subject
//! `xiaowo.chat.room.<room id>`, the event as protobuf, `xiaowo.chat.v1.RoomBusEvent`).
//! Nothing else changes: sequence numbers come from the database and watchers catch up from
//! it whenever they see one skipped, and after a broker outage every watched room catches up.
//! Removals and closings stay local (every instance follows room-svc's events itself), and so
//! do heartbeats and the notice that the service is stopping.

use std::sync::Arc;
use std::time::Duration;

use svc_kit::bus::{Broker, is_subject_token};
use svc_kit::channels::RoomChannels;
use svc_kit::id::RoomId;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::model::RoomEvent;

/// Publishes room events and hands out subscriptions to them.
pub trait PubSub: Send + Sync + std::fmt::Debug {
    /// Sends `event` to every current subscriber of `room_id`; never blocks.
    fn publish(&self, room_id: &RoomId, event: RoomEvent);

    /// Receives the room's events from now on. The receiver holds a bounded ring: a
    /// subscriber that falls further behind gets `Lagged` and must catch up from the database.
    fn subscribe(&self, room_id: &RoomId) -> broadcast::Receiver<Arc<RoomEvent>>;

    /// Sends `event` to this instance's subscribers of every room that has been sent nothing
    /// here for `quiet_for` (a heartbeat); never crosses instances.
    fn publish_where_quiet(&self, quiet_for: Duration, event: RoomEvent);

    /// Sends `event` to this instance's subscribers of every room; never crosses instances.
    fn publish_everywhere(&self, event: RoomEvent);
}

/// One bounded broadcast channel per room with subscribers.
pub type InProcess = RoomChannels<Arc<RoomEvent>>;

impl PubSub for InProcess {
    fn publish(&self, room_id: &RoomId, event: RoomEvent) {
        match event {
            // Only the sender's, the member's or the removed member's own streams pass these on.
            RoomEvent::StatusChanged { .. } | RoomEvent::CursorUpdated(_) | RoomEvent::MemberRemoved { .. } => {
                self.publish_to_some(room_id, Arc::new(event));
            }
            _ => RoomChannels::publish(self, room_id, Arc::new(event)),
        }
    }

    fn subscribe(&self, room_id: &RoomId) -> broadcast::Receiver<Arc<RoomEvent>> {
        RoomChannels::subscribe(self, room_id)
    }

    fn publish_where_quiet(&self, quiet_for: Duration, event: RoomEvent) {
        RoomChannels::publish_where_quiet(self, quiet_for, &Arc::new(event));
    }

    fn publish_everywhere(&self, event: RoomEvent) {
        RoomChannels::publish_everywhere(self, &Arc::new(event));
    }
}

const SUBJECT: &str = "xiaowo.chat.room";

/// [`InProcess`] plus NATS between instances.
#[derive(Debug)]
pub struct Nats {
    local: InProcess,
    broker: Broker,
}

impl Nats {
    /// Rooms keep `capacity` live events here; events cross instances through `broker`.
    #[must_use]
    pub fn new(capacity: usize, broker: Broker) -> Self {
        Self { local: InProcess::new(capacity), broker }
    }

    /// Delivers other instances' events to the watchers here until `shutdown`; after every
    /// reconnection, watched rooms catch up from the database.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let mut connections = self.broker.connections();
        connections.borrow_and_update();
        let mut events = match self.broker.subscribe(&format!("{SUBJECT}.*")).await {
            Ok(events) => events,
            Err(error) => {
                tracing::error!(%error, "chat events from other instances will not arrive");
                return;
            }
        };
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                delivery = events.next() => {
                    let Some(delivery) = delivery else { return };
                    let Some(room_id) = delivery.subject.strip_prefix(SUBJECT).and_then(|rest| rest.strip_prefix('.'))
                    else {
                        continue;
                    };
                    match crate::grpc::wire::decode(&delivery.payload) {
                        // Other instances of this install publish only rooms it issued.
                        Some(event) => PubSub::publish(&self.local, &RoomId::issued(room_id.to_owned()), event),
                        None => tracing::warn!(room_id, "unreadable chat event from another instance"),
                    }
                }
                changed = connections.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let watched = self.local.watched_rooms();
                    tracing::info!(rooms = watched.len(), "broker reconnected; watched rooms catch up");
                    for room_id in watched {
                        self.local.publish(&room_id, Arc::new(RoomEvent::Resync));
                    }
                }
            }
        }
    }
}

impl PubSub for Nats {
    fn publish(&self, room_id: &RoomId, event: RoomEvent) {
        // What another instance's watchers need to hear from this one: removals, closings
        // and resyncs stay here (every instance hears room-svc itself).
        if is_subject_token(room_id.as_str())
            && let Some(encoded) = crate::grpc::wire::encode(&event)
        {
            self.broker.publish(format!("{SUBJECT}.{room_id}"), &[], encoded);
        }
        PubSub::publish(&self.local, room_id, event);
    }

    fn subscribe(&self, room_id: &RoomId) -> broadcast::Receiver<Arc<RoomEvent>> {
        self.local.subscribe(room_id)
    }

    fn publish_where_quiet(&self, quiet_for: Duration, event: RoomEvent) {
        PubSub::publish_where_quiet(&self.local, quiet_for, event);
    }

    fn publish_everywhere(&self, event: RoomEvent) {
        PubSub::publish_everywhere(&self.local, event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Cursor, Message, MessageStatus};

    #[test]
    fn events_survive_the_trip_between_instances() {
        let message = Message {
            room_id: "r".to_owned(),
            seq: 7,
            sender_id: "u".to_owned(),
            text: "你好 <b>".to_owned(),
            client_message_id: "c".to_owned(),
            status: MessageStatus::Stored,
            created_at: 1,
            deleted_at: None,
            deleted_by: None,
        };
        let deleted = Message { deleted_at: Some(2), deleted_by: Some("m".to_owned()), ..message.clone() };
        let cursor = Cursor { user_id: "v".to_owned(), received_seq: 7, read_seq: 6, updated_at: 3 };
        let crossing = [
            RoomEvent::Message(message),
            RoomEvent::Message(deleted),
            RoomEvent::Deleted { seq: 7, deleted_by: "m".to_owned(), deleted_at: 4 },
            RoomEvent::StatusChanged { seq: 7, sender_id: "u1".to_owned(), status: MessageStatus::Delivered },
            RoomEvent::CursorUpdated(cursor),
        ];
        for event in crossing {
            let encoded = crate::grpc::wire::encode(&event).unwrap();
            assert_eq!(crate::grpc::wire::decode(&encoded), Some(event));
        }
        for local in [
            RoomEvent::MemberRemoved { user_id: svc_kit::id::UserId::issued("u".to_owned()) },
            RoomEvent::RoomClosed,
            RoomEvent::Resync,
            RoomEvent::Heartbeat { server_time: 5 },
            RoomEvent::ShuttingDown,
        ] {
            assert_eq!(crate::grpc::wire::encode(&local), None, "{local:?} stays in its instance");
        }
    }
}
