//! Two instances of sync-svc and chat-svc (each instance one `xiaowo serve --target sync,chat`
//! process) over one database and a real NATS server, beside one session-svc + room-svc
//! process: commands and chat accepted by one instance reach watchers on the other, a seek
//! race across instances has one winner per version, chat has one gap-free order everywhere,
//! presence is the union and forgets a killed instance, clients of a `kill -9`ed instance
//! resume on the other with nothing acknowledged lost, and after NATS restarts, delivery
//! resumes and what was missed (published by an instance that died during the outage) is
//! repaired from the database.
//!
//! With `XIAOWO_SCALEOUT_NGINX` naming an `nginx` binary, the configuration rendered by
//! deploy/nginx/render.sh is also run in front of both instances: calls are balanced over
//! them, and with room affinity on, calls naming one room all reach one instance.
//!
//! Runs only when `XIAOWO_SCALEOUT_NATS_SERVER` names a `nats-server` binary (scripts/
//! test-scaleout.sh sets it, with `XIAOWO_TEST_POSTGRES` for PostgreSQL); otherwise the
//! instances share SQLite files.

#![allow(clippy::too_many_lines, reason = "one scenario, told in order")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::chat::v1 as chat_pb;
use proto::chat::v1::chat_service_client::ChatServiceClient;
use proto::room::v1 as room_pb;
use proto::room::v1::room_service_client::RoomServiceClient;
use proto::session::v1 as session_pb;
use proto::session::v1::session_service_client::SessionServiceClient;
use proto::sync::v1 as sync_pb;
use proto::sync::v1::sync_service_client::SyncServiceClient;
use svc_kit::testing::{code, eventually, with_bearer};
use tonic::Code;
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// "Eventually" in this test: generous, because two cores are shared with other builds.
const PATIENCE: Duration = Duration::from_secs(20);
/// How long another instance's watchers count without a heartbeat (three heartbeats).
const PRESENCE_EXPIRY: &str = "1500ms";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed (SIGKILL) when dropped.
struct Process {
    child: Child,
}

impl Process {
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

struct NatsServer {
    port: u16,
    binary: String,
    log: PathBuf,
    process: Option<Process>,
}

impl NatsServer {
    fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).unwrap();
        let child = Command::new(&self.binary)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start nats-server");
        self.process = Some(Process { child });
        let deadline = Instant::now() + PATIENCE;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

/// Everything the processes share: the database, peers, NATS.
struct Stack {
    dir: PathBuf,
    database: BTreeMap<&'static str, String>,
    session_url: String,
    room_url: String,
    nats: NatsServer,
}

/// One `xiaowo serve --target sync,chat` process.
struct Instance {
    sync_url: String,
    chat_url: String,
    process: Process,
}

impl Stack {
    fn xiaowo(&self, name: &str, args: &[String]) -> Process {
        let data = self.dir.join(name);
        std::fs::create_dir_all(&data).unwrap();
        let log = std::fs::File::create(self.dir.join(format!("{name}.log"))).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_xiaowo"));
        command
            .arg("serve")
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .args(["--session-url", &self.session_url, "--room-url", &self.room_url, "--nats-url", &self.nats.url()])
            .env("XIAOWO_LOG", "info,async_nats=warn")
            .env("XIAOWO_ADMIN_TOKEN", "scaleout-admin")
            // Each process has its own data directory: they share the token explicitly.
            .env("XIAOWO_INTERNAL_TOKEN", "scaleout-internal")
            .env("XIAOWO_CHAT_FLOOD_BURST", "10000")
            .env("XIAOWO_CHAT_FLOOD_PER_SECOND", "10000")
            .env("XIAOWO_SYNC_COMMAND_BURST", "10000")
            .env("XIAOWO_SYNC_COMMANDS_PER_SECOND", "10000")
            .env("XIAOWO_SYNC_PRESENCE_INTERVAL", "100ms")
            .env("XIAOWO_SYNC_PRESENCE_HEARTBEAT", "500ms")
            .env("XIAOWO_SYNC_PRESENCE_EXPIRY", PRESENCE_EXPIRY)
            .env("XIAOWO_SYNC_ACCESS_CACHE_TTL", "0s")
            .env("XIAOWO_SYNC_WAIT_GRACE", "100ms")
            .env("XIAOWO_SYNC_WAIT_TIMEOUT", "60s")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        for (service, url) in &self.database {
            command.env(format!("XIAOWO_{}_DATABASE_URL", service.to_uppercase()), url);
        }
        Process { child: command.spawn().expect("start xiaowo") }
    }

