//! Room fan-out, the measure shared by scenarios 1, 4, 5 and 7: publishers stamp events with
//! their send time, every watcher of the room records send → receive, over whichever transport
//! carries them (Xiaowo's `WatchRoom` over gRPC or gRPC-web, the ceilings, the peers).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use bytes::{BufMut, Bytes, BytesMut};
use proto::chat::v1 as chat_pb;
use proto::sync::v1 as sync_pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio::task::JoinSet;

use crate::procstat;
use crate::stack::{self, Targets};
use crate::stats::{self, Summary, wall_micros};

/// Size of the ceilings' event payload, about what a `WatchRoom` state change weighs.
pub const PAYLOAD_BYTES: usize = 300;

/// Rooms and watchers per room.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Rooms, each with its own publisher.
    pub rooms: usize,
    /// Watchers in each room.
    pub watchers_per_room: usize,
}

impl Shape {
    /// Every watcher.
    pub fn watchers(self) -> usize {
        self.rooms * self.watchers_per_room
    }
}

/// What one watcher received: (send time µs since the epoch, send → receive µs).
type Sink = Arc<Mutex<Vec<(i64, u64)>>>;

/// Watchers connected and publishers ready; every task stops when it is dropped.
pub struct Fleet {
    sinks: Vec<Sink>,
    publishers: Vec<mpsc::Sender<i64>>,
    tasks: JoinSet<()>,
    /// From starting to open each watcher to its first message (snapshot or join ack), µs.
    pub open_latencies_us: Vec<u64>,
    /// Processes charged with the server side; empty when the server runs in this process.
    pub server_pids: Vec<u32>,
    /// Publishes the server refused with UNAVAILABLE (Xiaowo's publishers count them).
    unavailable: Arc<AtomicU64>,
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

/// One rate step's figures.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// Events per second per room asked for.
    pub rate: f64,
    /// Events published.
    pub published: u64,
    /// Ticks skipped because a publisher was still busy with earlier events.
    pub skipped: u64,
    /// Events × watchers that should have arrived.
    pub expected: u64,
    /// Send → receive of every delivery.
    pub latency: Summary,
    /// Deliveries per second of measured time.
    pub deliveries_per_second: f64,
    /// Server CPU µs per delivery (this process's when the server is in-process).
    pub server_cpu_us_per_delivery: f64,
    /// The load generator's own CPU µs per delivery.
    pub generator_cpu_us_per_delivery: f64,
    /// Publishes refused with UNAVAILABLE during the step.
    pub unavailable: u64,
}

impl Step {
    /// Delivered within the target: p99 ≤ 100 ms, nearly everything arrived, nothing skipped.
    pub fn sustained(&self) -> bool {
        let (delivered, expected, skipped, published) =
            (self.latency.count as f64, self.expected as f64, self.skipped as f64, self.published as f64);
        self.latency.p99_ms <= 100.0 && delivered >= 0.99 * expected && skipped <= 0.01 * (published + skipped)
    }
}

