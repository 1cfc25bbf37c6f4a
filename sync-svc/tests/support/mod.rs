//! A running sync-svc with its peers for integration tests: a real session-svc, a room
//! service on a loopback port, and sync-svc over a fresh SQLite file (or a fresh PostgreSQL
//! database when `XIAOWO_TEST_POSTGRES` is set), all on port 0.
//!
//! The room service here is a small stand-in for room-svc's `RoomInternalService` (its
//! contract, not its implementation): tests set members, roles and control modes directly and
//! emit the membership events room-svc would.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use prost::Message;
use proto::room::v1 as room_pb;
use proto::session::v1 as session_pb;
use proto::sync::v1 as pb;
use proto::sync::v1::sync_admin_service_client::SyncAdminServiceClient;
use proto::sync::v1::sync_service_client::SyncServiceClient;
use svc_kit::auth::AdminToken;
use svc_kit::clock::SharedClock;
use svc_kit::db::DbOptions;
use svc_kit::retention::RetentionConfig;
use svc_kit::testing::TestServer;
use tokio::sync::broadcast;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tonic_types::StatusExt;

pub const ADMIN_TOKEN: &str = "sync-admin-token";

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

/// The peers sync-svc needs, started once per test.
pub struct Peers {
    pub session: TestServer,
    pub room_server: TestServer,
    pub rooms: FakeRoomService,
}

impl Peers {
    pub async fn start() -> Self {
        let session_dir = tempfile::tempdir().unwrap();
        let session_url = svc_kit::testing::database_url(session_dir.path(), "session.db").await;
        let mut assembly = svc_kit::testing::bind().await;
        session_svc::build(
            &svc_kit::config::from_env(),
            &session_url,
            &DbOptions::default(),
            AdminToken::new(None),
            svc_kit::clock::system(),
            &mut assembly,
        )
        .await
        .unwrap();
        let session = TestServer::spawn(assembly);
        // The directory must outlive the server; leaking it keeps the file for the test's life.
        std::mem::forget(session_dir);

        let rooms = FakeRoomService::new();
        let mut assembly = svc_kit::testing::bind().await;
        assembly.add_service(room_pb::room_internal_service_server::RoomInternalServiceServer::new(rooms.clone()));
        let room_server = TestServer::spawn(assembly);
        Self { session, room_server, rooms }
    }

    /// A new session: (user id, token).
    pub async fn user(&self, name: &str) -> (String, String) {
        let mut client = session_pb::session_service_client::SessionServiceClient::new(self.session.channel());
        let created = client
            .create_session(session_pb::CreateSessionRequest { display_name: name.to_owned() })
            .await
            .unwrap()
            .into_inner();
        (created.session.unwrap().user_id, created.token)
    }
}

/// sync-svc settings suited to tests: no access caching, quick ticks, no flood limit.
pub fn test_config() -> sync_svc::Config {
    let mut config: sync_svc::Config = svc_kit::config::from_env();
    config.access_cache_ttl = Duration::ZERO;
    config.tick_interval = Duration::from_millis(20);
    config.presence_interval = Duration::from_millis(50);
    config.command_burst = 10_000;
    config.commands_per_second = 10_000;
    config
}

/// A running sync-svc.
pub struct SyncApp {
    pub server: TestServer,
}

impl SyncApp {
    pub async fn start(
        peers: &Peers,
        data_dir: &std::path::Path,
        config: &sync_svc::Config,
        clock: SharedClock,
    ) -> Self {
        Self::start_with_retention(peers, data_dir, config, &RetentionConfig::keep_everything(), clock).await
    }

    pub async fn start_with_retention(
        peers: &Peers,
        data_dir: &std::path::Path,
        config: &sync_svc::Config,
        retention: &RetentionConfig,
        clock: SharedClock,
    ) -> Self {
        let url = svc_kit::testing::database_url(data_dir, "sync.db").await;
        let mut assembly = svc_kit::testing::bind().await;
        sync_svc::build_with_retention(
            config,
            retention,
            &url,
            &DbOptions::default(),
            sync_svc::Peers { session: peers.session.channel(), room: peers.room_server.channel() },
            AdminToken::new(Some(ADMIN_TOKEN)),
            clock,
            &mut assembly,
        )
        .await
        .unwrap();
        Self { server: TestServer::spawn(assembly) }
    }

    pub fn client(&self) -> SyncServiceClient<Channel> {
        SyncServiceClient::new(self.server.channel())
    }

    pub fn admin(&self) -> SyncAdminServiceClient<Channel> {
        SyncAdminServiceClient::new(self.server.channel())
    }

    /// The `/metrics` page over plain HTTP/1.1.
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.server.addr).await.unwrap();
        let request = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.server.addr);
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut body = String::new();
        stream.read_to_string(&mut body).await.unwrap();
        body
    }
}

pub fn with_token<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
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
            pb::watch_room_response::Event::Presence(_) | pb::watch_room_response::Event::Heartbeat(_) => {}
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
