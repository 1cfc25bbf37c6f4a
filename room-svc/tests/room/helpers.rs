//! The room tests' app: a real session-svc and a real room-svc in one server, started by a
//! [`Stack`] as an install starts them, driven through generated clients.

use std::sync::Arc;
use std::time::Duration;

use proto::room::v1 as pb;
use proto::room::v1::room_admin_service_client::RoomAdminServiceClient;
use proto::room::v1::room_internal_service_client::RoomInternalServiceClient;
use proto::room::v1::room_service_client::RoomServiceClient;
use svc_kit::clock::ManualClock;
use svc_kit::retention::RetentionConfig;
use tonic::Status;
use tonic::transport::Channel;
use xiaowo::node::Target;
use xiaowo::testing::{InternalChannel, Node, Stack};

pub use svc_kit::testing::{code, violations};
pub use xiaowo::testing::{START_MS, User, as_admin, as_user};

pub struct TestApp {
    pub stack: Stack,
    pub server: Node,
    pub clock: Arc<ManualClock>,
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut room_svc::Config)) -> Self {
        Self::start_with_retention(configure, RetentionConfig::keep_everything()).await
    }

    /// With a fast idle janitor, `configure` applied to room-svc's settings and `retention`.
    pub async fn start_with_retention(
        configure: impl FnOnce(&mut room_svc::Config),
        retention: RetentionConfig,
    ) -> Self {
        let stack = Stack::new().await.with(|common| {
            common.room.janitor_interval = Duration::from_millis(50);
            // Tests open many rooms from one session; the creation limits have tests of their own.
            common.room.creates_per_caller = 0;
            common.room.creates_per_address = 0;
            common.room.max_open_per_owner = 0;
            configure(&mut common.room);
            common.retention = retention;
        });
        let server = stack.start(&[Target::Session, Target::Room]).await;
        let clock = Arc::clone(&stack.clock);
        Self { stack, server, clock }
    }

    pub fn rooms(&self) -> RoomServiceClient<Channel> {
        RoomServiceClient::new(self.server.channel())
    }

    /// room-svc's internal API, called as sync-svc and chat-svc call it (with the internal token).
    pub fn internal(&self) -> RoomInternalServiceClient<InternalChannel> {
        RoomInternalServiceClient::new(self.server.internal_channel())
    }

    pub fn admin(&self) -> RoomAdminServiceClient<Channel> {
        RoomAdminServiceClient::new(self.server.channel())
    }

    pub async fn user(&self, name: &str) -> User {
        self.stack.user(name).await
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

    /// room-svc's `/metrics` page.
    pub async fn metrics(&self) -> String {
        self.server.metrics().await
    }
}

/// The value of a metric's first series in a `/metrics` text.
pub fn metric(text: &str, name: &str) -> f64 {
    svc_kit::testing::metric(text, name).unwrap_or_else(|| panic!("metric {name} missing"))
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

/// `request` as forwarded by a proxy on loopback for a client at `address`.
pub fn from_address<T>(mut request: tonic::Request<T>, address: &str) -> tonic::Request<T> {
    request.metadata_mut().insert("x-forwarded-for", address.parse().unwrap());
    request
}