impl Fleet {
    /// Publishes at `rate` events per second per room for `duration`, then waits a second for
    /// stragglers and measures what arrived.
    pub async fn step(&self, shape: Shape, rate: f64, duration: Duration) -> Step {
        for sink in &self.sinks {
            sink.lock().map(|mut records| records.clear()).unwrap_or_default();
        }
        let server_cpu = || {
            if self.server_pids.is_empty() {
                procstat::own_cpu_seconds()
            } else {
                procstat::cpu_seconds(&self.server_pids)
            }
        };
        let (server_before, own_before) = (server_cpu(), procstat::own_cpu_seconds());
        let unavailable_before = self.unavailable.load(Ordering::Relaxed);
        let start_us = wall_micros();
        let interval = Duration::from_secs_f64(1.0 / rate);
        let mut drivers = JoinSet::new();
        let rooms = self.publishers.len();
        for (index, publisher) in self.publishers.iter().enumerate() {
            let publisher = publisher.clone();
            drivers.spawn(async move {
                // Rooms tick spread over the interval, as independent rooms would.
                tokio::time::sleep(interval.mul_f64(index as f64 / rooms as f64)).await;
                let deadline = tokio::time::Instant::now() + duration;
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
                let (mut published, mut skipped) = (0u64, 0u64);
                loop {
                    ticker.tick().await;
                    if tokio::time::Instant::now() >= deadline {
                        break;
                    }
                    match publisher.try_send(wall_micros()) {
                        Ok(()) => published += 1,
                        Err(_) => skipped += 1,
                    }
                }
                (published, skipped)
            });
        }
        let (mut published, mut skipped) = (0, 0);
        while let Some(Ok((room_published, room_skipped))) = drivers.join_next().await {
            published += room_published;
            skipped += room_skipped;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (server_used, own_used) = (server_cpu() - server_before, procstat::own_cpu_seconds() - own_before);
        let mut latencies = Vec::new();
        for sink in &self.sinks {
            if let Ok(mut records) = sink.lock() {
                latencies.extend(records.drain(..).filter(|(sent, _)| *sent >= start_us).map(|(_, latency)| latency));
            }
        }
        let latency = stats::summarize(latencies);
        let deliveries = latency.count.max(1) as f64;
        let expected = published * shape.watchers_per_room as u64;
        let server_cpu_us_per_delivery = if self.server_pids.is_empty() {
            // In-process ceiling: the whole process is the server (generator included).
            own_used * 1e6 / deliveries
        } else {
            server_used * 1e6 / deliveries
        };
        Step {
            rate,
            published,
            skipped,
            expected,
            latency,
            deliveries_per_second: deliveries / duration.as_secs_f64(),
            server_cpu_us_per_delivery,
            generator_cpu_us_per_delivery: own_used * 1e6 / deliveries,
            unavailable: self.unavailable.load(Ordering::Relaxed) - unavailable_before,
        }
    }
}

fn record(sink: &Sink, sent_us: i64) {
    let latency = u64::try_from(wall_micros() - sent_us).unwrap_or(0);
    if let Ok(mut records) = sink.lock() {
        records.push((sent_us, latency));
    }
}

/// The pause between the last watcher opening and the first step.
const SETTLE: Duration = Duration::from_secs(2);

/// Gathers watchers as they become ready, then hands out the fleet.
struct Builder {
    tasks: JoinSet<()>,
    sinks: Vec<Sink>,
    ready: mpsc::Receiver<anyhow::Result<u64>>,
    ready_sender: mpsc::Sender<anyhow::Result<u64>>,
    publishers: Vec<mpsc::Sender<i64>>,
    unavailable: Arc<AtomicU64>,
}

impl Builder {
    fn new(watchers: usize) -> Self {
        let (ready_sender, ready) = mpsc::channel(watchers.max(1));
        Self {
            tasks: JoinSet::new(),
            sinks: Vec::new(),
            ready,
            ready_sender,
            publishers: Vec::new(),
            unavailable: Arc::default(),
        }
    }

    fn sink(&mut self) -> Sink {
        let sink = Sink::default();
        self.sinks.push(Arc::clone(&sink));
        sink
    }

    /// Starts a watcher: `open` runs within `gate`, the fleet hears when it is open (or why it
    /// could not be), then `receive` reads it into its sink.
    fn spawn_watcher<T, Receiving>(
        &mut self,
        gate: &Arc<Semaphore>,
        open: impl Future<Output = anyhow::Result<T>> + Send + 'static,
        receive: impl FnOnce(T, Sink) -> Receiving + Send + 'static,
    ) where
        T: Send + 'static,
        Receiving: Future<Output = ()> + Send + 'static,
    {
        let sink = self.sink();
        let ready = self.ready_sender.clone();
        let gate = Arc::clone(gate);
        self.tasks.spawn(async move {
            let started = tokio::time::Instant::now();
            let permit = gate.acquire_owned().await;
            let opened = open.await;
            drop(permit);
            match opened {
                Ok(watcher) => {
                    let _ = ready.send(Ok(elapsed_us(started))).await;
                    receive(watcher, sink).await;
                }
                Err(error) => {
                    let _ = ready.send(Err(error)).await;
                }
            }
        });
    }

    /// A publisher's inbox; a second of events at most waits behind a busy publisher.
    fn publisher(&mut self) -> mpsc::Receiver<i64> {
        let (sender, receiver) = mpsc::channel(4);
        self.publishers.push(sender);
        receiver
    }

