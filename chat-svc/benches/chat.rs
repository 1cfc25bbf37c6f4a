//! `cargo bench -p chat-svc --bench chat`: durable chat throughput and send → all-received
//! latency for rooms of 10 and 100 watching members, through real session-svc, room-svc and
//! chat-svc on loopback ports over SQLite files (chat's default `synchronous=FULL`), beside a
//! raw SQLite insert loop on the same schema and pragmas measured in the same run. Every loop is
//! bounded in count and time; the figures are printed, not asserted.
#![allow(
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a benchmark stops at any failure, and reports counts and ranks as f64 figures"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use proto::chat::v1 as pb;
use proto::chat::v1::chat_service_client::ChatServiceClient;
use proto::chat::v1::watch_messages_response::Event;
use proto::room::v1 as room_pb;
use proto::room::v1::room_service_client::RoomServiceClient;
use proto::session::v1 as session_pb;
use proto::session::v1::session_service_client::SessionServiceClient;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use svc_kit::db::{DbOptions, Synchronous};
use tokio::task::JoinSet;
use tonic::Request;
use tonic::transport::Channel;
use xiaowo::node::Target;
use xiaowo::testing::{Node, Stack};

/// Messages in each throughput run and each raw loop.
const THROUGHPUT_MESSAGES: usize = 3000;
/// Messages in each latency run, sent one every `LATENCY_PACE`.
const LATENCY_MESSAGES: usize = 400;
const LATENCY_PACE: Duration = Duration::from_millis(5);
/// No run may take longer than this.
const RUN_LIMIT: Duration = Duration::from_secs(120);

struct Bench {
    peers: Node,
    _chat: Node,
    /// A few HTTP/2 connections that every client shares, as browsers behind a proxy would
    /// arrive; hundreds of separate connections would measure the accept queue instead.
    connections: Vec<Channel>,
    _stack: Stack,
}

struct Member {
    token: String,
}

fn as_member<T>(message: T, member: &Member) -> Request<T> {
    let mut request = Request::new(message);
    if let Ok(value) = format!("Bearer {}", member.token).parse() {
        request.metadata_mut().insert("authorization", value);
    }
    request
}

/// session-svc and room-svc in one server, chat-svc in another, as `xiaowo serve` runs them.
async fn start() -> Bench {
    let stack = Stack::new().await.on_system_clock().with(|common| {
        // Hundreds of members come from one address.
        common.session.create_burst = 10_000;
        common.session.create_per_minute = 1_000_000;
        common.chat.flood_burst = 1_000_000;
        common.chat.flood_per_second = 1_000_000.0;
    });
    let peers = stack.start(&[Target::Session, Target::Room]).await;
    let chat = stack.start(&[Target::Chat]).await;
    let connections = (0..8).map(|_| chat.channel()).collect();
    Bench { peers, _chat: chat, connections, _stack: stack }
}

impl Bench {
    /// A client on one of the shared connections, chosen by `index`.
    fn chat(&self, index: usize) -> ChatServiceClient<Channel> {
        ChatServiceClient::new(self.connections[index % self.connections.len()].clone())
    }

    /// A room of `size` members (the owner first); its id and members.
    async fn room(&self, size: usize) -> (String, Vec<Member>) {
        let mut members = Vec::with_capacity(size);
        for index in 0..size {
            let request = session_pb::CreateSessionRequest { display_name: format!("m{index}") };
            let response = SessionServiceClient::new(self.peers.channel())
                .create_session(request)
                .await
                .expect("session")
                .into_inner();
            members.push(Member { token: response.token });
        }
        let mut rooms = RoomServiceClient::new(self.peers.channel());
        let create = room_pb::CreateRoomRequest { name: format!("bench {size}"), ..Default::default() };
        let room = rooms.create_room(as_member(create, &members[0])).await.expect("room").into_inner().room;
        let room_id = room.map(|room| room.room_id).unwrap_or_default();
        for member in &members[1..] {
            let join = room_pb::JoinRoomRequest { room_id: room_id.clone(), password: String::new() };
            rooms.join_room(as_member(join, member)).await.expect("join");
        }
        (room_id, members)
    }