    async fn instance(&self, name: &str) -> Instance {
        let (sync_port, chat_port) = (free_port(), free_port());
        let process = self.xiaowo(
            name,
            &[
                "--target".into(),
                "sync,chat".into(),
                "--sync-listen".into(),
                format!("127.0.0.1:{sync_port}"),
                "--chat-listen".into(),
                format!("127.0.0.1:{chat_port}"),
            ],
        );
        let instance = Instance {
            sync_url: format!("http://127.0.0.1:{sync_port}"),
            chat_url: format!("http://127.0.0.1:{chat_port}"),
            process,
        };
        wait_serving(&instance.sync_url, &self.dir.join(format!("{name}.log"))).await;
        wait_serving(&instance.chat_url, &self.dir.join(format!("{name}.log"))).await;
        instance
    }
}

async fn wait_serving(url: &str, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(channel) = Channel::from_shared(url.to_owned()).unwrap().connect().await
            && let Ok(response) =
                HealthClient::new(channel).check(tonic_health::pb::HealthCheckRequest::default()).await
            && response.into_inner().status == ServingStatus::Serving as i32
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never served; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn channel(url: &str) -> Channel {
    Channel::from_shared(url.to_owned()).unwrap().connect_lazy()
}

/// What one sync watcher has heard so far.
#[derive(Debug, Default)]
struct SyncHeard {
    /// Versions of every state or snapshot, in arrival order.
    versions: Vec<i64>,
    /// User ids of the latest presence or snapshot.
    watchers: Vec<String>,
    ended: Option<Code>,
}

fn watch_sync(url: &str, room_id: &str, token: &str) -> Arc<Mutex<SyncHeard>> {
    let heard = Arc::new(Mutex::new(SyncHeard::default()));
    let (sink, url, request) = (
        Arc::clone(&heard),
        url.to_owned(),
        with_bearer(sync_pb::WatchRoomRequest { room_id: room_id.to_owned() }, token),
    );
    tokio::spawn(async move {
        let mut stream = match SyncServiceClient::new(channel(&url)).watch_room(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                sink.lock().unwrap().ended = Some(status.code());
                return;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(message)) => {
                    let mut heard = sink.lock().unwrap();
                    let ids = |watchers: &[sync_pb::Watcher]| watchers.iter().map(|w| w.user_id.clone()).collect();
                    match message.event {
                        Some(sync_pb::watch_room_response::Event::Snapshot(snapshot)) => {
                            heard.versions.push(snapshot.state.unwrap().version);
                            heard.watchers = ids(&snapshot.watchers);
                        }
                        Some(sync_pb::watch_room_response::Event::State(state)) => heard.versions.push(state.version),
                        Some(sync_pb::watch_room_response::Event::PresenceDelta(delta)) => {
                            let joined: Vec<String> = ids(&delta.watchers);
                            heard.watchers.retain(|id| !delta.left_user_ids.contains(id) && !joined.contains(id));
                            heard.watchers.extend(joined);
                            heard.watchers.sort();
                        }
                        Some(
                            sync_pb::watch_room_response::Event::Presence(_)
                            | sync_pb::watch_room_response::Event::Heartbeat(_),
                        )
                        | None => {}
                    }
                }
                Ok(None) => {
                    sink.lock().unwrap().ended = Some(Code::Ok);
                    return;
                }
                Err(status) => {
                    sink.lock().unwrap().ended = Some(status.code());
                    return;
                }
            }
        }
    });
    heard
}

