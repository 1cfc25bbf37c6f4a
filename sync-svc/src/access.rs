//! The edge to room-svc (`xiaowo.room.v1.RoomInternalService`): who may watch and control a
//! room (cached briefly), room activity (debounced per room), and the room event stream that
//! ends kicked members' and closed rooms' streams and drops cached access at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proto::room::v1 as room_pb;
use proto::room::v1::room_internal_service_client::RoomInternalServiceClient;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::Error;

/// What a user may do in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The room is open.
    pub active: bool,
    /// The user is a member.
    pub member: bool,
    /// The room's control mode lets the user control playback and the queue.
    pub can_control: bool,
}

/// A change in a room that matters to sync-svc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomChange {
    /// The user left or was kicked.
    MemberRemoved { room_id: String, user_id: String },
    /// The room closed.
    RoomClosed { room_id: String },
    /// Roles or settings changed: cached access for the room is stale.
    Updated { room_id: String },
    /// The event stream (re)connected; events may have been missed meanwhile.
    Reconnected,
}

/// Cached access checks and debounced activity reports against room-svc.
#[derive(Debug)]
pub struct RoomAccess {
    client: RoomInternalServiceClient<Channel>,
    cache_ttl: Duration,
    cache: Mutex<HashMap<(String, String), (Access, Instant)>>,
    activity_debounce: Duration,
    activity: Mutex<HashMap<String, Instant>>,
}

/// Entries above which caches are swept of stale ones.
const SWEEP_AT: usize = 10_000;
/// Longest pause between reconnection attempts to room-svc's event stream.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl RoomAccess {
    /// Calls room-svc over `channel`.
    #[must_use]
    pub fn new(channel: Channel, cache_ttl: Duration, activity_debounce: Duration) -> Self {
        Self {
            client: RoomInternalServiceClient::new(channel),
            cache_ttl,
            cache: Mutex::new(HashMap::new()),
            activity_debounce,
            activity: Mutex::new(HashMap::new()),
        }
    }

    /// What `user_id` may do in `room_id`.
    ///
    /// # Errors
    /// `RoomNotFound` for a room room-svc does not know, `Unavailable` when it does not answer.
    pub async fn check(&self, room_id: &str, user_id: &str) -> Result<Access, Error> {
        let key = (room_id.to_owned(), user_id.to_owned());
        if let Ok(cache) = self.cache.lock()
            && let Some((access, at)) = cache.get(&key)
            && at.elapsed() < self.cache_ttl
        {
            return Ok(*access);
        }
        let request = room_pb::CheckAccessRequest { room_id: room_id.to_owned(), user_id: user_id.to_owned() };
        let response = self.client.clone().check_access(request).await.map_err(|status| match status.code() {
            tonic::Code::NotFound | tonic::Code::InvalidArgument => Error::RoomNotFound,
            _ => Error::Unavailable(format!("room-svc CheckAccess: {}", status.message())),
        })?;
        let room_pb::CheckAccessResponse { status, control_mode: _, role, can_control, can_moderate: _ } =
            response.into_inner();
        let access = Access {
            active: status == room_pb::RoomStatus::Active as i32,
            member: role != room_pb::Role::Unspecified as i32,
            can_control,
        };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= SWEEP_AT {
                let ttl = self.cache_ttl;
                cache.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            cache.insert(key, (access, Instant::now()));
        }
        Ok(access)
    }

    /// Forgets cached access for one room.
    pub fn forget_room(&self, room_id: &str) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(cached_room, _), _| cached_room != room_id);
        }
    }

    fn forget_all(&self) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.clear();
        }
    }

    /// Tells room-svc the room is in use, at most once per debounce period per room, without
    /// making the caller wait.
    pub fn record_activity(&self, room_id: &str) {
        {
            let Ok(mut activity) = self.activity.lock() else { return };
            if activity.get(room_id).is_some_and(|at| at.elapsed() < self.activity_debounce) {
                return;
            }
            if activity.len() >= SWEEP_AT {
                let debounce = self.activity_debounce;
                activity.retain(|_, at| at.elapsed() < debounce);
            }
            activity.insert(room_id.to_owned(), Instant::now());
        }
        let mut client = self.client.clone();
        let room_id = room_id.to_owned();
        tokio::spawn(async move {
            if let Err(status) = client.record_activity(room_pb::RecordActivityRequest { room_id }).await {
                tracing::debug!(code = ?status.code(), "recording room activity failed");
            }
        });
    }

    /// Follows room-svc's event stream until `shutdown`, reconnecting with back-off, dropping
    /// cached access on every event and handing the ones that matter to `on_change`.
    pub async fn follow_events(&self, on_change: impl Fn(RoomChange) + Send + Sync, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut client = self.client.clone();
            let connected = tokio::select! {
                () = shutdown.cancelled() => return,
                result = client.watch_room_events(room_pb::WatchRoomEventsRequest {}) => result,
            };
            match connected {
                Ok(response) => {
                    let mut events = response.into_inner();
                    // Nothing is replayed: whatever happened while disconnected is unknown.
                    self.forget_all();
                    on_change(RoomChange::Reconnected);
                    loop {
                        let message = tokio::select! {
                            () = shutdown.cancelled() => return,
                            message = events.message() => message,
                        };
                        match message {
                            Ok(Some(event)) => {
                                backoff = Duration::from_millis(100);
                                if let Some(change) = self.interpret(event) {
                                    on_change(change);
                                }
                            }
                            Ok(None) => break,
                            Err(status) => {
                                tracing::warn!(code = ?status.code(), "room event stream failed");
                                break;
                            }
                        }
                    }
                }
                Err(status) => tracing::warn!(code = ?status.code(), "cannot watch room events"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn interpret(&self, event: room_pb::WatchRoomEventsResponse) -> Option<RoomChange> {
        use room_pb::watch_room_events_response::Event;
        let room_pb::WatchRoomEventsResponse { room_id, event_time: _, event } = event;
        let event = event?;
        if matches!(event, Event::Heartbeat(_)) {
            return None;
        }
        self.forget_room(&room_id);
        Some(match event {
            Event::MemberRemoved(room_pb::MemberRemoved { user_id, reason: _ }) => {
                RoomChange::MemberRemoved { room_id, user_id }
            }
            Event::RoomClosed(room_pb::RoomClosed { reason: _ }) => RoomChange::RoomClosed { room_id },
            Event::MemberJoined(_) | Event::RoleChanged(_) | Event::RoomUpdated(_) | Event::Heartbeat(_) => {
                RoomChange::Updated { room_id }
            }
        })
    }
}
