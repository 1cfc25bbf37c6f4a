//! What room-svc says about callers: membership and moderation rights (cached briefly, and
//! dropped at once when room-svc reports a change), room activity (debounced per room), and
//! the room event stream that ends the chat streams of removed members and closed rooms.
//! Like `grpc.rs`, this is an edge: room-svc's protobuf stays in here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use proto::room::v1 as room_pb;
use proto::room::v1::room_internal_service_client::RoomInternalServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::error::Error;
use crate::model::RoomEvent;
use crate::pubsub::PubSub;
use crate::retention::ClosedRoom;

/// A caller's standing in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    None,
    Member,
    Moderator,
    Owner,
}

/// What room-svc answered about one user in one room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    pub role: Role,
    /// The room is open (not closed).
    pub active: bool,
    /// Owner or moderator of an active room.
    pub can_moderate: bool,
}

impl Access {
    /// Refuses non-members and closed rooms.
    ///
    /// # Errors
    /// `NotMember`, `RoomClosed`.
    pub fn require_member(self) -> Result<Self, Error> {
        if !self.active {
            return Err(Error::RoomClosed);
        }
        if self.role == Role::None {
            return Err(Error::NotMember);
        }
        Ok(self)
    }

    /// Refuses anyone who may not moderate.
    ///
    /// # Errors
    /// As [`Self::require_member`], then `NotModerator`.
    pub fn require_moderator(self) -> Result<Self, Error> {
        let access = self.require_member()?;
        if access.can_moderate { Ok(access) } else { Err(Error::NotModerator) }
    }
}

type CacheKey = (String, String);

/// room-svc's answers, cached for `cache_ttl`.
#[derive(Debug)]
pub struct RoomAccess {
    client: RoomInternalServiceClient<Channel>,
    cache_ttl: Duration,
    cache: Mutex<HashMap<CacheKey, (Access, Instant)>>,
    activity_interval: Duration,
    last_activity: Mutex<HashMap<String, Instant>>,
}

/// Entries above which stale ones are swept before inserting.
const SWEEP_AT: usize = 10_000;

impl RoomAccess {
    /// Asks room-svc over `channel` (which carries the per-call deadline).
    #[must_use]
    pub fn new(channel: Channel, cache_ttl: Duration, activity_interval: Duration) -> Self {
        Self {
            client: RoomInternalServiceClient::new(channel),
            cache_ttl,
            cache: Mutex::new(HashMap::new()),
            activity_interval,
            last_activity: Mutex::new(HashMap::new()),
        }
    }