    /// Every member watches the room; each watcher reports when it received each seq up to
    /// `until_seq`. Returns once every stream is live.
    async fn watch_all(&self, room_id: &str, members: &[Member], until_seq: i64) -> JoinSet<Vec<(i64, Instant)>> {
        let mut watchers = JoinSet::new();
        for (index, member) in members.iter().enumerate() {
            let request = pb::WatchMessagesRequest { room_id: room_id.to_owned(), after_seq: None };
            let mut stream =
                self.chat(index).watch_messages(as_member(request, member)).await.expect("watch").into_inner();
            // The stream is live once it has caught up.
            while let Ok(Some(message)) = stream.message().await {
                if matches!(message.event, Some(Event::CaughtUp(_))) {
                    break;
                }
            }
            watchers.spawn(async move {
                let mut received = Vec::new();
                let deadline = tokio::time::Instant::now() + RUN_LIMIT;
                while let Ok(Ok(Some(message))) = tokio::time::timeout_at(deadline, stream.message()).await {
                    if let Some(Event::Message(message)) = message.event {
                        received.push((message.seq, Instant::now()));
                        if message.seq >= until_seq {
                            break;
                        }
                    }
                }
                received
            });
        }
        watchers
    }
}

fn send_request(room_id: &str, id: String) -> pb::SendMessageRequest {
    pb::SendMessageRequest { room_id: room_id.to_owned(), text: format!("message {id}"), client_message_id: id }
}

/// Every member sends its share at once with `in_flight` sends outstanding, each waiting for
/// its acknowledgement; messages/s.
async fn throughput(bench: &Bench, room_size: usize, in_flight: usize) -> f64 {
    let (room_id, members) = bench.room(room_size).await;
    let senders_count = room_size * in_flight;
    let total = THROUGHPUT_MESSAGES - THROUGHPUT_MESSAGES % senders_count;
    let mut watchers = bench.watch_all(&room_id, &members, i64::try_from(total).unwrap_or(i64::MAX)).await;
    let per_sender = total / senders_count;
    let started = Instant::now();
    let mut senders = JoinSet::new();
    for (index, member) in members.into_iter().enumerate() {
        let member = Arc::new(member);
        for lane in 0..in_flight {
            let client = bench.chat(index * in_flight + lane);
            let (mut client, room_id, member) = (client, room_id.clone(), Arc::clone(&member));
            senders.spawn(async move {
                for n in 0..per_sender {
                    let request = send_request(&room_id, format!("t{index}-{lane}-{n}"));
                    client.send_message(as_member(request, &member)).await.expect("send");
                }
            });
        }
    }
    while let Some(done) = senders.join_next().await {
        done.expect("every send acknowledged");
    }
    let elapsed = started.elapsed();
    while watchers.join_next().await.is_some() {}
    total as f64 / elapsed.as_secs_f64()
}

/// One sender paced at `LATENCY_PACE`; for each message, the time from the start of its send
/// to its arrival at the last watcher. Returns (p50, p99) in milliseconds.
async fn latency(bench: &Bench, room_size: usize) -> (f64, f64) {
    let (room_id, members) = bench.room(room_size).await;
    let first_seq = 1;
    let last_seq = i64::try_from(LATENCY_MESSAGES).unwrap_or(i64::MAX);
    let mut watchers = bench.watch_all(&room_id, &members, last_seq).await;
    let sender = &members[0];
    let mut client = bench.chat(0);
    let mut sent_at = vec![Instant::now(); LATENCY_MESSAGES + 1];
    let mut pace = tokio::time::interval(LATENCY_PACE);
    for n in 0..LATENCY_MESSAGES {
        pace.tick().await;
        let started = Instant::now();
        let response = client.send_message(as_member(send_request(&room_id, format!("l{n}")), sender)).await;
        let seq = response.expect("send").into_inner().message.map_or(0, |message| message.seq);
        if let Some(slot) = usize::try_from(seq).ok().and_then(|seq| sent_at.get_mut(seq)) {
            *slot = started;
        }
    }
    let mut last_arrival: Vec<Option<Instant>> = vec![None; LATENCY_MESSAGES + 1];
    let mut complete = vec![0usize; LATENCY_MESSAGES + 1];
    while let Some(received) = watchers.join_next().await {
        for (seq, at) in received.unwrap_or_default() {
            if let Some(index) = usize::try_from(seq).ok().filter(|index| *index <= LATENCY_MESSAGES) {
                complete[index] += 1;
                last_arrival[index] = Some(last_arrival[index].map_or(at, |previous| previous.max(at)));
            }
        }
    }
    let mut latencies: Vec<f64> = (usize::try_from(first_seq).unwrap_or(1)..=LATENCY_MESSAGES)
        .filter(|index| complete[*index] == room_size)
        .filter_map(|index| last_arrival[index].map(|at| at.duration_since(sent_at[index]).as_secs_f64() * 1000.0))
        .collect();
    latencies.sort_by(f64::total_cmp);
    if latencies.len() < LATENCY_MESSAGES {
        eprintln!("warning: {} of {LATENCY_MESSAGES} messages reached every watcher", latencies.len());
    }
    (percentile(&latencies, 0.50), percentile(&latencies, 0.99))
}

fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 - 1.0) * quantile).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Inserts into chat-svc's own schema with the same pragmas, `batch` rows per transaction
/// (1 = the plain insert loop); rows/s.
async fn raw_inserts(synchronous: Synchronous, batch: usize) -> f64 {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = DbOptions { synchronous, ..DbOptions::default() };
    let db = svc_kit::db::connect::<chat_svc::Migrator>(&svc_kit::db::sqlite_url(dir.path(), "raw.db"), &options)
        .await
        .expect("raw database");
    let insert = |seq: usize| {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        Statement::from_sql_and_values(
            DbBackend::Sqlite,
            "INSERT INTO messages (room_id, seq, sender_id, text, client_message_id, status, created_at) \
             VALUES (?, ?, ?, ?, ?, 'stored', ?)",
            [
                "room".into(),
                seq.into(),
                "sender".into(),
                format!("message {seq}").into(),
                format!("c{seq}").into(),
                0i64.into(),
            ],
        )
    };
    let started = Instant::now();
    let mut seq = 0;
    while seq < THROUGHPUT_MESSAGES && started.elapsed() < RUN_LIMIT {
        let txn = db.begin().await.expect("begin");
        for _ in 0..batch {
            seq += 1;
            txn.execute_raw(insert(seq)).await.expect("insert");
        }
        txn.commit().await.expect("commit");
    }
    seq as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let raw_full = raw_inserts(Synchronous::Full, 1).await;
        let raw_normal = raw_inserts(Synchronous::Normal, 1).await;
        let raw_batched = raw_inserts(Synchronous::Full, 64).await;
        let bench = Arc::new(start().await);
        let mut rows = Vec::new();
        for room_size in [10, 100] {
            let one_each = throughput(&bench, room_size, 1).await;
            let eight_each = throughput(&bench, room_size, 8).await;
            let (p50, p99) = latency(&bench, room_size).await;
            rows.push((room_size, one_each, eight_each, p50, p99));
        }
        println!("chat-svc benchmark ({THROUGHPUT_MESSAGES} messages per throughput run, {LATENCY_MESSAGES} paced at {LATENCY_PACE:?} per latency run)");
        println!("baseline: raw SQLite insert loop, same schema, WAL, synchronous=FULL, 1 row/txn: {raw_full:>8.0} rows/s");
        println!("baseline: raw SQLite insert loop, same schema, WAL, synchronous=NORMAL, 1 row/txn: {raw_normal:>6.0} rows/s");
        println!("baseline: raw SQLite inserts, synchronous=FULL, 64 rows/txn:                   {raw_batched:>8.0} rows/s");
        println!("| room members (all watching, all sending) | durable msgs/s, 1 send in flight per member | 8 in flight per member | send → all-received p50 | p99 |");
        println!("|---|---|---|---|---|");
        for (room_size, one_each, eight_each, p50, p99) in rows {
            println!("| {room_size} | {one_each:.0} | {eight_each:.0} | {p50:.1} ms | {p99:.1} ms |");
        }
    });
}
