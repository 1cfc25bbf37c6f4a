//! chat-svc as a real `xiaowo serve --target chat` process over its own data directory, with
//! session-svc and room-svc running beside it in the test process: killed with SIGKILL and
//! restarted on the same port several times during a paced load, and left without its peers
//! for a while.
//!
//! Clients behave as the web client does: a send that fails is retried with the same client
//! message id, and the watch stream reconnects from the last sequence number it saw. What must
//! hold: every acknowledged message is stored with the seq it was acknowledged with, nothing is
//! stored twice, sequence numbers stay gap-free, and the watcher sees every message once.
//!
//! The load's size comes from `XIAOWO_FAULTS_MESSAGES`, `XIAOWO_FAULTS_RATE` (per second) and
//! `XIAOWO_FAULTS_KILLS`, so that `scripts/soak.sh` can run it longer; the defaults are the
//! battery's (1000 messages at 200/s, 3 kills). A `figures:` line on stdout reports what happened.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::chat::v1 as chat_pb;
use proto::chat::v1::chat_service_client::ChatServiceClient;
use proto::chat::v1::watch_messages_response::Event;
use proto::monitor::v1 as monitor_pb;
use proto::monitor::v1::monitor_service_client::MonitorServiceClient;
use proto::room::v1 as room_pb;
use proto::room::v1::room_service_client::RoomServiceClient;
use svc_kit::testing::{Spawned, with_bearer};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;
use xiaowo::node::Target;
use xiaowo::testing::{Node, Stack, any_port};

const SENDERS: usize = 4;
const CALL_DEADLINE: Duration = Duration::from_secs(5);

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// One `xiaowo serve --target chat` process over its own data directory.
struct ChatProcess {
    process: Spawned,
    addr: SocketAddr,
}

impl ChatProcess {
    /// Starts chat-svc on `listen` (port 0: any), pointed at `peers`' session-svc and
    /// room-svc and given their internal token, and waits until it says where it listens.
    fn spawn(data_dir: &Path, listen: SocketAddr, peers: &Peers, extra_args: &[&str]) -> Self {
        let mut command = crate::helpers::xiaowo();
        command
            .args(["serve", "--target", "chat", "--shutdown-grace", "1s"])
            .args(["--chat-listen", &listen.to_string(), "--session-url", &peers.url, "--room-url", &peers.url])
            .args(["--chat-flood-burst", "100000", "--chat-flood-per-second", "100000"])
            .args(extra_args)
            .arg("--data-dir")
            .arg(data_dir)
            // chat-svc and its peers run over different data directories: they are given the
            // same internal token rather than each making its own.
            .env("XIAOWO_INTERNAL_TOKEN", peers.stack.internal_token().expose())
            // Thousands of calls: the access log would only fill the test's captured output.
            .env("XIAOWO_LOG", "warn,xiaowo::cli=info,svc_kit::feed=info");
        let process = Spawned::start("chat", command);
        let addr = process.next_addr();
        Self { process, addr }
    }

    /// SIGKILL: no drain, no flush, no goodbye.
    fn kill_hard(&mut self) {
        self.process.kill();
    }
}

/// session-svc and room-svc in this process: the chat process's peers, not the subject.
struct Peers {
    stack: Stack,
    node: Node,
    url: String,
}

impl Peers {
    async fn start() -> Self {
        let stack = Stack::new().await.on_system_clock().with(|common| common.session.create_burst = 1_000);
        let node = stack.start(&[Target::Session, Target::Room]).await;
        let url = node.url.clone();
        Self { stack, node, url }
    }

    /// Stops them; `restart` starts them again at the same address over the same databases.
    async fn stop(self) -> Stack {
        self.node.stop().await;
        self.stack
    }

