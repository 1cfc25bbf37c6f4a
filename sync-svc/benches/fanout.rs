//! Fan-out benchmark: how fast a room change reaches every watcher over real gRPC streams on
//! loopback, beside an in-process tokio broadcast of the same events measured in the same run.
//!
//! `cargo bench -p sync-svc --bench fanout` runs two bounded scenarios (1 room × 1000 watchers
//! at 20 changes/s, 1000 rooms × 10 watchers at 1 change/s per room) for a few seconds each and
//! prints, per scenario and for the baseline:
//! * command → receive: from the client sending the `Seek` (its send time rides in the
//!   position) to each watcher decoding it; includes the RPC, access checks and the SQLite
//!   commit, so it bounds publish → receive from above (microsecond precision);
//! * publish → receive: from the server's `server_time` stamp at encoding (millisecond
//!   resolution) to each watcher decoding it;
//! * CPU per delivery: the whole process's CPU time (server, drivers and watchers alike) over
//!   the measured window, divided by deliveries.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a benchmark stops at any failure, and reports counts and ranks as f64 figures"
)]

#[path = "../tests/sync/helpers.rs"]
#[allow(dead_code, unused_imports, reason = "the benchmark uses a few of the tests' helpers")]
mod helpers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use helpers::{Peers, SyncApp, test_config, with_token};
use proto::sync::v1 as pb;
use tokio::sync::broadcast;

const MEASURE: Duration = Duration::from_secs(8);
const WATCHERS_PER_CONNECTION: usize = 100;

struct Scenario {
    name: &'static str,
    rooms: usize,
    watchers_per_room: usize,
    changes_per_second: f64,
}

#[derive(Default)]
struct Figures {
    command_to_receive_us: Vec<u64>,
    publish_to_receive_ms: Vec<u64>,
    cpu_seconds: f64,
}

fn percentile(sorted: &[u64], fraction: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index]
}

/// User plus system CPU seconds of this process so far.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit(')').next().unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, in clock ticks (100 per second).
    let ticks: u64 = fields.get(11..13).map_or(0, |pair| pair.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    ticks as f64 / 100.0
}

fn wall_micros() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros()).unwrap()
}

fn report(label: &str, figures: &mut Figures) {
    figures.command_to_receive_us.sort_unstable();
    figures.publish_to_receive_ms.sort_unstable();
    let deliveries = figures.command_to_receive_us.len();
    let cpu_per_delivery_us = if deliveries == 0 { 0.0 } else { figures.cpu_seconds * 1e6 / deliveries as f64 };
    let command = &figures.command_to_receive_us;
    let publish = &figures.publish_to_receive_ms;
    println!(
        "| {label} | {deliveries} | {:.2} | {:.2} | {} | {} | {cpu_per_delivery_us:.1} |",
        percentile(command, 0.50) as f64 / 1000.0,
        percentile(command, 0.99) as f64 / 1000.0,
        if publish.is_empty() { "–".to_owned() } else { format!("{}", percentile(publish, 0.50)) },
        if publish.is_empty() { "–".to_owned() } else { format!("{}", percentile(publish, 0.99)) },
    );
}

/// The same events through tokio broadcast channels inside the process, no gRPC, no database.
async fn baseline(scenario: &Scenario, payload_bytes: usize) -> Figures {
    let running = Arc::new(AtomicBool::new(true));
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for _ in 0..scenario.rooms {
        let (sender, _) = broadcast::channel::<(Instant, Bytes)>(64);
        for _ in 0..scenario.watchers_per_room {
            let mut receiver = sender.subscribe();
            receivers.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                while let Ok((sent, payload)) = receiver.recv().await {
                    std::hint::black_box(&payload);
                    latencies.push(u64::try_from(sent.elapsed().as_micros()).unwrap());
                }
                latencies
            }));
        }
        senders.push(sender);
    }
    let cpu_before = process_cpu_seconds();
    let interval = Duration::from_secs_f64(1.0 / scenario.changes_per_second);
    let mut drivers = Vec::new();
    for (index, sender) in senders.into_iter().enumerate() {
        let running = Arc::clone(&running);
        drivers.push(tokio::spawn(async move {
            // Spread the rooms' ticks over the interval, as independent rooms would be.
            tokio::time::sleep(interval.mul_f64((index % 1000) as f64 / 1000.0)).await;
            let mut ticker = tokio::time::interval(interval);
            let payload = Bytes::from(vec![7u8; payload_bytes]);
            while running.load(Ordering::Relaxed) {
                ticker.tick().await;
                let _ = sender.send((Instant::now(), payload.clone()));
            }
        }));
    }
    tokio::time::sleep(MEASURE).await;
    running.store(false, Ordering::Relaxed);
    for driver in drivers {
        driver.await.unwrap();
    }
    let cpu_seconds = process_cpu_seconds() - cpu_before;
    let mut figures = Figures { cpu_seconds, ..Figures::default() };
    for receiver in receivers {
        figures.command_to_receive_us.extend(receiver.await.unwrap());
    }
    figures
}

