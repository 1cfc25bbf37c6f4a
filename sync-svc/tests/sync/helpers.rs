//! A running sync-svc with its peers: a real session-svc and sync-svc started by a [`Stack`]
//! as an install starts them (the internal token set), a room service on a loopback port, and
//! sync-svc over a fresh SQLite file (or a fresh PostgreSQL database when
//! `XIAOWO_TEST_POSTGRES` is set), all on port 0.
//!
//! The room service here is a small stand-in for room-svc's `RoomInternalService` (its
//! contract, not its implementation): tests set members, roles and control modes directly and
//! emit the membership events room-svc would. (sync-svc's tests with the real room-svc are in
//! `with_room_svc`.)

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use prost::Message;
use proto::room::v1 as room_pb;
use proto::sync::v1 as pb;
use proto::sync::v1::sync_admin_service_client::SyncAdminServiceClient;
use proto::sync::v1::sync_service_client::SyncServiceClient;
use svc_kit::clock::SharedClock;
use svc_kit::retention::RetentionConfig;
use svc_kit::testing::TestServer;
use tokio::sync::broadcast;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_types::StatusExt;
use xiaowo::node::{Common, Target};
use xiaowo::testing::{Node, Stack, any_port};

pub use svc_kit::testing::with_bearer as with_token;
pub use xiaowo::testing::ADMIN_TOKEN;

#[derive(Debug, Clone)]
pub struct FakeRoom {
    pub active: bool,
    pub control_mode: room_pb::ControlMode,
    pub members: HashMap<String, room_pb::Role>,
}

/// room-svc's internal contract, with rooms the test controls.
#[derive(Debug, Clone)]
pub struct FakeRoomService {
    rooms: Arc<Mutex<HashMap<String, FakeRoom>>>,
    events: Arc<Mutex<broadcast::Sender<room_pb::WatchRoomEventsResponse>>>,
    pub activity_reports: Arc<AtomicUsize>,
    pub access_checks: Arc<AtomicUsize>,
}

impl FakeRoomService {
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        Self {
            rooms: Arc::default(),
            events: Arc::new(Mutex::new(broadcast::channel(64).0)),
            activity_reports: Arc::default(),
            access_checks: Arc::default(),
        }
    }

    fn event(room_id: &str, event: room_pb::watch_room_events_response::Event) -> room_pb::WatchRoomEventsResponse {
        room_pb::WatchRoomEventsResponse {
            room_id: room_id.to_owned(),
            event_time: Some(proto::timestamp_from_ms(0)),
            event: Some(event),
        }
    }

    /// A new active room owned by `owner`, controllable by everyone.
    pub fn create_room(&self, owner: &str) -> String {
        let room_id = uuid::Uuid::new_v4().to_string();
        let members = HashMap::from([(owner.to_owned(), room_pb::Role::Owner)]);
        let room = FakeRoom { active: true, control_mode: room_pb::ControlMode::Everyone, members };
        self.rooms.lock().unwrap().insert(room_id.clone(), room);
        room_id
    }

    pub fn join(&self, room_id: &str, user_id: &str, role: room_pb::Role) {
        self.rooms.lock().unwrap().get_mut(room_id).unwrap().members.insert(user_id.to_owned(), role);
    }

    pub fn set_control_mode(&self, room_id: &str, mode: room_pb::ControlMode) {
        self.rooms.lock().unwrap().get_mut(room_id).unwrap().control_mode = mode;
        let event =
            room_pb::watch_room_events_response::Event::RoomUpdated(room_pb::RoomUpdated { control_mode: mode.into() });
        let _ = self.events.lock().unwrap().send(Self::event(room_id, event));
    }

    pub fn kick(&self, room_id: &str, user_id: &str) {
        self.rooms.lock().unwrap().get_mut(room_id).unwrap().members.remove(user_id);
        let event = room_pb::watch_room_events_response::Event::MemberRemoved(room_pb::MemberRemoved {
            user_id: user_id.to_owned(),
            reason: room_pb::RemovalReason::Kicked.into(),
        });
        let _ = self.events.lock().unwrap().send(Self::event(room_id, event));
    }

    pub fn close(&self, room_id: &str) {
        self.rooms.lock().unwrap().get_mut(room_id).unwrap().active = false;
        let event = room_pb::watch_room_events_response::Event::RoomClosed(room_pb::RoomClosed {
            reason: room_pb::CloseReason::ClosedByOwner.into(),
        });
        let _ = self.events.lock().unwrap().send(Self::event(room_id, event));
    }

    /// Removes a member without telling anyone, as if the event were lost.
    pub fn remove_silently(&self, room_id: &str, user_id: &str) {
        self.rooms.lock().unwrap().get_mut(room_id).unwrap().members.remove(user_id);
    }

    /// Ends every open event stream (followers must reconnect).
    pub fn drop_followers(&self) {
        *self.events.lock().unwrap() = broadcast::channel(64).0;
    }

    /// Waits until sync-svc follows the event stream, so that events are not sent to nobody.
    pub async fn wait_for_follower(&self) {
        for _ in 0..200 {
            if self.events.lock().unwrap().receiver_count() > 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("sync-svc never watched room events");
    }
}