/// What one chat watcher has heard so far.
#[derive(Debug, Default)]
struct ChatHeard {
    /// (seq, client message id) of every message, in arrival order.
    messages: Vec<(i64, String)>,
    /// The seq the watch started after.
    after_seq: i64,
    /// Seqs whose status changed to delivered on this stream.
    delivered: Vec<i64>,
    ended: Option<Code>,
}

impl ChatHeard {
    fn last_seq(&self) -> i64 {
        self.messages.last().map_or(self.after_seq, |(seq, _)| *seq)
    }
}

fn watch_chat(url: &str, room_id: &str, token: &str, after_seq: i64) -> Arc<Mutex<ChatHeard>> {
    let heard = Arc::new(Mutex::new(ChatHeard { after_seq, ..ChatHeard::default() }));
    let request =
        with_bearer(chat_pb::WatchMessagesRequest { room_id: room_id.to_owned(), after_seq: Some(after_seq) }, token);
    let (sink, url) = (Arc::clone(&heard), url.to_owned());
    tokio::spawn(async move {
        let mut stream = match ChatServiceClient::new(channel(&url)).watch_messages(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                sink.lock().unwrap().ended = Some(status.code());
                return;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(chat_pb::WatchMessagesResponse {
                    event: Some(chat_pb::watch_messages_response::Event::Message(message)),
                })) => {
                    sink.lock().unwrap().messages.push((message.seq, message.client_message_id));
                }
                Ok(Some(chat_pb::WatchMessagesResponse {
                    event: Some(chat_pb::watch_messages_response::Event::MessageStatusChanged(changed)),
                })) if changed.status == chat_pb::MessageStatus::Delivered as i32 => {
                    sink.lock().unwrap().delivered.push(changed.seq);
                }
                Ok(Some(_)) => {}
                Ok(None) => {
                    sink.lock().unwrap().ended = Some(Code::Ok);
                    return;
                }
                Err(status) => {
                    sink.lock().unwrap().ended = Some(status.code());
                    return;
                }
            }
        }
    });
    heard
}

/// The seqs are 1, 2, … without a gap or a repeat.
fn gap_free_from(messages: &[(i64, String)], first: i64) -> bool {
    messages.iter().enumerate().all(|(index, (seq, _))| *seq == first + i64::try_from(index).unwrap())
}

async fn send(url: &str, room_id: &str, token: &str, id: &str) -> Result<i64, tonic::Status> {
    let request = chat_pb::SendMessageRequest {
        room_id: room_id.to_owned(),
        text: format!("message {id}"),
        client_message_id: id.to_owned(),
    };
    let response = ChatServiceClient::new(channel(url)).send_message(with_bearer(request, token)).await?;
    Ok(response.into_inner().message.unwrap().seq)
}

async fn room_version(url: &str, room_id: &str, token: &str) -> i64 {
    let request = with_bearer(sync_pb::GetRoomStateRequest { room_id: room_id.to_owned() }, token);
    SyncServiceClient::new(channel(url)).get_room_state(request).await.unwrap().into_inner().state.unwrap().version
}

async fn seek(
    url: &str,
    room_id: &str,
    token: &str,
    expected_version: i64,
    position_ms: i64,
) -> Result<i64, tonic::Status> {
    let request = sync_pb::SeekRequest { room_id: room_id.to_owned(), expected_version, position_ms };
    let response = SyncServiceClient::new(channel(url)).seek(with_bearer(request, token)).await?;
    Ok(response.into_inner().state.unwrap().version)
}

/// Every message of the room, oldest first, as the history says.
async fn history(url: &str, room_id: &str, token: &str) -> Vec<(i64, String)> {
    let mut messages = Vec::new();
    let mut before_seq = 0;
    loop {
        let request = chat_pb::ListMessagesRequest { room_id: room_id.to_owned(), before_seq, page_size: 200 };
        let page =
            ChatServiceClient::new(channel(url)).list_messages(with_bearer(request, token)).await.unwrap().into_inner();
        messages.extend(page.messages.into_iter().map(|message| (message.seq, message.client_message_id)));
        if page.next_before_seq == 0 {
            break;
        }
        before_seq = page.next_before_seq;
    }
    messages.reverse();
    messages
}