    async fn restart(stack: Stack, addr: SocketAddr) -> Self {
        let deadline = Instant::now() + svc_kit::testing::PATIENCE;
        let node = loop {
            match stack.try_start(addr, &[Target::Session, Target::Room], None, |_| {}).await {
                Ok(node) => break node,
                Err(xiaowo::node::StartError::Bind { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("the peers did not start again: {error}"),
            }
        };
        let url = node.url.clone();
        Self { stack, node, url }
    }
}

fn channel(url: &str) -> Channel {
    svc_kit::peer::channel(url, CALL_DEADLINE).unwrap()
}

/// A session's token and user id.
async fn user(peers: &Peers, name: &str) -> (String, String) {
    let user = peers.stack.user(name).await;
    (user.token, user.user_id)
}

/// An acknowledged send.
#[derive(Debug, Clone)]
struct Ack {
    seq: i64,
    at: Instant,
    attempts: u32,
    /// Answered from the stored original: an earlier attempt was committed but its answer lost.
    duplicate: bool,
}

/// Sends message `index` of the load with its own client message id, retrying what fails
/// until it is acknowledged.
async fn send_until_acknowledged(
    client: &mut ChatServiceClient<Channel>,
    room_id: &str,
    token: &str,
    index: usize,
    failures: &Mutex<BTreeMap<String, usize>>,
) -> Ack {
    let client_message_id = format!("load-{index}");
    let mut attempts = 0;
    loop {
        attempts += 1;
        let request = chat_pb::SendMessageRequest {
            room_id: room_id.to_owned(),
            text: client_message_id.clone(),
            client_message_id: client_message_id.clone(),
        };
        match client.send_message(with_bearer(request, token)).await {
            Ok(response) => {
                let chat_pb::SendMessageResponse { message, duplicate } = response.into_inner();
                let message = message.unwrap();
                assert_eq!(message.text, client_message_id, "a retry returns the message it names");
                return Ack { seq: message.seq, at: Instant::now(), attempts, duplicate };
            }
            Err(status) => {
                assert!(
                    !matches!(
                        status.code(),
                        Code::InvalidArgument
                            | Code::Unauthenticated
                            | Code::PermissionDenied
                            | Code::NotFound
                            | Code::FailedPrecondition
                            | Code::ResourceExhausted
                    ),
                    "a refusal, not an outage: {status:?}"
                );
                *failures.lock().unwrap().entry(format!("{:?}", status.code())).or_default() += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// What the watcher saw: every seq in the order received, and how often it reconnected.
struct Watched {
    seqs: Vec<i64>,
    reconnects: usize,
}

/// Watches the room until it has seen `expected` messages, reconnecting from the last seq it
/// saw whenever the stream breaks.
async fn watch_until(url: String, room_id: String, token: String, expected: i64, stop: CancellationToken) -> Watched {
    let mut seqs: Vec<i64> = Vec::new();
    let mut reconnects = 0;
    'connect: while seqs.last().copied().unwrap_or(0) < expected && !stop.is_cancelled() {
        let after_seq = seqs.last().copied().unwrap_or(0);
        let request = chat_pb::WatchMessagesRequest { room_id: room_id.clone(), after_seq: Some(after_seq) };
        let mut stream = match ChatServiceClient::new(channel(&url)).watch_messages(with_bearer(request, &token)).await
        {
            Ok(response) => response.into_inner(),
            Err(_) => {
                reconnects += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        loop {
            let next = tokio::select! {
                next = stream.message() => next,
                () = stop.cancelled() => break 'connect,
            };
            match next {
                Ok(Some(chat_pb::WatchMessagesResponse { event: Some(Event::Message(message)) })) => {
                    seqs.push(message.seq);
                    if message.seq >= expected {
                        break 'connect;
                    }
                }
                Ok(Some(chat_pb::WatchMessagesResponse { event: Some(Event::TooFarBehind(behind)) })) => {
                    panic!("a resume from the last seq must replay, not skip: {behind:?}");
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    reconnects += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue 'connect;
                }
            }
        }
    }
    Watched { seqs, reconnects }
}

/// `client message id → seq` of every stored message, read from the file itself.
fn stored_messages(chat_db: &Path) -> Vec<(String, i64)> {
    let connection = rusqlite::Connection::open(chat_db).unwrap();
    let mut statement = connection.prepare("SELECT text, seq FROM messages ORDER BY seq").unwrap();
    statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_killed_during_load_keeps_every_acknowledged_message_once() {
    let messages = setting("XIAOWO_FAULTS_MESSAGES", 1000);
    let rate = setting("XIAOWO_FAULTS_RATE", 200);
    let kills = setting("XIAOWO_FAULTS_KILLS", 3);

    // session-svc and room-svc in this process: they are the chat process's peers, not the subject.
    let peers = Peers::start().await;
    let peers_url = peers.url.clone();

    let chat_data = tempfile::tempdir().unwrap();
    let mut chat = ChatProcess::spawn(chat_data.path(), any_port(), &peers, &[]);
    let chat_addr = chat.addr;
    let chat_url = format!("http://{chat_addr}");

    let mut senders = Vec::new();
    for index in 0..SENDERS {
        senders.push(user(&peers, &format!("Sender {index}")).await);
    }
    let (watcher_token, _) = user(&peers, "Watcher").await;
    let request = room_pb::CreateRoomRequest { name: "under fire".to_owned(), ..Default::default() };
    let room = RoomServiceClient::new(channel(&peers_url))
        .create_room(with_bearer(request, &senders[0].0))
        .await
        .unwrap()
        .into_inner()
        .room
        .unwrap();
    let room_id = room.room_id;
    for (token, _) in senders.iter().skip(1).chain([&(watcher_token.clone(), String::new())]) {
        let join = room_pb::JoinRoomRequest { room_id: room_id.clone(), password: String::new() };
        RoomServiceClient::new(channel(&peers_url)).join_room(with_bearer(join, token)).await.unwrap();
    }

    let stop_watching = CancellationToken::new();
    let expected = i64::try_from(messages).unwrap();
    let watcher =
        tokio::spawn(watch_until(chat_url.clone(), room_id.clone(), watcher_token, expected, stop_watching.clone()));

    // The load: message n leaves at start + n / rate, from sender n mod SENDERS.
    let acks: Arc<Mutex<HashMap<usize, Ack>>> = Arc::default();
    let failures: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let started = Instant::now();
    let interval = Duration::from_secs(1) / u32::try_from(rate.max(1)).unwrap();
    let mut load = tokio::task::JoinSet::new();
    for (sender_index, (token, _)) in senders.iter().enumerate() {
        let (token, room_id, acks, failures) = (token.clone(), room_id.clone(), acks.clone(), failures.clone());
        let mut client = ChatServiceClient::new(channel(&chat_url));
        load.spawn(async move {
            for index in (sender_index..messages).step_by(SENDERS) {
                tokio::time::sleep_until(started + interval * u32::try_from(index).unwrap()).await;
                let ack = send_until_acknowledged(&mut client, &room_id, &token, index, &failures).await;
                acks.lock().unwrap().insert(index, ack);
            }
        });
    }

    // Kill -9 at evenly spread points of the load, restarting on the same port at once.
    let mut kill_times = Vec::new();
    for kill in 1..=kills {
        let due = messages * kill / (kills + 1);
        while acks.lock().unwrap().len() < due {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        chat.kill_hard();
        kill_times.push(Instant::now());
        chat = ChatProcess::spawn(chat_data.path(), chat_addr, &peers, &[]);
    }
    while load.join_next().await.is_some() {}
    let load_time = started.elapsed();
    let watched = tokio::time::timeout(Duration::from_secs(30), watcher).await;
    stop_watching.cancel();
    let watched = watched.expect("the watcher saw every message").unwrap();

    drop(chat);
    let stored = stored_messages(&chat_data.path().join("chat.db"));
    let acks = acks.lock().unwrap().clone();

    // Every message was acknowledged once its sender retried through the outages...
    assert_eq!(acks.len(), messages);
    // ...and each is stored exactly once, with the seq it was acknowledged with.
    assert_eq!(stored.len(), messages, "no duplicates and nothing missing");
    let stored_by_id: HashMap<&str, i64> = stored.iter().map(|(id, seq)| (id.as_str(), *seq)).collect();
    assert_eq!(stored_by_id.len(), messages, "every client message id once");
    for (index, ack) in &acks {
        assert_eq!(stored_by_id.get(format!("load-{index}").as_str()), Some(&ack.seq), "acknowledged {index} kept");
    }
    let seqs: Vec<i64> = stored.iter().map(|(_, seq)| *seq).collect();
    assert_eq!(seqs, (1..=expected).collect::<Vec<_>>(), "sequence numbers gap-free");
    // The watcher resumed from its last seq every time: each message once, in order.
    assert_eq!(watched.seqs, (1..=expected).collect::<Vec<_>>(), "watched every message once, in order");

    let retried = acks.values().filter(|ack| ack.attempts > 1).count();
    let answered_from_store = acks.values().filter(|ack| ack.duplicate).count();
    let resume_ms: Vec<u128> = kill_times
        .iter()
        .filter_map(|killed| {
            acks.values().filter(|ack| ack.at > *killed).map(|ack| ack.at).min().map(|at| (at - *killed).as_millis())
        })
        .collect();
    println!(
        "figures: messages={messages} rate={rate}/s kills={kills} acked={} stored={} stored_twice=0 \
         retried_messages={retried} retries_answered_from_store={answered_from_store} \
         failed_attempts={:?} watcher_reconnects={} resume_after_kill_ms={resume_ms:?} load_seconds={:.1}",
        acks.len(),
        stored.len(),
        failures.lock().unwrap(),
        watched.reconnects,
        load_time.as_secs_f64(),
    );

    peers.stop().await;
}

/// A chat message's seq, skipping every other event on the stream.
async fn next_seq(stream: &mut tonic::Streaming<chat_pb::WatchMessagesResponse>) -> i64 {
    loop {
        let next = tokio::time::timeout(Duration::from_secs(20), stream.message()).await.expect("an event in time");
        if let Some(chat_pb::WatchMessagesResponse { event: Some(Event::Message(message)) }) = next.unwrap() {
            return message.seq;
        }
    }
}

async fn say(
    chat_url: &str,
    room_id: &str,
    token: &str,
    client_message_id: &str,
) -> Result<chat_pb::SendMessageResponse, tonic::Status> {
    let request = chat_pb::SendMessageRequest {
        room_id: room_id.to_owned(),
        text: client_message_id.to_owned(),
        client_message_id: client_message_id.to_owned(),
    };
    let response = ChatServiceClient::new(channel(chat_url)).send_message(with_bearer(request, token)).await?;
    Ok(response.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_with_its_peers_down_fails_fast_keeps_streams_and_recovers() {
    let peers = Peers::start().await;
    let peers_addr = peers.node.addr;
    let peers_url = peers.url.clone();
    let chat_data = tempfile::tempdir().unwrap();
    // What chat-svc learnt from its peers a moment ago stays usable while they are away.
    let cached = ["--chat-access-cache-ttl", "60s", "--chat-session-cache-ttl", "60s"];
    let chat = ChatProcess::spawn(chat_data.path(), any_port(), &peers, &cached);
    let chat_url = format!("http://{}", chat.addr);
    // A (re)subscription to session changes or room events drops the answers cached from that
    // peer (changes missed before it are not replayed): Ana's checks must come after chat-svc's
    // first subscriptions, or they are dropped.
    for feed in ["session changes", "room events"] {
        assert!(chat.process.wait_for_log(&["feed live", feed]).is_some(), "chat-svc never followed {feed}");
    }

    let (ana, _) = user(&peers, "Ana").await;
    let (bob, _) = user(&peers, "Bob").await;
    let (carol, _) = user(&peers, "Carol").await;
    let request = room_pb::CreateRoomRequest { name: "peers away".to_owned(), ..Default::default() };
    let room = RoomServiceClient::new(channel(&peers_url)).create_room(with_bearer(request, &ana)).await.unwrap();
    let room_id = room.into_inner().room.unwrap().room_id;
    for token in [&bob, &carol] {
        let join = room_pb::JoinRoomRequest { room_id: room_id.clone(), password: String::new() };
        RoomServiceClient::new(channel(&peers_url)).join_room(with_bearer(join, token)).await.unwrap();
    }
    assert_eq!(say(&chat_url, &room_id, &ana, "before").await.unwrap().message.unwrap().seq, 1);
    let request = chat_pb::WatchMessagesRequest { room_id: room_id.clone(), after_seq: Some(0) };
    let mut bobs_stream = ChatServiceClient::new(channel(&chat_url))
        .watch_messages(with_bearer(request, &bob))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(next_seq(&mut bobs_stream).await, 1);

    let stack = peers.stop().await;

    // Carol's session and membership were never checked by chat-svc: it must ask, and cannot.
    let refused = say(&chat_url, &room_id, &carol, "while-away").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "an answer before the caller's deadline: {refused:?}");
    let sent = say(&chat_url, &room_id, &ana, "during").await.unwrap();
    assert_eq!(sent.message.unwrap().seq, 2, "a caller checked a moment ago goes on");
    assert_eq!(next_seq(&mut bobs_stream).await, 2, "the open stream still delivers");

    let peers = Peers::restart(stack, peers_addr).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let recovered = loop {
        match say(&chat_url, &room_id, &carol, "while-away").await {
            Ok(sent) => break sent,
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("the peers came back but the send still fails: {status:?}"),
        }
    };
    assert_eq!(recovered.message.unwrap().seq, 3, "the refused send stored nothing; its retry did");
    assert_eq!(next_seq(&mut bobs_stream).await, 3);

    drop(chat);
    peers.stop().await;
}

/// `HighErrorRatio` as shipped (server faults over 5 % of calls) but held 2 s instead of 5 min.
const ERROR_RULE: &str = r#"
[[rules]]
name = "HighErrorRatio"
metric = "error_ratio"
service = "chat"
comparison = ">"
threshold = 0.05
for = "2s"
severity = "warning"
message = "More than 5% of gRPC calls fail on the server's side."
"#;

/// chat-svc's alerts of `state` as monitor-svc lists them.
async fn error_alerts(monitor: &str, admin: &str, state: monitor_pb::AlertState) -> Vec<monitor_pb::Alert> {
    let mut request = tonic::Request::new(monitor_pb::ListAlertsRequest { state: state as i32, ..Default::default() });
    request.metadata_mut().insert("authorization", format!("Bearer {admin}").parse().unwrap());
    let alerts = MonitorServiceClient::new(channel(monitor)).list_alerts(request).await.unwrap().into_inner().alerts;
    alerts.into_iter().filter(|alert| alert.rule == "HighErrorRatio" && alert.service == "chat").collect()
}

/// Real faults raise the error alert, and it resolves when they end: a `xiaowo serve --target
/// chat,monitor` process, whose monitor-svc scrapes its chat-svc, first loses chat's peers
/// (sends from callers it has not seen fail UNAVAILABLE), then finds chat's database locked by
/// another writer (sends wait out the busy timeout and fail UNAVAILABLE).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_down_and_a_locked_database_fire_the_error_alert_and_it_resolves() {
    let peers = Peers::start().await;
    let peers_addr = peers.node.addr;
    let chat_data = tempfile::tempdir().unwrap();
    let rules = chat_data.path().join("rules.toml");
    std::fs::write(&rules, ERROR_RULE).unwrap();
    let monitor_args = [
        "--target",
        "monitor",
        "--monitor-listen",
        "127.0.0.1:0",
        "--monitor-scrape-interval",
        "1s",
        "--monitor-rules",
        rules.to_str().unwrap(),
        "--db-busy-timeout",
        "200ms",
        "--chat-session-cache-ttl",
        "60s",
        "--chat-access-cache-ttl",
        "60s",
    ];
    let mut chat = ChatProcess::spawn(chat_data.path(), any_port(), &peers, &monitor_args);
    let chat_url = format!("http://{}", chat.addr);
    let monitor = format!("http://{}", chat.process.next_addr());
    let admin = std::fs::read_to_string(chat_data.path().join("admin.token")).unwrap().trim().to_owned();

    let (ana, _) = user(&peers, "Ana").await;
    let request = room_pb::CreateRoomRequest { name: "faults".to_owned(), ..Default::default() };
    let room = RoomServiceClient::new(channel(&peers.url)).create_room(with_bearer(request, &ana)).await.unwrap();
    let room_id = room.into_inner().room.unwrap().room_id;
    let mut said = 0;
    let mut say_ok = async || {
        said += 1;
        say(&chat_url, &room_id, &ana, &format!("ok-{said}")).await
    };
    say_ok().await.unwrap();

    // Fault 1: the peers go away. Callers chat-svc has not seen cannot be checked.
    let stack = peers.stop().await;
    let mut unseen = 0;
    let started = Instant::now();
    while error_alerts(&monitor, &admin, monitor_pb::AlertState::Firing).await.is_empty() {
        assert!(started.elapsed() < svc_kit::testing::PATIENCE * 2, "no alert while the peers were down");
        unseen += 1;
        let stranger = format!("{unseen:064x}");
        let refused = say(&chat_url, &room_id, &stranger, "unseen").await.unwrap_err();
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    }
    let peers = Peers::restart(stack, peers_addr).await;
    let started = Instant::now();
    while error_alerts(&monitor, &admin, monitor_pb::AlertState::Resolved).await.is_empty() {
        assert!(started.elapsed() < svc_kit::testing::PATIENCE * 2, "the alert did not resolve");
        say_ok().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Fault 2: another writer holds chat's database.
    let other_writer = rusqlite::Connection::open(chat_data.path().join("chat.db")).unwrap();
    other_writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    while error_alerts(&monitor, &admin, monitor_pb::AlertState::Firing).await.is_empty() {
        assert!(started.elapsed() < svc_kit::testing::PATIENCE * 2, "no alert while the database was locked");
        let refused = say_ok().await.unwrap_err();
        assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    }
    other_writer.execute_batch("ROLLBACK").unwrap();
    drop(other_writer);
    let started = Instant::now();
    while error_alerts(&monitor, &admin, monitor_pb::AlertState::Resolved).await.len() < 2 {
        assert!(started.elapsed() < svc_kit::testing::PATIENCE * 2, "the second alert did not resolve");
        say_ok().await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resolved = error_alerts(&monitor, &admin, monitor_pb::AlertState::Resolved).await;
    assert!(resolved.iter().all(|alert| alert.fire_time.is_some()), "each fired before it resolved: {resolved:?}");
    assert!(error_alerts(&monitor, &admin, monitor_pb::AlertState::Firing).await.is_empty());

    chat.kill_hard();
    peers.stop().await;
}