    async fn finish(mut self, watchers: usize, server_pids: Vec<u32>) -> anyhow::Result<Fleet> {
        drop(self.ready_sender);
        let mut open_latencies_us = Vec::with_capacity(watchers);
        // One deadline for the whole fleet: a server that accepts watchers slowly is given up on.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        for _ in 0..watchers {
            let opened = tokio::time::timeout_at(deadline, self.ready.recv())
                .await
                .context("watchers did not open within 120 s")?
                .context("a watcher ended before it was ready")??;
            open_latencies_us.push(opened);
        }
        // The join storm's tail (snapshots, presence, connection bookkeeping) is scenario 4's
        // subject, not the first step's: every system gets the same quiet moment first.
        tokio::time::sleep(SETTLE).await;
        Ok(Fleet {
            sinks: self.sinks,
            publishers: self.publishers,
            tasks: self.tasks,
            open_latencies_us,
            server_pids,
            unavailable: self.unavailable,
        })
    }
}

/// Ceiling: the same events through one tokio broadcast channel per room inside this process.
pub async fn in_process(shape: Shape) -> anyhow::Result<Fleet> {
    let mut builder = Builder::new(shape.watchers());
    for _ in 0..shape.rooms {
        let (sender, _) = broadcast::channel::<(i64, Bytes)>(1024);
        for _ in 0..shape.watchers_per_room {
            let mut receiver = sender.subscribe();
            let sink = builder.sink();
            let ready = builder.ready_sender.clone();
            builder.tasks.spawn(async move {
                let _ = ready.send(Ok(0)).await;
                while let Ok((sent_us, payload)) = receiver.recv().await {
                    std::hint::black_box(&payload);
                    record(&sink, sent_us);
                }
            });
        }
        let mut inbox = builder.publisher();
        builder.tasks.spawn(async move {
            let padding = vec![7u8; PAYLOAD_BYTES - 8];
            while let Some(sent_us) = inbox.recv().await {
                let mut payload = BytesMut::with_capacity(PAYLOAD_BYTES);
                payload.put_i64(sent_us);
                payload.put_slice(&padding);
                let _ = sender.send((sent_us, payload.freeze()));
            }
        });
    }
    builder.finish(shape.watchers(), Vec::new()).await
}

/// Ceiling: a raw TCP fan-out server ([`crate::tcp_ceiling`]) in its own process.
pub async fn raw_tcp(shape: Shape, address: SocketAddr, server_pid: u32) -> anyhow::Result<Fleet> {
    let mut builder = Builder::new(shape.watchers());
    let gate = Arc::new(Semaphore::new(256));
    for room in 0..shape.rooms {
        let room_id = u32::try_from(room)?;
        for _ in 0..shape.watchers_per_room {
            let sink = builder.sink();
            let ready = builder.ready_sender.clone();
            let gate = Arc::clone(&gate);
            builder.tasks.spawn(async move {
                let started = tokio::time::Instant::now();
                let permit = gate.acquire_owned().await;
                let opened = async {
                    let mut stream = TcpStream::connect(address).await?;
                    stream.set_nodelay(true)?;
                    stream.write_all(&[crate::tcp_ceiling::WATCHER]).await?;
                    stream.write_all(&room_id.to_be_bytes()).await?;
                    let mut reader = BufReader::new(stream);
                    // The server's empty frame says the watcher is subscribed.
                    reader.read_u32().await?;
                    anyhow::Ok(reader)
                }
                .await;
                drop(permit);
                let mut reader = match opened {
                    Ok(reader) => reader,
                    Err(error) => {
                        let _ = ready.send(Err(error)).await;
                        return;
                    }
                };
                let _ = ready.send(Ok(elapsed_us(started))).await;
                let mut frame = vec![0u8; PAYLOAD_BYTES];
                while let Ok(length) = reader.read_u32().await {
                    let length = length as usize;
                    frame.resize(length, 0);
                    if length < 8 || reader.read_exact(&mut frame).await.is_err() {
                        break;
                    }
                    let sent_us = i64::from_be_bytes(frame[..8].try_into().unwrap_or_default());
                    record(&sink, sent_us);
                }
            });
        }
        let mut inbox = builder.publisher();
        let mut stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        stream.write_all(&[crate::tcp_ceiling::PUBLISHER]).await?;
        stream.write_all(&room_id.to_be_bytes()).await?;
        builder.tasks.spawn(async move {
            let padding = vec![7u8; PAYLOAD_BYTES - 8];
            while let Some(sent_us) = inbox.recv().await {
                let mut frame = BytesMut::with_capacity(PAYLOAD_BYTES + 4);
                frame.put_u32(u32::try_from(PAYLOAD_BYTES).unwrap_or_default());
                frame.put_i64(sent_us);
                frame.put_slice(&padding);
                if stream.write_all(&frame).await.is_err() {
                    break;
                }
            }
        });
    }
    builder.finish(shape.watchers(), vec![server_pid]).await
}