#[tonic::async_trait]
impl room_pb::room_internal_service_server::RoomInternalService for FakeRoomService {
    type WatchRoomEventsStream = Pin<Box<dyn Stream<Item = Result<room_pb::WatchRoomEventsResponse, Status>> + Send>>;

    async fn check_access(
        &self,
        request: Request<room_pb::CheckAccessRequest>,
    ) -> Result<Response<room_pb::CheckAccessResponse>, Status> {
        self.access_checks.fetch_add(1, Ordering::SeqCst);
        let room_pb::CheckAccessRequest { room_id, user_id } = request.into_inner();
        let rooms = self.rooms.lock().unwrap();
        let room = rooms.get(&room_id).ok_or_else(|| Status::not_found("room not found"))?;
        let role = room.members.get(&user_id).copied().unwrap_or(room_pb::Role::Unspecified);
        let allowed = match room.control_mode {
            room_pb::ControlMode::Moderators => matches!(role, room_pb::Role::Moderator | room_pb::Role::Owner),
            room_pb::ControlMode::Owner => role == room_pb::Role::Owner,
            _ => role != room_pb::Role::Unspecified,
        };
        Ok(Response::new(room_pb::CheckAccessResponse {
            status: if room.active { room_pb::RoomStatus::Active } else { room_pb::RoomStatus::Closed }.into(),
            control_mode: room.control_mode.into(),
            role: role.into(),
            can_control: room.active && allowed,
            can_moderate: room.active && matches!(role, room_pb::Role::Moderator | room_pb::Role::Owner),
        }))
    }

    async fn record_activity(
        &self,
        _request: Request<room_pb::RecordActivityRequest>,
    ) -> Result<Response<room_pb::RecordActivityResponse>, Status> {
        self.activity_reports.fetch_add(1, Ordering::SeqCst);
        Ok(Response::new(room_pb::RecordActivityResponse {}))
    }

    async fn watch_room_events(
        &self,
        _request: Request<room_pb::WatchRoomEventsRequest>,
    ) -> Result<Response<Self::WatchRoomEventsStream>, Status> {
        let first = Self::event("", room_pb::watch_room_events_response::Event::Heartbeat(room_pb::Heartbeat {}));
        let live = tokio_stream::wrappers::BroadcastStream::new(self.events.lock().unwrap().subscribe())
            .filter_map(|event| std::future::ready(event.ok().map(Ok)));
        Ok(Response::new(Box::pin(futures_util::stream::iter([Ok(first)]).chain(live))))
    }
}

/// The peers sync-svc needs, started once per test: session-svc (in the stack, on the
/// system clock) and the stand-in room service.
pub struct Peers {
    pub stack: Stack,
    pub session: Node,
    pub room_server: TestServer,
    pub rooms: FakeRoomService,
}

impl Peers {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// With `configure` applied to the stack's settings.
    pub async fn start_with(configure: impl FnOnce(&mut Common)) -> Self {
        let stack = Stack::new().await.on_system_clock().with(configure);
        let session = stack.start(&[Target::Session]).await;
        let rooms = FakeRoomService::new();
        let room_server = Self::serve_rooms(&rooms, any_port()).await;
        stack.set_peer(Target::Room, &room_server.url);
        Self { stack, session, room_server, rooms }
    }

    /// A server for the stand-in room service on `addr` (again, after one stopped there).
    pub async fn serve_rooms(rooms: &FakeRoomService, addr: std::net::SocketAddr) -> TestServer {
        let mut attempts = 0;
        let mut assembly = loop {
            let config = svc_kit::testing::bind().await.config().clone();
            match svc_kit::server::Assembly::bind(addr, config, tokio_util::sync::CancellationToken::new()).await {
                Ok(assembly) => break assembly,
                Err(error) if attempts < 100 => {
                    attempts += 1;
                    tracing::debug!(%error, "port still held; retrying");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("cannot bind {addr}: {error}"),
            }
        };
        assembly.add_service(room_pb::room_internal_service_server::RoomInternalServiceServer::new(rooms.clone()));
        TestServer::spawn(assembly)
    }

    /// A new session: (user id, token).
    pub async fn user(&self, name: &str) -> (String, String) {
        let user = self.stack.user(name).await;
        (user.user_id, user.token)
    }
}

/// sync-svc settings suited to tests: no access caching, quick ticks, no flood limit.
pub fn test_config() -> sync_svc::Config {
    let mut config: sync_svc::Config = svc_kit::testing::from_env();
    config.access_cache_ttl = Duration::ZERO;
    config.tick_interval = Duration::from_millis(20);
    config.presence_interval = Duration::from_millis(50);
    config.command_burst = 10_000;
    config.commands_per_second = 10_000;
    config
}

/// A running sync-svc.
pub struct SyncApp {
    pub server: Node,
}

/// How one sync-svc is started: over the database in `data_dir`, with `config`, on `clock`.
pub struct Start<'a> {
    pub data_dir: &'a std::path::Path,
    pub config: &'a sync_svc::Config,
    pub clock: SharedClock,
    pub addr: std::net::SocketAddr,
    pub retention: RetentionConfig,
    /// Changes to the process's settings beyond sync-svc's own (busy timeout, peers' deadline).
    pub common: &'a dyn Fn(&mut Common),
}

