//! The chat tests' app: a real session-svc and room-svc in one server, and chat-svc in
//! another (so it can be restarted over the same database, or run twice), all started by a
//! [`Stack`] as an install starts them.

//! The harness for chat-svc's integration tests: a real session-svc and room-svc on one
//! loopback server, and chat-svc on another (so it can be restarted over the same database),
//! all on port 0 over fresh SQLite files in a temporary directory, or a fresh PostgreSQL
//! database when `XIAOWO_TEST_POSTGRES` is set.

use std::time::Duration;

use proto::chat::v1 as pb;
use proto::chat::v1::chat_admin_service_client::ChatAdminServiceClient;
use proto::chat::v1::chat_service_client::ChatServiceClient;
use proto::chat::v1::watch_messages_response::Event;
use proto::room::v1 as room_pb;
use proto::room::v1::room_service_client::RoomServiceClient;
use svc_kit::retention::RetentionConfig;
use tonic::transport::Channel;
use tonic::{Status, Streaming};
use xiaowo::node::Target;
use xiaowo::testing::{Node, Stack};

pub use svc_kit::testing::{code, violations};
pub use xiaowo::testing::{START_MS, User, as_admin, as_user};

const WAIT: Duration = svc_kit::testing::PATIENCE;

pub struct TestApp {
    pub stack: Stack,
    pub peers: Node,
    pub chat: Option<Node>,
    pub config: chat_svc::Config,
    /// What chat-svc prunes; nothing unless a test sets it before (re)starting chat-svc.
    pub retention: RetentionConfig,
}

/// Settings for tests: a flood limit out of the way unless a test sets one.
pub fn test_config() -> chat_svc::Config {
    let mut config: chat_svc::Config = svc_kit::testing::from_env();
    config.flood_burst = 10_000;
    config.flood_per_second = 10_000.0;
    config
}