    /// `user_id`'s access to `room_id`.
    ///
    /// # Errors
    /// `RoomNotFound` for an unknown room, `Unavailable` when room-svc does not answer.
    pub async fn check(&self, room_id: &str, user_id: &str) -> Result<Access, Error> {
        let key = (room_id.to_owned(), user_id.to_owned());
        if let Some(access) = self.cached(&key) {
            return Ok(access);
        }
        let response = self
            .client
            .clone()
            .check_access(room_pb::CheckAccessRequest { room_id: room_id.to_owned(), user_id: user_id.to_owned() })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::NotFound | tonic::Code::InvalidArgument => Error::RoomNotFound,
                _ => {
                    tracing::warn!(code = ?status.code(), message = status.message(), "room access check failed");
                    Error::Unavailable
                }
            })?;
        let room_pb::CheckAccessResponse { status, control_mode: _, role, can_control: _, can_moderate } =
            response.into_inner();
        let role = match room_pb::Role::try_from(role) {
            Ok(room_pb::Role::Owner) => Role::Owner,
            Ok(room_pb::Role::Moderator) => Role::Moderator,
            Ok(room_pb::Role::Member) => Role::Member,
            Ok(room_pb::Role::Unspecified) | Err(_) => Role::None,
        };
        let active = room_pb::RoomStatus::try_from(status) == Ok(room_pb::RoomStatus::Active);
        let access = Access { role, active, can_moderate: can_moderate && active };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= SWEEP_AT {
                let ttl = self.cache_ttl;
                cache.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            cache.insert(key, (access, Instant::now()));
        }
        Ok(access)
    }

    fn cached(&self, key: &CacheKey) -> Option<Access> {
        let cache = self.cache.lock().ok()?;
        let (access, at) = cache.get(key)?;
        (at.elapsed() < self.cache_ttl).then_some(*access)
    }

    fn forget_member(&self, room_id: &str, user_id: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.remove(&(room_id.to_owned(), user_id.to_owned()));
        }
    }

    fn forget_room(&self, room_id: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(cached_room, _), _| cached_room != room_id);
        }
    }

    fn forget_all(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }

    /// Tells room-svc the room is in use, at most once per `activity_interval` per room, in
    /// the background: chat must not wait for it or fail because of it.
    pub fn record_activity(&self, room_id: &str) {
        let Ok(mut last) = self.last_activity.lock() else {
            return;
        };
        let now = Instant::now();
        if last.get(room_id).is_some_and(|at| now.duration_since(*at) < self.activity_interval) {
            return;
        }
        if last.len() >= SWEEP_AT {
            let interval = self.activity_interval;
            last.retain(|_, at| now.duration_since(*at) < interval);
        }
        last.insert(room_id.to_owned(), now);
        let mut client = self.client.clone();
        let request = room_pb::RecordActivityRequest { room_id: room_id.to_owned() };
        let room_id = room_id.to_owned();
        tokio::spawn(async move {
            if let Err(status) = client.record_activity(request).await {
                tracing::debug!(%room_id, code = ?status.code(), "recording room activity failed");
            }
        });
    }

    /// Follows room-svc's event stream until `shutdown`, reconnecting with back-off: drops
    /// cached access on every change and publishes removals and closings to the room's
    /// watchers. After a reconnect the whole cache goes, since missed events are not replayed.
    pub async fn follow_room_events(
        self: Arc<Self>,
        pubsub: Arc<dyn PubSub>,
        connected: IntGauge,
        closed: tokio::sync::mpsc::UnboundedSender<ClosedRoom>,
        shutdown: CancellationToken,
    ) {
        const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
        const MAX_BACKOFF: Duration = Duration::from_secs(5);
        let mut backoff = INITIAL_BACKOFF;
        while !shutdown.is_cancelled() {
            let mut client = self.client.clone();
            let subscribed = tokio::select! {
                () = shutdown.cancelled() => break,
                response = client.watch_room_events(room_pb::WatchRoomEventsRequest {}) => response,
            };
            match subscribed {
                Ok(response) => {
                    self.forget_all();
                    let mut stream = response.into_inner();
                    loop {
                        let next = tokio::select! {
                            () = shutdown.cancelled() => return,
                            next = stream.message() => next,
                        };
                        match next {
                            Ok(Some(event)) => {
                                // room-svc's first message says the subscription is live.
                                connected.set(1);
                                backoff = INITIAL_BACKOFF;
                                self.apply(event, pubsub.as_ref(), &closed);
                            }
                            Ok(None) => break,
                            Err(status) => {
                                tracing::warn!(code = ?status.code(), "room event stream broke; reconnecting");
                                break;
                            }
                        }
                    }
                    connected.set(0);
                }
                Err(status) => tracing::warn!(code = ?status.code(), "cannot watch room events; retrying"),
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn apply(
        &self,
        event: room_pb::WatchRoomEventsResponse,
        pubsub: &dyn PubSub,
        closed: &tokio::sync::mpsc::UnboundedSender<ClosedRoom>,
    ) {
        use room_pb::watch_room_events_response::Event;
        let room_pb::WatchRoomEventsResponse { room_id, event_time, event } = event;
        match event {
            Some(Event::MemberJoined(room_pb::MemberJoined { user_id }))
            | Some(Event::RoleChanged(room_pb::RoleChanged { user_id, role: _ })) => {
                self.forget_member(&room_id, &user_id);
            }
            Some(Event::MemberRemoved(room_pb::MemberRemoved { user_id, reason: _ })) => {
                self.forget_member(&room_id, &user_id);
                pubsub.publish(&room_id, RoomEvent::MemberRemoved { user_id });
            }
            Some(Event::RoomUpdated(room_pb::RoomUpdated { control_mode: _ })) => self.forget_room(&room_id),
            Some(Event::RoomClosed(room_pb::RoomClosed { reason: _ })) => {
                self.forget_room(&room_id);
                // Recorded before the watchers hear of it; the janitor only stops at shutdown.
                let closed_at = event_time.as_ref().map(proto::ms_from_timestamp);
                let _ = closed.send(ClosedRoom { room_id: room_id.clone(), closed_at });
                pubsub.publish(&room_id, RoomEvent::RoomClosed);
            }
            Some(Event::Heartbeat(room_pb::Heartbeat {})) | None => {}
        }
    }
}