/// Whose sessions a room's watchers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum People {
    /// Every watcher a different person: their own session, a member of the room (what rooms
    /// are like, and what every scenario measures).
    Distinct,
    /// Every watcher the room owner's session: the shape of earlier figures, kept as a
    /// labelled extra (one access check and one membership per room).
    RoomOwner,
}

/// Each room's watchers' tokens for `people`, room by room.
pub async fn watcher_tokens(
    targets: &Targets,
    shape: Shape,
    rooms: &[(String, String, i64)],
    people: People,
) -> anyhow::Result<Vec<Vec<String>>> {
    match people {
        People::Distinct => {
            // The owner is one of the watchers, so that a room of 1000 watchers is 1000 members
            // (room-svc's largest room).
            let room_ids: Vec<String> = rooms.iter().map(|(_, room_id, _)| room_id.clone()).collect();
            let members = stack::room_members(targets, &room_ids, shape.watchers_per_room.saturating_sub(1)).await?;
            let with_owner = rooms
                .iter()
                .zip(members)
                .map(|((owner, ..), members)| std::iter::once(owner.clone()).chain(members).collect());
            Ok(with_owner.collect())
        }
        People::RoomOwner => Ok(rooms.iter().map(|(token, ..)| vec![token.clone()]).collect()),
    }
}

/// Xiaowo: `Seek` commands (their send time rides in `position_ms`) and `WatchRoom` streams,
/// `per_connection` watchers sharing each HTTP/2 connection, spread over every sync-svc URL.
/// `open_concurrency` bounds how many watchers connect at once (none: all at once, a storm).
pub async fn xiaowo(
    targets: &Targets,
    shape: Shape,
    people: People,
    per_connection: usize,
    open_concurrency: Option<usize>,
) -> anyhow::Result<Fleet> {
    let rooms = stack::media_rooms(targets, shape.rooms).await?;
    let watchers = watcher_tokens(targets, shape, &rooms, people).await?;
    xiaowo_in_rooms(targets, shape, &rooms, &watchers, per_connection, open_concurrency).await
}