impl TestApp {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut chat_svc::Config)) -> Self {
        Self::start_in(Stack::new().await, configure).await
    }

    /// With session-svc's and room-svc's limits on creating sessions and rooms lifted, for
    /// tests that set up crowds from one address.
    pub async fn start_for_crowds() -> Self {
        let stack = Stack::new().await.with(|common| {
            common.session.create_burst = 1_000_000;
            common.session.create_per_minute = 1_000_000;
            common.room.creates_per_caller = 0;
            common.room.creates_per_address = 0;
            common.room.max_open_per_owner = 0;
        });
        Self::start_in(stack, |_| {}).await
    }

    async fn start_in(stack: Stack, configure: impl FnOnce(&mut chat_svc::Config)) -> Self {
        let peers = stack.start(&[Target::Session, Target::Room]).await;
        let mut config = test_config();
        configure(&mut config);
        let mut app = Self { stack, peers, chat: None, config, retention: RetentionConfig::keep_everything() };
        app.start_chat().await;
        app
    }

    /// Starts chat-svc over the test's database and waits until it follows room events.
    pub async fn start_chat(&mut self) {
        self.chat = Some(self.spawn_chat().await);
    }

    /// One more chat-svc instance over the same database, as another host would run it;
    /// returned once it follows room events.
    pub async fn spawn_chat(&self) -> Node {
        let chat = self
            .stack
            .start_with(&[Target::Chat], |common| {
                common.chat = self.config.clone();
                common.retention = self.retention.clone();
            })
            .await;
        let deadline = tokio::time::Instant::now() + WAIT;
        while metric(&chat.metrics().await, "xiaowo_chat_room_events_connected") < 1.0 {
            assert!(tokio::time::Instant::now() < deadline, "chat-svc never subscribed to room events");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        chat
    }

    /// Stops chat-svc (draining) and starts it again over the same database.
    pub async fn restart_chat(&mut self) {
        if let Some(chat) = self.chat.take() {
            chat.stop().await;
        }
        self.start_chat().await;
    }

    pub fn chat_server(&self) -> &Node {
        self.chat.as_ref().expect("chat-svc running")
    }

    pub fn chat(&self) -> ChatServiceClient<Channel> {
        ChatServiceClient::new(self.chat_server().channel())
    }

    pub fn chat_admin(&self) -> ChatAdminServiceClient<Channel> {
        ChatAdminServiceClient::new(self.chat_server().channel())
    }

    pub fn rooms(&self) -> RoomServiceClient<Channel> {
        RoomServiceClient::new(self.peers.channel())
    }

    pub async fn user(&self, name: &str) -> User {
        self.stack.user(name).await
    }

    /// A public room owned by `owner`, joined by `members`; its id.
    pub async fn room(&self, owner: &User, members: &[&User]) -> String {
        let request = room_pb::CreateRoomRequest { name: "chat".to_owned(), ..Default::default() };
        let room = self.rooms().create_room(as_user(request, owner)).await.unwrap().into_inner().room.unwrap();
        for member in members {
            let join = room_pb::JoinRoomRequest { room_id: room.room_id.clone(), password: String::new() };
            self.rooms().join_room(as_user(join, member)).await.unwrap();
        }
        room.room_id
    }

    pub async fn make_moderator(&self, owner: &User, room_id: &str, member: &User) {
        let request = room_pb::SetMemberRoleRequest {
            room_id: room_id.to_owned(),
            user_id: member.user_id.clone(),
            role: room_pb::Role::Moderator.into(),
        };
        self.rooms().set_member_role(as_user(request, owner)).await.unwrap();
    }

    pub async fn send(
        &self,
        user: &User,
        room_id: &str,
        text: &str,
        id: &str,
    ) -> Result<pb::SendMessageResponse, Status> {
        let request = pb::SendMessageRequest {
            room_id: room_id.to_owned(),
            text: text.to_owned(),
            client_message_id: id.to_owned(),
        };
        Ok(self.chat().send_message(as_user(request, user)).await?.into_inner())
    }

    /// Sends and returns the stored message's seq.
    pub async fn say(&self, user: &User, room_id: &str, text: &str) -> i64 {
        let id = uuid::Uuid::new_v4().to_string();
        self.send(user, room_id, text, &id).await.unwrap().message.unwrap().seq
    }

    pub async fn watch(
        &self,
        user: &User,
        room_id: &str,
        after_seq: Option<i64>,
    ) -> Result<Streaming<pb::WatchMessagesResponse>, Status> {
        let request = pb::WatchMessagesRequest { room_id: room_id.to_owned(), after_seq };
        Ok(self.chat().watch_messages(as_user(request, user)).await?.into_inner())
    }

    pub async fn history(
        &self,
        user: &User,
        room_id: &str,
        before_seq: i64,
        page_size: i32,
    ) -> Result<pb::ListMessagesResponse, Status> {
        let request = pb::ListMessagesRequest { room_id: room_id.to_owned(), before_seq, page_size };
        Ok(self.chat().list_messages(as_user(request, user)).await?.into_inner())
    }

    /// chat-svc's `/metrics` page.
    pub async fn chat_metrics(&self) -> String {
        self.chat_server().metrics().await
    }
}

/// The value of a metric in a `/metrics` text (0 when absent).
pub fn metric(text: &str, name: &str) -> f64 {
    svc_kit::testing::metric(text, name).unwrap_or(0.0)
}

/// The next event on a watch stream, or the status it ended with.
pub async fn next_event(stream: &mut Streaming<pb::WatchMessagesResponse>) -> Result<Event, Status> {
    let message = tokio::time::timeout(WAIT, stream.message()).await.expect("an event in time")?;
    Ok(message.expect("stream still open").event.expect("an event"))
}

/// The next event that is not a heartbeat.
pub async fn next_change(stream: &mut Streaming<pb::WatchMessagesResponse>) -> Result<Event, Status> {
    loop {
        match next_event(stream).await? {
            Event::Heartbeat(_) => {}
            event => return Ok(event),
        }
    }
}

/// The messages up to the `CaughtUp` marker, and the marker's latest seq.
pub async fn replayed(stream: &mut Streaming<pb::WatchMessagesResponse>) -> (Vec<pb::Message>, i64) {
    let mut messages = Vec::new();
    loop {
        match next_change(stream).await.unwrap() {
            Event::Message(message) => messages.push(message),
            Event::CaughtUp(pb::CaughtUp { latest_seq }) => return (messages, latest_seq),
            _ => {}
        }
    }
}

/// The next message on a stream, skipping other events.
pub async fn next_message(stream: &mut Streaming<pb::WatchMessagesResponse>) -> Result<pb::Message, Status> {
    loop {
        if let Event::Message(message) = next_change(stream).await? {
            return Ok(message);
        }
    }
}
