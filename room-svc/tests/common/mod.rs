//! The harness for room-svc's integration tests: a real session-svc and a real room-svc in one
//! server on a loopback port, over fresh SQLite files (or a fresh PostgreSQL database when
//! `XIAOWO_TEST_POSTGRES` is set), driven through generated clients.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use proto::room::v1 as pb;
use proto::room::v1::room_admin_service_client::RoomAdminServiceClient;
use proto::room::v1::room_internal_service_client::RoomInternalServiceClient;
use proto::room::v1::room_service_client::RoomServiceClient;
use proto::session::v1 as session_pb;
use proto::session::v1::session_service_client::SessionServiceClient;
use svc_kit::auth::AdminToken;
use svc_kit::clock::{ManualClock, SharedClock};
use svc_kit::db::DbOptions;
use svc_kit::retention::RetentionConfig;
use svc_kit::testing::TestServer;
use tonic::transport::Channel;
use tonic::{Request, Status};

pub const ADMIN_TOKEN: &str = "room-test-admin";
pub const START_MS: i64 = 1_800_000_000_000;

pub struct TestApp {
    pub server: TestServer,
    pub clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

/// A session: its token and public id.
#[derive(Debug, Clone)]
pub struct User {
    pub token: String,
    pub user_id: String,
}

/// Settings for tests: the cheapest bcrypt cost, a fast janitor, no room creation limits.
pub fn test_config() -> room_svc::Config {
    let mut config: room_svc::Config = svc_kit::config::from_env();
    config.bcrypt_cost = 4;
    config.janitor_interval = Duration::from_millis(50);
    // Tests open many rooms from one session; the creation limits have tests of their own.
    config.creates_per_caller = 0;
    config.creates_per_address = 0;
    config.max_open_per_owner = 0;
    config
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut room_svc::Config)) -> Self {
        Self::start_with_retention(configure, RetentionConfig::keep_everything()).await
    }

    pub async fn start_with_retention(
        configure: impl FnOnce(&mut room_svc::Config),
        retention: RetentionConfig,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(START_MS);
        let shared: SharedClock = clock.clone();
        let mut config = test_config();
        configure(&mut config);
        let mut assembly = svc_kit::testing::bind().await;
        let session_config: session_svc::Config = svc_kit::config::from_env();
        session_svc::build(
            &session_config,
            &svc_kit::testing::database_url(dir.path(), "session.db").await,
            &DbOptions::default(),
            AdminToken::new(Some(ADMIN_TOKEN)),
            shared.clone(),
            &mut assembly,
        )
        .await
        .unwrap();
        let session_channel = svc_kit::peer::channel(&assembly.local_url(), Duration::from_secs(5)).unwrap();
        room_svc::build_with_retention(
            &config,
            &retention,
            &svc_kit::testing::database_url(dir.path(), "room.db").await,
            &DbOptions::default(),
            session_channel,
            AdminToken::new(Some(ADMIN_TOKEN)),
            shared,
            &mut assembly,
        )
        .await
        .unwrap();
        Self { server: TestServer::spawn(assembly), clock, _dir: dir }
    }

    pub fn rooms(&self) -> RoomServiceClient<Channel> {
        RoomServiceClient::new(self.server.channel())
    }

    pub fn internal(&self) -> RoomInternalServiceClient<Channel> {
        RoomInternalServiceClient::new(self.server.channel())
    }

    pub fn admin(&self) -> RoomAdminServiceClient<Channel> {
        RoomAdminServiceClient::new(self.server.channel())
    }

    pub async fn user(&self, name: &str) -> User {
        let response = SessionServiceClient::new(self.server.channel())
            .create_session(session_pb::CreateSessionRequest { display_name: name.to_owned() })
            .await
            .unwrap()
            .into_inner();
        User { token: response.token, user_id: response.session.unwrap().user_id }
    }

    pub async fn create_room(&self, owner: &User, request: pb::CreateRoomRequest) -> pb::Room {
        self.rooms().create_room(as_user(request, owner)).await.unwrap().into_inner().room.unwrap()
    }

    /// A public room with no password, controlled by everyone.
    pub async fn open_room(&self, owner: &User, name: &str) -> pb::Room {
        self.create_room(owner, pb::CreateRoomRequest { name: name.to_owned(), ..Default::default() }).await
    }

    pub async fn join(&self, user: &User, room_id: &str, password: &str) -> Result<pb::JoinRoomResponse, Status> {
        let request = pb::JoinRoomRequest { room_id: room_id.to_owned(), password: password.to_owned() };
        Ok(self.rooms().join_room(as_user(request, user)).await?.into_inner())
    }

    /// Joins as `user` calling from `address` (as nginx, a trusted loopback proxy, reports it).
    pub async fn join_from(
        &self,
        user: &User,
        address: &str,
        room_id: &str,
        password: &str,
    ) -> Result<pb::JoinRoomResponse, Status> {
        let request = pb::JoinRoomRequest { room_id: room_id.to_owned(), password: password.to_owned() };
        Ok(self.rooms().join_room(from_address(as_user(request, user), address)).await?.into_inner())
    }

    /// Creates a room as `user` calling from `address`.
    pub async fn create_from(&self, user: &User, address: &str, name: &str) -> Result<pb::Room, Status> {
        let request = pb::CreateRoomRequest { name: name.to_owned(), ..Default::default() };
        let response = self.rooms().create_room(from_address(as_user(request, user), address)).await?;
        Ok(response.into_inner().room.unwrap())
    }

    pub async fn get(&self, user: &User, room_id: &str) -> Result<pb::GetRoomResponse, Status> {
        let request = pb::GetRoomRequest { room_id: room_id.to_owned() };
        Ok(self.rooms().get_room(as_user(request, user)).await?.into_inner())
    }

    pub async fn set_role(&self, actor: &User, room_id: &str, target: &User, role: pb::Role) -> Result<(), Status> {
        let request = pb::SetMemberRoleRequest {
            room_id: room_id.to_owned(),
            user_id: target.user_id.clone(),
            role: role.into(),
        };
        self.rooms().set_member_role(as_user(request, actor)).await.map(|_| ())
    }

    pub async fn access(&self, room_id: &str, user: &User) -> pb::CheckAccessResponse {
        self.internal()
            .check_access(pb::CheckAccessRequest { room_id: room_id.to_owned(), user_id: user.user_id.clone() })
            .await
            .unwrap()
            .into_inner()
    }

    /// Every audit row of a room, oldest first, through the admin API.
    pub async fn audit(&self, room_id: &str) -> Vec<pb::AuditLog> {
        let request = pb::ListAuditLogsRequest { room_id: room_id.to_owned(), page_size: 500, ..Default::default() };
        self.admin().list_audit_logs(as_admin(request)).await.unwrap().into_inner().audit_logs
    }

    pub async fn audit_actions(&self, room_id: &str) -> Vec<String> {
        self.audit(room_id).await.into_iter().map(|row| row.action).collect()
    }

    /// `GET /metrics` over plain HTTP/1.1 (on a blocking thread: the server shares this runtime).
    pub async fn metrics(&self) -> String {
        let addr = self.server.addr;
        tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(addr).unwrap();
            write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
            let mut response = String::new();
            stream.read_to_string(&mut response).unwrap();
            response
        })
        .await
        .unwrap()
    }
}