/// As [`xiaowo`], in rooms made beforehand with [`stack::media_rooms`], each watched by
/// `watchers[room]` in turn ([`watcher_tokens`]).
pub async fn xiaowo_in_rooms(
    targets: &Targets,
    shape: Shape,
    rooms: &[(String, String, i64)],
    watchers: &[Vec<String>],
    per_connection: usize,
    open_concurrency: Option<usize>,
) -> anyhow::Result<Fleet> {
    let mut builder = Builder::new(shape.watchers());
    let gate = Arc::new(Semaphore::new(open_concurrency.unwrap_or(Semaphore::MAX_PERMITS)));
    let per_connection = per_connection.max(1);
    let mut channels = Vec::new();
    for index in 0..shape.watchers().div_ceil(per_connection) {
        channels.push(stack::channel(&targets.sync_urls[index % targets.sync_urls.len()])?);
    }
    for watcher in 0..shape.watchers() {
        let (room_id, token) = watcher_place(shape, rooms, watchers, watcher)?;
        let mut client =
            sync_pb::sync_service_client::SyncServiceClient::new(channels[watcher / per_connection].clone());
        let open = async move {
            let mut events =
                client.watch_room(stack::bearer(sync_pb::WatchRoomRequest { room_id }, &token)).await?.into_inner();
            events.message().await?.context("stream ended before its snapshot")?;
            anyhow::Ok(events)
        };
        builder.spawn_watcher(&gate, open, |mut events, sink| async move {
            while let Ok(Some(message)) = events.message().await {
                if let Some(sent_us) = seek_sent_us(message) {
                    record(&sink, sent_us);
                }
            }
        });
    }
    let command_channels: Vec<_> = (0..4).map(|_| stack::channel(&targets.sync_urls[0])).collect::<Result<_, _>>()?;
    for (index, (token, room_id, version)) in rooms.iter().take(shape.rooms).cloned().enumerate() {
        let mut inbox = builder.publisher();
        let mut client = sync_pb::sync_service_client::SyncServiceClient::new(command_channels[index % 4].clone());
        let unavailable = Arc::clone(&builder.unavailable);
        builder.tasks.spawn(async move {
            let mut version = version;
            while let Some(sent_us) = inbox.recv().await {
                let request =
                    sync_pb::SeekRequest { room_id: room_id.clone(), expected_version: version, position_ms: sent_us };
                match client.seek(stack::bearer(request, &token)).await {
                    Ok(response) => version = response.into_inner().state.map_or(version, |state| state.version),
                    Err(status) => {
                        count_unavailable(&unavailable, &status);
                        // Lost a race (a rerun in the same room): start from the current version.
                        let request = sync_pb::GetRoomStateRequest { room_id: room_id.clone() };
                        if let Ok(response) = client.get_room_state(stack::bearer(request, &token)).await {
                            version = response.into_inner().state.map_or(version, |state| state.version);
                        }
                    }
                }
            }
        });
    }
    builder.finish(shape.watchers(), targets.pids.clone()).await
}

/// Peer: the socket.io room-broadcast server (`bench/peers/socketio/server.js`).
pub async fn socket_io(shape: Shape, address: SocketAddr, server_pid: u32) -> anyhow::Result<Fleet> {
    use crate::websocket::SocketIo;
    let mut builder = Builder::new(shape.watchers());
    let gate = Arc::new(Semaphore::new(256));
    for room in 0..shape.rooms {
        let room_name = format!("room-{room}");
        for _ in 0..shape.watchers_per_room {
            let sink = builder.sink();
            let ready = builder.ready_sender.clone();
            let gate = Arc::clone(&gate);
            let room_name = room_name.clone();
            builder.tasks.spawn(async move {
                let started = tokio::time::Instant::now();
                let permit = gate.acquire_owned().await;
                let opened = async {
                    let mut socket = SocketIo::connect(address).await?;
                    socket.emit(&serde_json::json!(["join", room_name])).await?;
                    while socket.next_event().await?.first().and_then(|name| name.as_str()) != Some("joined") {}
                    anyhow::Ok(socket)
                }
                .await;
                drop(permit);
                let mut socket = match opened {
                    Ok(socket) => socket,
                    Err(error) => {
                        let _ = ready.send(Err(error)).await;
                        return;
                    }
                };
                let _ = ready.send(Ok(elapsed_us(started))).await;
                while let Ok(event) = socket.next_event().await {
                    if let Some(sent_us) = event.get(1).and_then(|payload| payload.as_str()).and_then(sent_from_text) {
                        record(&sink, sent_us);
                    }
                }
            });
        }
        let mut inbox = builder.publisher();
        let mut socket = SocketIo::connect(address).await?;
        builder.tasks.spawn(async move {
            let padding = "x".repeat(PAYLOAD_BYTES - 20);
            while let Some(sent_us) = inbox.recv().await {
                let event = serde_json::json!(["event", room_name, format!("{sent_us}|{padding}")]);
                if socket.emit(&event).await.is_err() {
                    break;
                }
            }
        });
    }
    builder.finish(shape.watchers(), vec![server_pid]).await
}

/// The room id and token of watcher number `watcher`: rooms take turns, and within a room its
/// people do (wrapping around when there are fewer people than watchers).
fn watcher_place(
    shape: Shape,
    rooms: &[(String, String, i64)],
    watchers: &[Vec<String>],
    watcher: usize,
) -> anyhow::Result<(String, String)> {
    let room = watcher % shape.rooms;
    let (_, room_id, _) = rooms.get(room).context("fewer rooms than the shape")?;
    let people = watchers.get(room).filter(|people| !people.is_empty()).context("a room without watchers")?;
    Ok((room_id.clone(), people[(watcher / shape.rooms) % people.len()].clone()))
}

