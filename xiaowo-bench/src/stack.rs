//! The system under test: a `xiaowo up` process this tool starts (pinned to the server's core)
//! or services already running elsewhere, plus the gRPC plumbing every scenario shares.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use proto::room::v1 as room_pb;
use proto::session::v1 as session_pb;
use proto::sync::v1 as sync_pb;
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};

/// Where the services under test listen, and which processes to charge their CPU to.
#[derive(Debug, Clone)]
pub struct Targets {
    /// session-svc and room-svc (setup calls).
    pub control_url: String,
    /// sync-svc instances; watchers are spread over them round-robin, commands go to the first.
    pub sync_urls: Vec<String>,
    /// chat-svc's URL.
    pub chat_url: String,
    /// The server processes whose CPU and memory are read from `/proc`.
    pub pids: Vec<u32>,
}

/// How to start `xiaowo up` for a scenario.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `xiaowo` binary.
    pub binary: PathBuf,
    /// The CPU the server is pinned to with `taskset` (none: not pinned).
    pub cpu: Option<usize>,
}

/// A running `xiaowo up` with its own data directory, stopped when dropped.
pub struct Server {
    child: Child,
    data_dir: tempfile::TempDir,
    /// Its address and pid, as targets.
    pub targets: Targets,
}

impl Launcher {
    /// Starts `xiaowo up` on a free loopback port with limits opened for load (session
    /// creation, chat and sync flood limits, room size, connections per address) and waits
    /// until its health check says SERVING.
    pub async fn start(&self, extra_args: &[&str]) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let data_dir = tempfile::Builder::new().prefix("xiaowo-bench-").tempdir()?;
        let mut command = match self.cpu {
            Some(cpu) => {
                let mut taskset = Command::new("taskset");
                taskset.arg("-c").arg(cpu.to_string()).arg(&self.binary);
                taskset
            }
            None => Command::new(&self.binary),
        };
        command
            .arg("up")
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data-dir")
            .arg(data_dir.path())
            .arg("--web-dir")
            .arg(data_dir.path().join("no-web-client"))
            .args(["--session-create-burst", "1000000", "--session-create-per-minute", "100000000"])
            .args(["--chat-flood-burst", "1000000", "--chat-flood-per-second", "1000000"])
            .args(["--sync-command-burst", "1000000", "--sync-commands-per-second", "1000000"])
            .args(["--room-max-members", "1000", "--max-concurrent-streams", "1000"])
            .args([
                "--room-creates-per-caller",
                "0",
                "--room-creates-per-address",
                "0",
                "--room-max-open-per-owner",
                "0",
            ])
            // Every benchmark connection comes from 127.0.0.1, as from a proxy.
            .args(["--max-connections-per-ip", "0"])
            .args(extra_args)
            .env("XIAOWO_LOG", "warn")
            .stdin(std::process::Stdio::null())
            // Its warnings (no web client here) would interleave with the tables.
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("cannot start {}", self.binary.display()))?;
        // taskset execs the binary, so its pid is the server's.
        let pid = child.id().context("server exited at once")?;
        let url = format!("http://127.0.0.1:{port}");
        let targets =
            Targets { control_url: url.clone(), sync_urls: vec![url.clone()], chat_url: url, pids: vec![pid] };
        let server = Server { child, data_dir, targets };
        wait_until_serving(&server.targets.control_url).await?;
        Ok(server)
    }
}

impl Server {
    /// The data directory (its `chat.db` gives the SQLite ceiling the same schema).
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// Stops the server and waits for it to exit.
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

async fn wait_until_serving(url: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel(url)?);
        if let Ok(response) = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await
            && response.into_inner().status == tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{url} did not become healthy within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A lazily connecting channel of its own (one HTTP/2 connection).
pub fn channel(url: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(10))
        .tcp_nodelay(true)
        .http2_adaptive_window(true)
        .connect_lazy())
}

/// A request carrying the caller's bearer token.
pub fn bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Ok(value) = format!("Bearer {token}").parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// A new anonymous session's token and user id.
pub async fn create_session(channel: &Channel, name: &str) -> anyhow::Result<(String, String)> {
    let mut sessions = session_pb::session_service_client::SessionServiceClient::new(channel.clone());
    let response =
        sessions.create_session(session_pb::CreateSessionRequest { display_name: name.to_owned() }).await?.into_inner();
    let user_id = response.session.map(|session| session.user_id).unwrap_or_default();
    Ok((response.token, user_id))
}