/// The value of a metric's first series in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| line.strip_prefix(name))
        .find_map(|rest| match rest.strip_prefix('{') {
            Some(labelled) => labelled.split_once("} ").map(|(_, value)| value),
            None => rest.strip_prefix(' '),
        })
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("metric {name} missing"))
}

/// The next room event that is not a heartbeat, within a bounded wait.
pub async fn next_change(stream: &mut tonic::Streaming<pb::WatchRoomEventsResponse>) -> pb::WatchRoomEventsResponse {
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("stream still open");
        if !matches!(message.event, Some(pb::watch_room_events_response::Event::Heartbeat(_))) {
            return message;
        }
    }
}

#[allow(unused_imports)] // not every test binary uses both
pub use svc_kit::testing::{code, violations};

pub fn as_user<T>(message: T, user: &User) -> Request<T> {
    svc_kit::testing::with_bearer(message, &user.token)
}

/// `request` as forwarded by a proxy on loopback for a client at `address`.
pub fn from_address<T>(mut request: Request<T>, address: &str) -> Request<T> {
    request.metadata_mut().insert("x-forwarded-for", address.parse().unwrap());
    request
}

pub fn as_admin<T>(message: T) -> Request<T> {
    svc_kit::testing::with_bearer(message, ADMIN_TOKEN)
}