fn count_unavailable(unavailable: &AtomicU64, status: &tonic::Status) {
    if status.code() == tonic::Code::Unavailable {
        unavailable.fetch_add(1, Ordering::Relaxed);
    }
}

/// Xiaowo's chat as a fan-out: in each room the owner publishes with `SendMessage` (the send
/// time starts the text) and `watchers_per_room` other members, each their own session, receive
/// it on `WatchMessages`, one connection each. A send is acknowledged once committed, so the
/// access check, flood limit and SQLite commit are all inside the measure; the first step's
/// first second is a burst of first-time senders, one per room.
pub async fn xiaowo_chat(targets: &Targets, shape: Shape) -> anyhow::Result<Fleet> {
    let rooms = stack::owned_rooms(targets, shape.rooms, false).await?;
    let watchers = watcher_tokens(targets, shape, &rooms, People::Distinct).await?;

    let mut builder = Builder::new(shape.watchers());
    let gate = Arc::new(Semaphore::new(256));
    for watcher in 0..shape.watchers() {
        let (room_id, token) = watcher_place(shape, &rooms, &watchers, watcher)?;
        let mut client = chat_pb::chat_service_client::ChatServiceClient::new(stack::channel(&targets.chat_url)?);
        let open = async move {
            let request = chat_pb::WatchMessagesRequest { room_id, after_seq: None };
            let mut events = client.watch_messages(stack::bearer(request, &token)).await?.into_inner();
            // The first frame says the stream is live (CaughtUp).
            events.message().await?.context("stream ended before it caught up")?;
            anyhow::Ok(events)
        };
        builder.spawn_watcher(&gate, open, |mut events, sink| async move {
            while let Ok(Some(frame)) = events.message().await {
                if let Some(sent_us) = message_sent_us(frame) {
                    record(&sink, sent_us);
                }
            }
        });
    }
    let send_channels: Vec<_> = (0..4).map(|_| stack::channel(&targets.chat_url)).collect::<Result<_, _>>()?;
    for (index, (token, room_id, _)) in rooms.into_iter().enumerate() {
        let mut inbox = builder.publisher();
        let mut client = chat_pb::chat_service_client::ChatServiceClient::new(send_channels[index % 4].clone());
        let unavailable = Arc::clone(&builder.unavailable);
        builder.tasks.spawn(async move {
            let mut messages = BenchMessages::new(room_id);
            while let Some(sent_us) = inbox.recv().await {
                let request = messages.next(sent_us);
                if let Err(status) = client.send_message(stack::bearer(request, &token)).await {
                    count_unavailable(&unavailable, &status);
                }
            }
        });
    }
    builder.finish(shape.watchers(), targets.pids.clone()).await
}

/// A room's chat messages as the chat rows send them: the send time starts the text, padded to
/// [`PAYLOAD_BYTES`], each with a client id of its own.
struct BenchMessages {
    room_id: String,
    padding: String,
    sent: u64,
}

impl BenchMessages {
    fn new(room_id: String) -> Self {
        Self { room_id, padding: "x".repeat(PAYLOAD_BYTES - 20), sent: 0 }
    }

    fn next(&mut self, sent_us: i64) -> chat_pb::SendMessageRequest {
        self.sent += 1;
        chat_pb::SendMessageRequest {
            room_id: self.room_id.clone(),
            text: format!("{sent_us}|{}", self.padding),
            client_message_id: format!("bench-{}", self.sent),
        }
    }
}

/// The send time a sync event carries: a `Seek`'s position is its publisher's clock.
fn seek_sent_us(message: sync_pb::WatchRoomResponse) -> Option<i64> {
    match message.event {
        Some(sync_pb::watch_room_response::Event::State(state)) if state.last_action() == sync_pb::Action::Seek => {
            state.timeline.map(|timeline| timeline.position_ms)
        }
        _ => None,
    }
}

/// The send time a chat frame carries, when it is a message.
fn message_sent_us(frame: chat_pb::WatchMessagesResponse) -> Option<i64> {
    match frame.event {
        Some(chat_pb::watch_messages_response::Event::Message(message)) => sent_from_text(&message.text),
        _ => None,
    }
}