/// Creates a public room owned by the token's user and returns its id.
pub async fn create_room(channel: &Channel, token: &str, name: &str) -> anyhow::Result<String> {
    let mut rooms = room_pb::room_service_client::RoomServiceClient::new(channel.clone());
    let request = room_pb::CreateRoomRequest { name: name.to_owned(), ..Default::default() };
    let response = rooms.create_room(bearer(request, token)).await?.into_inner();
    response.room.map(|room| room.room_id).context("CreateRoom answered without a room")
}

/// Joins a room.
pub async fn join_room(channel: &Channel, token: &str, room_id: &str) -> anyhow::Result<()> {
    let mut rooms = room_pb::room_service_client::RoomServiceClient::new(channel.clone());
    let request = room_pb::JoinRoomRequest { room_id: room_id.to_owned(), password: String::new() };
    rooms.join_room(bearer(request, token)).await?;
    Ok(())
}

/// Loads media into a room so that seeks apply; returns the room's version afterwards.
pub async fn load_media(channel: &Channel, token: &str, room_id: &str) -> anyhow::Result<i64> {
    let mut sync = sync_pb::sync_service_client::SyncServiceClient::new(channel.clone());
    let request = sync_pb::ChangeMediaRequest {
        room_id: room_id.to_owned(),
        expected_version: 0,
        url: "https://media.example/bench.webm".to_owned(),
        title: "Bench".to_owned(),
        duration_ms: 0,
        library_item_id: String::new(),
    };
    let response = sync.change_media(bearer(request, token)).await?.into_inner();
    Ok(response.state.map_or(0, |state| state.version))
}

/// Rooms owned by one session each, with media loaded: `(token, room_id, version)`.
pub async fn media_rooms(targets: &Targets, count: usize) -> anyhow::Result<Vec<(String, String, i64)>> {
    owned_rooms(targets, count, true).await
}

/// Rooms owned by one session each, with media loaded when `with_media`:
/// `(token, room_id, version)`.
pub async fn owned_rooms(
    targets: &Targets,
    count: usize,
    with_media: bool,
) -> anyhow::Result<Vec<(String, String, i64)>> {
    let control = channel(&targets.control_url)?;
    let sync = channel(&targets.sync_urls[0])?;
    let mut rooms = Vec::with_capacity(count);
    let mut pending = tokio::task::JoinSet::new();
    for index in 0..count {
        let (control, sync) = (control.clone(), sync.clone());
        pending.spawn(async move {
            let (token, _) = create_session(&control, &format!("Host {index}")).await?;
            let room_id = create_room(&control, &token, &format!("Bench room {index}")).await?;
            let version = if with_media { load_media(&sync, &token, &room_id).await? } else { 0 };
            anyhow::Ok((index, token, room_id, version))
        });
        // Bounded setup concurrency: the server is pinned to one core.
        if pending.len() >= 32
            && let Some(done) = pending.join_next().await
        {
            rooms.push(done??);
        }
    }
    while let Some(done) = pending.join_next().await {
        rooms.push(done??);
    }
    rooms.sort_by_key(|(index, ..)| *index);
    Ok(rooms.into_iter().map(|(_, token, room_id, version)| (token, room_id, version)).collect())
}

/// `per_room` people in each of `room_ids`, each with their own session and joined to the room,
/// as rooms are in life: every one of them is a distinct member with their own access check.
/// Their tokens, room by room.
pub async fn room_members(targets: &Targets, room_ids: &[String], per_room: usize) -> anyhow::Result<Vec<Vec<String>>> {
    let control = channel(&targets.control_url)?;
    let mut members: Vec<Vec<Option<String>>> = room_ids.iter().map(|_| vec![None; per_room]).collect();
    let mut pending = tokio::task::JoinSet::new();
    let mut place = |done: anyhow::Result<(usize, usize, String)>| -> anyhow::Result<()> {
        let (room, slot, token) = done?;
        members[room][slot] = Some(token);
        Ok(())
    };
    for (room, room_id) in room_ids.iter().enumerate() {
        for slot in 0..per_room {
            let (control, room_id) = (control.clone(), room_id.clone());
            pending.spawn(async move {
                let (token, _) = create_session(&control, &format!("Member {slot} of room {room}")).await?;
                join_room(&control, &token, &room_id).await?;
                anyhow::Ok((room, slot, token))
            });
            // Bounded setup concurrency: the server is pinned to one core.
            if pending.len() >= 32
                && let Some(done) = pending.join_next().await
            {
                place(done?)?;
            }
        }
    }
    while let Some(done) = pending.join_next().await {
        place(done?)?;
    }
    Ok(members.into_iter().map(|room| room.into_iter().flatten().collect()).collect())
}