/// Sum of a service's finished calls of `method` in its `/metrics`.
fn calls_served(url: &str, method: &str) -> u64 {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let mut connection = std::net::TcpStream::connect(address).unwrap();
    write!(connection, "GET /metrics HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut page = String::new();
    connection.read_to_string(&mut page).unwrap();
    let label = format!("method=\"{method}\"");
    page.lines()
        .filter(|line| line.starts_with("xiaowo_grpc_requests_total{") && line.contains(&label))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// nginx as deploy/nginx/render.sh configures it, balancing sync and chat over `sync` and
/// `chat` upstreams; returns the process and its admin (plain gRPC) address.
fn start_nginx(stack: &Stack, nginx: &str, name: &str, sync: &[&Instance], affinity: bool) -> (Process, String) {
    let dir = stack.dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success(), "openssl made a certificate");
    let upstreams = |url: fn(&Instance) -> &str| {
        sync.iter().map(|instance| url(instance).trim_start_matches("http://").to_owned()).collect::<Vec<_>>().join(" ")
    };
    let admin = format!("127.0.0.1:{}", free_port());
    let render = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx/render.sh");
    let rendered = Command::new("bash")
        .arg(render)
        .arg("--standalone")
        .arg(&dir)
        .env("XIAOWO_HTTPS_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("XIAOWO_HTTP_LISTEN", format!("127.0.0.1:{}", free_port()))
        .env("XIAOWO_ADMIN_LISTEN", &admin)
        .env("XIAOWO_TLS_CERT", &cert)
        .env("XIAOWO_TLS_KEY", &key)
        .env("XIAOWO_WEB_ROOT", &dir)
        .env("XIAOWO_SESSION_UPSTREAMS", stack.session_url.trim_start_matches("http://"))
        .env("XIAOWO_ROOM_UPSTREAMS", stack.room_url.trim_start_matches("http://"))
        .env("XIAOWO_SYNC_UPSTREAMS", upstreams(|instance| &instance.sync_url))
        .env("XIAOWO_CHAT_UPSTREAMS", upstreams(|instance| &instance.chat_url))
        .env("XIAOWO_ROOM_AFFINITY", if affinity { "on" } else { "off" })
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(rendered.success(), "render.sh");
    let log = std::fs::File::create(dir.join("nginx.out")).unwrap();
    let child = Command::new(nginx)
        .arg("-p")
        .arg(&dir)
        .args(["-c", "nginx.conf"])
        // One process: killing it (as the test and `Drop` do) must not leave workers behind
        // that hold the listening ports.
        .args(["-g", "master_process off;"])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start nginx");
    let deadline = Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(&admin).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not listen; {}",
            std::fs::read_to_string(dir.join("nginx.out")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (Process { child }, format!("http://{admin}"))
}

/// How many of `calls` GetRoomState calls through `proxy` (with `room_header` as
/// x-xiaowo-room, if any) each instance served.
async fn spread(proxy: &str, instances: &[&Instance], room_id: &str, token: &str, room_header: bool) -> Vec<u64> {
    let before: Vec<u64> = instances.iter().map(|instance| calls_served(&instance.sync_url, "GetRoomState")).collect();
    let mut client = SyncServiceClient::new(channel(proxy));
    for _ in 0..20 {
        let mut request = with_bearer(sync_pb::GetRoomStateRequest { room_id: room_id.to_owned() }, token);
        if room_header {
            request.metadata_mut().insert("x-xiaowo-room", room_id.parse().unwrap());
        }
        client.get_room_state(request).await.unwrap();
    }
    instances
        .iter()
        .zip(before)
        .map(|(instance, before)| calls_served(&instance.sync_url, "GetRoomState") - before)
        .collect()
}

async fn create_session(url: &str, name: &str) -> (String, String) {
    let request = session_pb::CreateSessionRequest { display_name: name.to_owned() };
    let created = SessionServiceClient::new(channel(url)).create_session(request).await.unwrap().into_inner();
    (created.session.unwrap().user_id, created.token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_rooms_through_nats_and_survive_a_kill_and_a_broker_restart() {
    let Ok(nats_binary) = std::env::var("XIAOWO_SCALEOUT_NATS_SERVER") else {
        println!("skipped: XIAOWO_SCALEOUT_NATS_SERVER is not set (scripts/test-scaleout.sh sets it)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let mut database = BTreeMap::new();
    for service in ["session", "room", "sync", "chat"] {
        database.insert(service, svc_kit::testing::database_url(&shared, &format!("{service}.db")).await);
    }
    let (session_port, room_port) = (free_port(), free_port());
    let mut stack = Stack {
        dir: dir.path().to_path_buf(),
        database,
        session_url: format!("http://127.0.0.1:{session_port}"),
        room_url: format!("http://127.0.0.1:{room_port}"),
        nats: NatsServer { port: free_port(), binary: nats_binary, log: dir.path().join("nats.log"), process: None },
    };
    stack.nats.start();
    let _rooms = stack.xiaowo(
        "session-room",
        &[
            "--target".into(),
            "session,room".into(),
            "--session-listen".into(),
            format!("127.0.0.1:{session_port}"),
            "--room-listen".into(),
            format!("127.0.0.1:{room_port}"),
        ],
    );
    wait_serving(&stack.room_url, &dir.path().join("session-room.log")).await;
    let mut a = stack.instance("a").await;
    let mut b = stack.instance("b").await;

    let (alice, alice_token) = create_session(&stack.session_url, "alice").await;
    let (bob, bob_token) = create_session(&stack.session_url, "bob").await;
    let request = room_pb::CreateRoomRequest { name: "scale-out".into(), ..Default::default() };
    let mut rooms = RoomServiceClient::new(channel(&stack.room_url));
    let room = rooms.create_room(with_bearer(request, &alice_token)).await.unwrap().into_inner().room.unwrap();
    let room_id = room.room_id;
    let join = room_pb::JoinRoomRequest { room_id: room_id.clone(), password: String::new() };
    rooms.join_room(with_bearer(join, &bob_token)).await.unwrap();

    // --- sync: a command accepted by A reaches a watcher on B; presence is the union -------------
    let alice_on_a = watch_sync(&a.sync_url, &room_id, &alice_token);
    let bob_on_b = watch_sync(&b.sync_url, &room_id, &bob_token);
    eventually("both sync watchers have their snapshot", async || {
        !alice_on_a.lock().unwrap().versions.is_empty() && !bob_on_b.lock().unwrap().versions.is_empty()
    })
    .await;
    let change = sync_pb::ChangeMediaRequest {
        room_id: room_id.clone(),
        expected_version: room_version(&a.sync_url, &room_id, &alice_token).await,
        url: "https://media.example/film.mp4".into(),
        title: "film".into(),
        duration_ms: 600_000,
        library_item_id: String::new(),
    };
    let changed = SyncServiceClient::new(channel(&a.sync_url))
        .change_media(with_bearer(change, &alice_token))
        .await
        .unwrap()
        .into_inner()
        .state
        .unwrap()
        .version;
    eventually("B's watcher hears the change A accepted", async || {
        bob_on_b.lock().unwrap().versions.contains(&changed)
    })
    .await;
    let mut both = vec![alice.clone(), bob.clone()];
    both.sort();
    eventually("presence on A and on B lists both watchers", async || {
        alice_on_a.lock().unwrap().watchers == both && bob_on_b.lock().unwrap().watchers == both
    })
    .await;

    // --- nginx in front: balanced, and room-affine when asked ----------------------------------
    if let Ok(nginx) = std::env::var("XIAOWO_SCALEOUT_NGINX") {
        let both_instances = [&a, &b];
        let (mut balancing, proxy) = start_nginx(&stack, &nginx, "nginx-balanced", &both_instances, false);
        let served = spread(&proxy, &both_instances, &room_id, &alice_token, false).await;
        assert!(served.iter().all(|count| *count > 0), "both instances serve: {served:?}");
        assert_eq!(served.iter().sum::<u64>(), 20);
        balancing.kill();
        let (mut affine, proxy) = start_nginx(&stack, &nginx, "nginx-affine", &both_instances, true);
        let served = spread(&proxy, &both_instances, &room_id, &alice_token, true).await;
        assert!(served.contains(&20) && served.contains(&0), "one room, one instance: {served:?}");
        let served = spread(&proxy, &both_instances, &room_id, &alice_token, false).await;
        assert!(served.iter().all(|count| *count > 0), "calls without a room are spread: {served:?}");
        affine.kill();
    }

    // --- a seek race across instances: one winner per version ----------------------------------
    let rounds = 10;
    let start = room_version(&b.sync_url, &room_id, &bob_token).await;
    for round in 0..rounds {
        let expected = start + round;
        let (on_a, on_b) = tokio::join!(
            seek(&a.sync_url, &room_id, &alice_token, expected, 1_000 + round),
            seek(&b.sync_url, &room_id, &bob_token, expected, 2_000 + round),
        );
        let codes = [code(on_a.clone()), code(on_b.clone())];
        assert!(codes.contains(&Code::Ok) && codes.contains(&Code::Aborted), "round {round}: {codes:?}");
        assert_eq!(on_a.or(on_b).unwrap(), expected + 1);
    }
    let raced = start + rounds;
    assert_eq!(room_version(&a.sync_url, &room_id, &alice_token).await, raced);
    for (name, heard) in [("A", &alice_on_a), ("B", &bob_on_b)] {
        eventually(&format!("{name}'s watcher reaches the last version"), async || {
            heard.lock().unwrap().versions.last() == Some(&raced)
        })
        .await;
        let versions = heard.lock().unwrap().versions.clone();
        assert!(versions.windows(2).all(|pair| pair[0] < pair[1]), "{name} heard versions out of order: {versions:?}");
    }

    // --- chat from both instances: one gap-free order everywhere --------------------------------
    let alice_chat_a = watch_chat(&a.chat_url, &room_id, &alice_token, 0);
    let bob_chat_b = watch_chat(&b.chat_url, &room_id, &bob_token, 0);
    let per_sender = 15;
    let from_a = async {
        for i in 0..per_sender {
            send(&a.chat_url, &room_id, &alice_token, &format!("a-{i}")).await.unwrap();
        }
    };
    let from_b = async {
        for i in 0..per_sender {
            send(&b.chat_url, &room_id, &bob_token, &format!("b-{i}")).await.unwrap();
        }
    };
    tokio::join!(from_a, from_b);
    let total = 2 * per_sender;
    eventually("both chat watchers have every message", async || {
        alice_chat_a.lock().unwrap().messages.len() >= total && bob_chat_b.lock().unwrap().messages.len() >= total
    })
    .await;
    let on_a = alice_chat_a.lock().unwrap().messages.clone();
    let on_b = bob_chat_b.lock().unwrap().messages.clone();
    assert!(gap_free_from(&on_a, 1), "A: {on_a:?}");
    assert_eq!(on_a, on_b, "both instances show one order");
    assert_eq!(on_a, history(&b.chat_url, &room_id, &bob_token).await);

    // Bob's client acknowledges everything through B: Alice's messages become delivered, and
    // the news reaches her stream on A (only hers: Bob's messages wait for Alice's own ack).
    let request = chat_pb::UpdateCursorRequest {
        room_id: room_id.clone(),
        received_seq: i64::try_from(total).unwrap(),
        read_seq: 0,
    };
    ChatServiceClient::new(channel(&b.chat_url)).update_cursor(with_bearer(request, &bob_token)).await.unwrap();
    let alices: Vec<i64> = on_a.iter().filter(|(_, id)| id.starts_with("a-")).map(|(seq, _)| *seq).collect();
    eventually("Alice's stream on A hears her messages delivered through B", async || {
        let mut delivered = alice_chat_a.lock().unwrap().delivered.clone();
        delivered.sort_unstable();
        delivered == alices
    })
    .await;
    assert!(bob_chat_b.lock().unwrap().delivered.is_empty(), "status changes go to the sender only");

    // --- kill -9 of A: nothing acknowledged is lost; its clients resume on B ---------------------
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let sender = {
        let (url, room_id, token, acknowledged) =
            (a.chat_url.clone(), room_id.clone(), alice_token.clone(), Arc::clone(&acknowledged));
        tokio::spawn(async move {
            for i in 0.. {
                let id = format!("k-{i}");
                match send(&url, &room_id, &token, &id).await {
                    Ok(seq) => acknowledged.lock().unwrap().push((seq, id)),
                    Err(_) => return,
                }
            }
        })
    };
    eventually("some messages are acknowledged before the kill", async || acknowledged.lock().unwrap().len() >= 5)
        .await;
    a.process.kill();
    sender.await.unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();
    eventually("A's streams end", async || {
        alice_on_a.lock().unwrap().ended.is_some() && alice_chat_a.lock().unwrap().ended.is_some()
    })
    .await;
    let kept = history(&b.chat_url, &room_id, &bob_token).await;
    for message in &acknowledged {
        assert!(kept.contains(message), "acknowledged {message:?} lost");
    }
    assert!(gap_free_from(&kept, 1));
    eventually("B's watcher has everything acknowledged on A", async || {
        bob_chat_b.lock().unwrap().last_seq() >= acknowledged.last().unwrap().0
    })
    .await;
    eventually("the killed instance's watcher leaves presence on B", async || {
        bob_on_b.lock().unwrap().watchers == vec![bob.clone()]
    })
    .await;
    // Bob chats on while Alice is away; she resumes on B: chat from her last seq, sync from a
    // snapshot.
    for i in 0..3 {
        send(&b.chat_url, &room_id, &bob_token, &format!("while-away-{i}")).await.unwrap();
    }
    let kept = history(&b.chat_url, &room_id, &bob_token).await;
    let alice_seen = alice_chat_a.lock().unwrap().last_seq();
    let alice_chat_b = watch_chat(&b.chat_url, &room_id, &alice_token, alice_seen);
    let latest = kept.last().unwrap().0;
    let described = format!("alice's resumed chat (after {alice_seen}) reaches the latest message {latest}");
    eventually(&described, async || {
        let heard = alice_chat_b.lock().unwrap();
        if heard.ended.is_some() {
            panic!("{described}: the stream ended with {:?} after {:?}", heard.ended, heard.messages);
        }
        heard.last_seq() == latest
    })
    .await;
    let mut resumed = alice_chat_a.lock().unwrap().messages.clone();
    resumed.extend(alice_chat_b.lock().unwrap().messages.clone());
    assert_eq!(resumed, kept, "alice sees every message once, in order");
    let alice_on_b = watch_sync(&b.sync_url, &room_id, &alice_token);
    eventually("alice's resumed room stream starts at the current version", async || {
        alice_on_b.lock().unwrap().versions.first() == Some(&raced)
    })
    .await;

    // --- NATS restarts: delivery resumes and the gap is repaired from the database --------------
    let a2 = stack.instance("a2").await;
    let bob_on_a2 = watch_sync(&a2.sync_url, &room_id, &bob_token);
    let bob_chat_a2 = watch_chat(&a2.chat_url, &room_id, &bob_token, latest);
    eventually("bob's new streams on A2 are open", async || !bob_on_a2.lock().unwrap().versions.is_empty()).await;
    let live = send(&b.chat_url, &room_id, &alice_token, "live-before").await.unwrap();
    eventually("A2 hears B's chat", async || bob_chat_a2.lock().unwrap().last_seq() == live).await;

    stack.nats.stop();
    let mut missed_seq = 0;
    for i in 0..3 {
        missed_seq = send(&b.chat_url, &room_id, &alice_token, &format!("during-outage-{i}")).await.unwrap();
    }
    let missed_version = seek(&b.sync_url, &room_id, &alice_token, raced, 42_000).await.unwrap();
    // B dies before the broker is back, with whatever it had queued for it: only the database
    // can tell A2 what happened.
    b.process.kill();
    stack.nats.start();
    eventually("A2's chat watcher is repaired up to what B stored during the outage", async || {
        bob_chat_a2.lock().unwrap().last_seq() == missed_seq
    })
    .await;
    eventually("A2's room watcher is repaired up to B's change during the outage", async || {
        bob_on_a2.lock().unwrap().versions.last() == Some(&missed_version)
    })
    .await;
    let b2 = stack.instance("b2").await;
    let after = send(&b2.chat_url, &room_id, &alice_token, "live-after").await.unwrap();
    eventually("live delivery resumes", async || bob_chat_a2.lock().unwrap().last_seq() == after).await;
    let on_a2 = bob_chat_a2.lock().unwrap().messages.clone();
    assert!(gap_free_from(&on_a2, latest + 1), "A2: {on_a2:?}");
    assert_eq!(bob_on_a2.lock().unwrap().ended, None);
    assert_eq!(bob_chat_a2.lock().unwrap().ended, None);

    // --- wait for everyone across instances: A2 does not resume for B2's buffering watcher ------
    let alice_on_b2 = watch_sync(&b2.sync_url, &room_id, &alice_token);
    eventually("alice watches on B2", async || !alice_on_b2.lock().unwrap().versions.is_empty()).await;
    let mut sync_a2 = SyncServiceClient::new(channel(&a2.sync_url));
    let version = room_version(&a2.sync_url, &room_id, &bob_token).await;
    let wait =
        sync_pb::SetWaitForEveryoneRequest { room_id: room_id.clone(), expected_version: version, enabled: true };
    let version = sync_a2.set_wait_for_everyone(with_bearer(wait, &bob_token)).await.unwrap().into_inner();
    let version = version.state.unwrap().version;
    let play = sync_pb::PlayRequest { room_id: room_id.clone(), expected_version: version, start_time: None };
    sync_a2.play(with_bearer(play, &bob_token)).await.unwrap();
    let report = |state: sync_pb::PlayerState| sync_pb::ReportStatusRequest {
        room_id: room_id.clone(),
        state: state.into(),
        ..Default::default()
    };
    let mut sync_b2 = SyncServiceClient::new(channel(&b2.sync_url));
    sync_b2.report_status(with_bearer(report(sync_pb::PlayerState::Buffering), &alice_token)).await.unwrap();
    let waiting_for = |url: String, token: String, room_id: String| async move {
        let request = with_bearer(sync_pb::GetRoomStateRequest { room_id }, &token);
        let state = SyncServiceClient::new(channel(&url)).get_room_state(request).await.unwrap().into_inner();
        state.state.unwrap().waiting_for_user_ids
    };
    let deadline = Instant::now() + PATIENCE;
    while waiting_for(a2.sync_url.clone(), bob_token.clone(), room_id.clone()).await != vec![alice.clone()] {
        assert!(Instant::now() < deadline, "the room never waited for alice");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A2 ticks every 200 ms and knows alice's buffering only through presence: give it several
    // ticks to (wrongly) resume.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(waiting_for(a2.sync_url.clone(), bob_token.clone(), room_id.clone()).await, vec![alice.clone()]);
    sync_b2.report_status(with_bearer(report(sync_pb::PlayerState::Ready), &alice_token)).await.unwrap();
    let deadline = Instant::now() + PATIENCE;
    while !waiting_for(a2.sync_url.clone(), bob_token.clone(), room_id.clone()).await.is_empty() {
        assert!(Instant::now() < deadline, "the room never resumed once alice was ready");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(b2);
    drop(a2);
}