/// The send time at the start of a text payload (`"<µs>|…"`).
pub fn sent_from_text(text: &str) -> Option<i64> {
    text.split('|').next().and_then(|digits| digits.parse().ok())
}

fn elapsed_us(started: tokio::time::Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// Steps the rate up from `first_rate` (doubling) until a step is not sustained or the rate
/// passes `max_rate`; returns every step measured.
pub async fn step_up(fleet: &Fleet, shape: Shape, first_rate: f64, max_rate: f64, duration: Duration) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut rate = first_rate;
    while rate <= max_rate {
        let step = fleet.step(shape, rate, duration).await;
        let sustained = step.sustained();
        steps.push(step);
        if !sustained {
            break;
        }
        rate *= 2.0;
    }
    steps
}

/// Xiaowo as a browser reaches it: `WatchRoom` and `Seek` as gRPC-web over HTTP/1.1 (one
/// connection per watcher, as HTTP/1.1 cannot multiplex), to `address` — nginx in front of
/// the server, or the server itself.
pub async fn xiaowo_grpc_web(targets: &Targets, shape: Shape, address: SocketAddr) -> anyhow::Result<Fleet> {
    use crate::grpc_web;
    const WATCH: &str = "/xiaowo.sync.v1.SyncService/WatchRoom";
    const SEEK: &str = "/xiaowo.sync.v1.SyncService/Seek";
    const GET_STATE: &str = "/xiaowo.sync.v1.SyncService/GetRoomState";
    let rooms = stack::media_rooms(targets, shape.rooms).await?;
    let mut builder = grpc_web_watchers(
        targets,
        shape,
        &rooms,
        address,
        WATCH,
        |room_id| sync_pb::WatchRoomRequest { room_id },
        seek_sent_us,
    )
    .await?;
    for (token, room_id, version) in rooms.iter().take(shape.rooms).cloned() {
        let mut inbox = builder.publisher();
        let mut connection = grpc_web::Connection::connect(address).await?;
        builder.tasks.spawn(async move {
            let mut version = version;
            while let Some(sent_us) = inbox.recv().await {
                let request =
                    sync_pb::SeekRequest { room_id: room_id.clone(), expected_version: version, position_ms: sent_us };
                let answer = match connection.call(SEEK, &token, &request).await {
                    Ok(call) => call.unary::<sync_pb::SeekResponse>().await,
                    Err(error) => Err(error),
                };
                match answer {
                    Ok(response) => version = response.state.map_or(version, |state| state.version),
                    Err(_) => {
                        let request = sync_pb::GetRoomStateRequest { room_id: room_id.clone() };
                        let Ok(call) = connection.call(GET_STATE, &token, &request).await else { break };
                        if let Ok(response) = call.unary::<sync_pb::GetRoomStateResponse>().await {
                            version = response.state.map_or(version, |state| state.version);
                        }
                    }
                }
            }
        });
    }
    builder.finish(shape.watchers(), targets.pids.clone()).await
}

