//! sync-svc against the real room-svc and session-svc: access follows room-svc's members,
//! roles and control mode, and room-svc's events end the streams of kicked members and closed
//! rooms.

use std::time::Duration;

use proto::room::v1 as room_pb;
use proto::room::v1::room_service_client::RoomServiceClient;
use proto::sync::v1 as pb;
use proto::sync::v1::sync_service_client::SyncServiceClient;
use tonic::Code;
use tonic::transport::Channel;
use xiaowo::node::Target;
use xiaowo::testing::{Node, User, as_user};

struct Stack {
    stack: xiaowo::testing::Stack,
    peers: Node,
    sync: Node,
}

impl Stack {
    /// session-svc and room-svc in one server, sync-svc in another, each on port 0.
    async fn start() -> Self {
        let stack = xiaowo::testing::Stack::new().await.on_system_clock();
        let peers = stack.start(&[Target::Session, Target::Room]).await;
        let sync =
            stack.start_with(&[Target::Sync], |common| common.sync.access_cache_ttl = Duration::from_secs(60)).await;
        Self { stack, peers, sync }
    }

    fn rooms(&self) -> RoomServiceClient<Channel> {
        RoomServiceClient::new(self.peers.channel())
    }

    fn sync(&self) -> SyncServiceClient<Channel> {
        SyncServiceClient::new(self.sync.channel())
    }

    async fn user(&self, name: &str) -> User {
        self.stack.user(name).await
    }

    async fn open_room(&self, owner: &User) -> String {
        let request = room_pb::CreateRoomRequest { name: "Film night".to_owned(), ..Default::default() };
        let created = self.rooms().create_room(as_user(request, owner)).await.unwrap().into_inner();
        created.room.unwrap().room_id
    }

    async fn join(&self, user: &User, room_id: &str) {
        let request = room_pb::JoinRoomRequest { room_id: room_id.to_owned(), password: String::new() };
        self.rooms().join_room(as_user(request, user)).await.unwrap();
    }

    async fn seek(&self, user: &User, room_id: &str, version: i64) -> Result<pb::RoomState, tonic::Status> {
        let request = pb::SeekRequest { room_id: room_id.to_owned(), expected_version: version, position_ms: 1_000 };
        Ok(self.sync().seek(as_user(request, user)).await?.into_inner().state.unwrap())
    }

    async fn load_media(&self, user: &User, room_id: &str) -> pb::RoomState {
        let request = pb::ChangeMediaRequest {
            room_id: room_id.to_owned(),
            expected_version: 0,
            url: "https://media.example/film.webm".to_owned(),
            title: "Film".to_owned(),
            duration_ms: 0,
            library_item_id: String::new(),
        };
        self.sync().change_media(as_user(request, user)).await.unwrap().into_inner().state.unwrap()
    }

    async fn watch(&self, user: &User, room_id: &str) -> tonic::Streaming<pb::WatchRoomResponse> {
        let request = pb::WatchRoomRequest { room_id: room_id.to_owned() };
        let mut events = self.sync().watch_room(as_user(request, user)).await.unwrap().into_inner();
        let first = tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap();
        assert!(matches!(first.unwrap().event, Some(pb::watch_room_response::Event::Snapshot(_))));
        events
    }
}

async fn end_code(events: &mut tonic::Streaming<pb::WatchRoomResponse>) -> Code {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), events.message()).await.expect("the stream ends in time") {
            Ok(Some(_)) => {}
            Ok(None) => panic!("the stream ended without a status"),
            Err(status) => return status.code(),
        }
    }
}

#[tokio::test]
async fn room_svc_decides_who_may_watch_and_control() {
    let stack = Stack::start().await;
    let owner = stack.user("Owner").await;
    let member = stack.user("Member").await;
    let outsider = stack.user("Outsider").await;
    let room_id = stack.open_room(&owner).await;
    stack.join(&member, &room_id).await;

    let loaded = stack.load_media(&owner, &room_id).await;
    let sought = stack.seek(&member, &room_id, loaded.version).await.unwrap();
    assert_eq!(stack.seek(&outsider, &room_id, sought.version).await.unwrap_err().code(), Code::PermissionDenied);

    // Control for the owner only: room-svc's RoomUpdated event drops sync-svc's cached access
    // (cached for a minute here), so the change applies at once.
    let request = room_pb::UpdateRoomRequest {
        room_id: room_id.clone(),
        control_mode: Some(room_pb::ControlMode::Owner.into()),
        ..Default::default()
    };
    stack.rooms().update_room(as_user(request, &owner)).await.unwrap();
    let mut refused = Code::Ok;
    for _ in 0..100 {
        refused = stack.seek(&member, &room_id, sought.version).await.map_or_else(|status| status.code(), |_| Code::Ok);
        if refused == Code::PermissionDenied {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(refused, Code::PermissionDenied);
    stack.seek(&owner, &room_id, sought.version).await.unwrap();

    let unknown = uuid::Uuid::new_v4().to_string();
    assert_eq!(stack.seek(&owner, &unknown, 0).await.unwrap_err().code(), Code::NotFound);
}

#[tokio::test]
async fn kicks_and_closing_in_room_svc_end_sync_streams() {
    let stack = Stack::start().await;
    let owner = stack.user("Owner").await;
    let kicked = stack.user("Kicked").await;
    let room_id = stack.open_room(&owner).await;
    stack.join(&kicked, &room_id).await;
    let mut kicked_events = stack.watch(&kicked, &room_id).await;
    let mut owner_events = stack.watch(&owner, &room_id).await;

    let request = room_pb::KickMemberRequest { room_id: room_id.clone(), user_id: kicked.user_id.clone() };
    stack.rooms().kick_member(as_user(request, &owner)).await.unwrap();
    assert_eq!(end_code(&mut kicked_events).await, Code::PermissionDenied);
    let request = pb::WatchRoomRequest { room_id: room_id.clone() };
    assert_eq!(stack.sync().watch_room(as_user(request, &kicked)).await.unwrap_err().code(), Code::PermissionDenied);

    let request = room_pb::CloseRoomRequest { room_id: room_id.clone() };
    stack.rooms().close_room(as_user(request, &owner)).await.unwrap();
    assert_eq!(end_code(&mut owner_events).await, Code::FailedPrecondition);
}