impl<'a> Start<'a> {
    pub fn new(data_dir: &'a std::path::Path, config: &'a sync_svc::Config, clock: SharedClock) -> Self {
        Self {
            data_dir,
            config,
            clock,
            addr: any_port(),
            retention: RetentionConfig::keep_everything(),
            common: &|_| {},
        }
    }
}

impl SyncApp {
    pub async fn start(
        peers: &Peers,
        data_dir: &std::path::Path,
        config: &sync_svc::Config,
        clock: SharedClock,
    ) -> Self {
        Self::start_as(peers, Start::new(data_dir, config, clock)).await
    }

    pub async fn start_with_retention(
        peers: &Peers,
        data_dir: &std::path::Path,
        config: &sync_svc::Config,
        retention: &RetentionConfig,
        clock: SharedClock,
    ) -> Self {
        Self::start_as(peers, Start { retention: retention.clone(), ..Start::new(data_dir, config, clock) }).await
    }

    /// sync-svc as `start` says, retrying its address while a stopped server still holds it.
    pub async fn start_as(peers: &Peers, start: Start<'_>) -> Self {
        let url = svc_kit::testing::database_url(start.data_dir, "sync.db").await;
        let mut attempts = 0;
        loop {
            let configure = |common: &mut Common| {
                common.sync = start.config.clone();
                common.sync.database_url = Some(url.clone());
                common.retention = start.retention.clone();
                (start.common)(common);
            };
            let started =
                peers.stack.try_start(start.addr, &[Target::Sync], Some(start.clock.clone()), configure).await;
            match started {
                Ok(server) => return Self { server },
                Err(xiaowo::node::StartError::Bind { .. }) if attempts < 100 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("sync-svc did not start: {error}"),
            }
        }
    }

    pub fn client(&self) -> SyncServiceClient<Channel> {
        SyncServiceClient::new(self.server.channel())
    }

    pub fn admin(&self) -> SyncAdminServiceClient<Channel> {
        SyncAdminServiceClient::new(self.server.channel())
    }

    /// The `/metrics` page.
    pub async fn metrics(&self) -> String {
        self.server.metrics().await
    }
}

/// The fields named in an INVALID_ARGUMENT status's BadRequest details.
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|violation| violation.field).collect())
        .unwrap_or_default()
}

/// The RoomState an ABORTED status carries.
pub fn conflict_state(status: &Status) -> pb::RoomState {
    let details = tonic_types::Status::decode(status.details()).expect("google.rpc.Status details");
    let any = details.details.into_iter().next().expect("one detail");
    assert_eq!(any.type_url, "type.googleapis.com/xiaowo.sync.v1.RoomState");
    pb::RoomState::decode(any.value.as_slice()).expect("a RoomState")
}

pub type Events = tonic::Streaming<pb::WatchRoomResponse>;

/// Opens a room stream.
pub async fn watch(app: &SyncApp, room_id: &str, token: &str) -> Events {
    app.client()
        .watch_room(with_token(pb::WatchRoomRequest { room_id: room_id.to_owned() }, token))
        .await
        .unwrap()
        .into_inner()
}

/// The next message, failing the test if none arrives within 10 s.
pub async fn next_event(events: &mut Events) -> Result<pb::watch_room_response::Event, Status> {
    let message = tokio::time::timeout(Duration::from_secs(10), events.message()).await.expect("an event in time")?;
    Ok(message.expect("stream still open").event.expect("an event"))
}

/// Skips presence and heartbeats until a room state (change or snapshot) arrives.
pub async fn next_state(events: &mut Events) -> pb::RoomState {
    loop {
        match next_event(events).await.unwrap() {
            pb::watch_room_response::Event::State(state) => return state,
            pb::watch_room_response::Event::Snapshot(snapshot) => return snapshot.state.unwrap(),
            pb::watch_room_response::Event::Presence(_)
            | pb::watch_room_response::Event::PresenceDelta(_)
            | pb::watch_room_response::Event::Heartbeat(_) => {}
        }
    }
}

/// The first error the stream ends with, skipping messages.
pub async fn end_status(events: &mut Events) -> Status {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.message()).await.expect("the stream ends in time") {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => return status,
        }
    }
}