/// Xiaowo's chat as a browser reaches it: `WatchMessages` and `SendMessage` as gRPC-web over
/// HTTP/1.1, a connection per watcher and one per room's sender (the room's owner), to
/// `address`. Otherwise as [`xiaowo_chat`].
pub async fn xiaowo_chat_grpc_web(targets: &Targets, shape: Shape, address: SocketAddr) -> anyhow::Result<Fleet> {
    use crate::grpc_web;
    const WATCH: &str = "/xiaowo.chat.v1.ChatService/WatchMessages";
    const SEND: &str = "/xiaowo.chat.v1.ChatService/SendMessage";
    let rooms = stack::owned_rooms(targets, shape.rooms, false).await?;
    let mut builder = grpc_web_watchers(
        targets,
        shape,
        &rooms,
        address,
        WATCH,
        |room_id| chat_pb::WatchMessagesRequest { room_id, after_seq: None },
        message_sent_us,
    )
    .await?;
    for (token, room_id, _) in rooms {
        let mut inbox = builder.publisher();
        let mut connection = grpc_web::Connection::connect(address).await?;
        let unavailable = Arc::clone(&builder.unavailable);
        builder.tasks.spawn(async move {
            let mut messages = BenchMessages::new(room_id);
            while let Some(sent_us) = inbox.recv().await {
                let request = messages.next(sent_us);
                let Ok(call) = connection.call(SEND, &token, &request).await else { break };
                if let Err(error) = call.unary::<chat_pb::SendMessageResponse>().await
                    && error
                        .downcast_ref::<grpc_web::Failed>()
                        .is_some_and(|failed| failed.status == Some(tonic::Code::Unavailable as i32))
                {
                    unavailable.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    builder.finish(shape.watchers(), targets.pids.clone()).await
}

/// A fleet's watchers, every one a member of its room with a session of its own, each opening
/// its stream as a browser does (gRPC-web over HTTP/1.1, a connection each): `path` with the
/// request `request_for` makes of the room's id. The stream's first frame (sync's snapshot,
/// chat's "caught up") says it is live; `sent_of` finds the send time in the events measured.
async fn grpc_web_watchers<Request, Event>(
    targets: &Targets,
    shape: Shape,
    rooms: &[(String, String, i64)],
    address: SocketAddr,
    path: &'static str,
    request_for: fn(String) -> Request,
    sent_of: fn(Event) -> Option<i64>,
) -> anyhow::Result<Builder>
where
    Request: prost::Message + Send + 'static,
    Event: prost::Message + Default + Send + 'static,
{
    use crate::grpc_web;
    let watchers = watcher_tokens(targets, shape, rooms, People::Distinct).await?;
    let mut builder = Builder::new(shape.watchers());
    let gate = Arc::new(Semaphore::new(256));
    for watcher in 0..shape.watchers() {
        let (room_id, token) = watcher_place(shape, rooms, &watchers, watcher)?;
        let open = async move {
            let connection = grpc_web::Connection::connect(address).await?;
            let mut call = connection.open(path, &token, &request_for(room_id)).await?;
            call.next::<Event>().await?.context("stream ended before its first frame")?;
            anyhow::Ok(call)
        };
        builder.spawn_watcher(&gate, open, move |mut call, sink| async move {
            while let Ok(Some(event)) = call.next::<Event>().await {
                if let Some(sent_us) = sent_of(event) {
                    record(&sink, sent_us);
                }
            }
        });
    }
    Ok(builder)
}

/// Peer: Debian's `syncplay-server`, events carried as room chat (its broadcast path).
pub async fn syncplay(shape: Shape, address: SocketAddr, server_pid: u32) -> anyhow::Result<Fleet> {
    use crate::syncplay::Syncplay;
    let mut builder = Builder::new(shape.watchers());
    let gate = Arc::new(Semaphore::new(256));
    for room in 0..shape.rooms {
        let room_name = format!("room-{room}");
        for watcher in 0..shape.watchers_per_room {
            let sink = builder.sink();
            let ready = builder.ready_sender.clone();
            let gate = Arc::clone(&gate);
            let (room_name, username) = (room_name.clone(), format!("w{room}-{watcher}"));
            builder.tasks.spawn(async move {
                let started = tokio::time::Instant::now();
                let permit = gate.acquire_owned().await;
                let opened = Syncplay::connect(address, &username, &room_name).await;
                drop(permit);
                let mut client = match opened {
                    Ok(client) => client,
                    Err(error) => {
                        let _ = ready.send(Err(error)).await;
                        return;
                    }
                };
                let _ = ready.send(Ok(elapsed_us(started))).await;
                while let Ok(text) = client.next_chat().await {
                    if let Some(sent_us) = sent_from_text(&text) {
                        record(&sink, sent_us);
                    }
                }
            });
        }
        // The publisher is a member too: it hears its own messages and must keep answering.
        let mut inbox = builder.publisher();
        let mut publisher = Syncplay::connect(address, &format!("p{room}"), &room_name).await?;
        builder.tasks.spawn(async move {
            let padding = "x".repeat(PAYLOAD_BYTES - 20);
            loop {
                tokio::select! {
                    sent = inbox.recv() => {
                        let Some(sent_us) = sent else { break };
                        if publisher.chat(&format!("{sent_us}|{padding}")).is_err() {
                            break;
                        }
                    }
                    heard = publisher.next_chat() => {
                        if heard.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    builder.finish(shape.watchers(), vec![server_pid]).await
}