/// Real sync-svc: seeks through gRPC, watchers on `WatchRoom` streams over loopback.
async fn through_sync_svc(scenario: &Scenario) -> Figures {
    let peers = Peers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.access_cache_ttl = Duration::from_secs(600);
    config.presence_interval = Duration::from_secs(5);
    config.tick_interval = Duration::from_millis(200);
    let app = SyncApp::start(&peers, dir.path(), &config, svc_kit::clock::system()).await;
    let (owner_id, owner) = peers.user("Bench").await;
    let room_ids: Vec<String> = (0..scenario.rooms).map(|_| peers.rooms.create_room(&owner_id)).collect();

    // Load media in every room so that seeks apply.
    for room_id in &room_ids {
        let request = pb::ChangeMediaRequest {
            room_id: room_id.clone(),
            expected_version: 0,
            url: "https://media.example/bench.webm".to_owned(),
            title: "Bench".to_owned(),
            duration_ms: 0,
            library_item_id: String::new(),
        };
        app.client().change_media(with_token(request, &owner)).await.unwrap();
    }

    let total_watchers = scenario.rooms * scenario.watchers_per_room;
    let channels: Vec<_> =
        (0..total_watchers.div_ceil(WATCHERS_PER_CONNECTION)).map(|_| app.server.channel()).collect();
    let (ready_sender, mut ready) = tokio::sync::mpsc::channel::<()>(total_watchers);
    let mut watchers = Vec::new();
    for index in 0..total_watchers {
        let room_id = room_ids[index % scenario.rooms].clone();
        let channel = channels[index / WATCHERS_PER_CONNECTION].clone();
        let token = owner.clone();
        let ready_sender = ready_sender.clone();
        watchers.push(tokio::spawn(async move {
            let mut client = pb::sync_service_client::SyncServiceClient::new(channel);
            let request = with_token(pb::WatchRoomRequest { room_id }, &token);
            let mut events = client.watch_room(request).await.unwrap().into_inner();
            let mut command_latencies = Vec::new();
            let mut publish_latencies = Vec::new();
            let mut ready_sender = Some(ready_sender);
            while let Ok(Some(message)) = events.message().await {
                let now_us = wall_micros();
                match message.event {
                    Some(pb::watch_room_response::Event::Snapshot(_)) => {
                        if let Some(sender) = ready_sender.take() {
                            let _ = sender.send(()).await;
                        }
                    }
                    Some(pb::watch_room_response::Event::State(state)) if state.last_action() == pb::Action::Seek => {
                        let sent_us = state.timeline.unwrap().position_ms;
                        command_latencies.push(u64::try_from(now_us - sent_us).unwrap_or(0));
                        let published_ms = proto::ms_from_timestamp(&message.server_time.unwrap());
                        publish_latencies.push(u64::try_from(now_us / 1000 - published_ms).unwrap_or(0));
                    }
                    _ => {}
                }
            }
            (command_latencies, publish_latencies)
        }));
    }
    drop(ready_sender);
    for _ in 0..total_watchers {
        ready.recv().await.expect("every watcher got its snapshot");
    }

    let running = Arc::new(AtomicBool::new(true));
    let cpu_before = process_cpu_seconds();
    let interval = Duration::from_secs_f64(1.0 / scenario.changes_per_second);
    let mut drivers = Vec::new();
    for (index, room_id) in room_ids.iter().enumerate() {
        let running = Arc::clone(&running);
        let mut client = app.client();
        let room_id = room_id.clone();
        let token = owner.clone();
        drivers.push(tokio::spawn(async move {
            tokio::time::sleep(interval.mul_f64((index % 1000) as f64 / 1000.0)).await;
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut version = 1;
            while running.load(Ordering::Relaxed) {
                ticker.tick().await;
                let request =
                    pb::SeekRequest { room_id: room_id.clone(), expected_version: version, position_ms: wall_micros() };
                match client.seek(with_token(request, &token)).await {
                    Ok(response) => version = response.into_inner().state.unwrap().version,
                    Err(status) => panic!("seek failed: {status:?}"),
                }
            }
        }));
    }
    tokio::time::sleep(MEASURE).await;
    running.store(false, Ordering::Relaxed);
    for driver in drivers {
        driver.await.unwrap();
    }
    // Let the last changes arrive, then stop the server, which ends every stream.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_seconds = process_cpu_seconds() - cpu_before;
    app.server.stop().await;
    let mut figures = Figures { cpu_seconds, ..Figures::default() };
    for watcher in watchers {
        let (command, publish) = watcher.await.unwrap();
        figures.command_to_receive_us.extend(command);
        figures.publish_to_receive_ms.extend(publish);
    }
    figures
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let scenarios = [
        Scenario {
            name: "1 room × 1000 watchers @ 20/s", rooms: 1, watchers_per_room: 1000, changes_per_second: 20.0
        },
        Scenario {
            name: "1000 rooms × 10 watchers @ 1/s",
            rooms: 1000,
            watchers_per_room: 10,
            changes_per_second: 1.0,
        },
    ];
    println!("measured for {} s per run; latencies in ms, CPU in µs of process time per delivery\n", MEASURE.as_secs());
    println!("| run | deliveries | cmd→recv p50 | cmd→recv p99 | pub→recv p50 | pub→recv p99 | CPU/delivery µs |");
    println!("|---|---|---|---|---|---|---|");
    for scenario in &scenarios {
        let mut sync = runtime.block_on(through_sync_svc(scenario));
        report(&format!("sync-svc, {}", scenario.name), &mut sync);
        let mut base = runtime.block_on(baseline(scenario, 300));
        report(&format!("baseline broadcast, {}", scenario.name), &mut base);
    }
}
