//! Retention in sync-svc: `sync_logs` rows are deleted exactly when they are older than the
//! sync-logs period, counted in `xiaowo_retention_pruned_total`, while commands keep being
//! accepted during a prune of thousands of rows; the timeline and queue of a closed room go
//! exactly one closed-rooms period after it closed.

use std::time::Duration;

use crate::helpers::{ADMIN_TOKEN, Peers, SyncApp, end_status, test_config, watch, with_token};
use proto::sync::v1 as pb;
use svc_kit::clock::{Clock, ManualClock, SharedClock};
use svc_kit::retention::RetentionConfig;
use tonic::Code;

const START_MS: i64 = 1_800_000_000_000;
const SYNC_LOGS: Duration = Duration::from_secs(5 * 86_400);
/// Commands accepted at the start, so that a prune runs many batches.
const OLD_COMMANDS: i64 = 1500;

fn policy() -> RetentionConfig {
    RetentionConfig {
        sync_logs: SYNC_LOGS,
        interval: Duration::from_millis(50),
        batch: 25,
        ..RetentionConfig::keep_everything()
    }
}

fn pruned(metrics: &str) -> u64 {
    pruned_from(metrics, "sync_logs")
}

fn pruned_from(metrics: &str, table: &str) -> u64 {
    svc_kit::testing::pruned(metrics, "sync", table)
}

fn pass_finished(metrics: &str, now_ms: i64) -> bool {
    svc_kit::testing::last_retention_pass_ms(metrics, "sync").is_some_and(|done| done >= now_ms)
}

struct Fixture {
    app: SyncApp,
    clock: std::sync::Arc<ManualClock>,
    owner: String,
    room_id: String,
    _peers: Peers,
    _dir: tempfile::TempDir,
}

impl Fixture {
    async fn seek(&self, version: i64, position_ms: i64) -> pb::RoomState {
        let request = pb::SeekRequest { room_id: self.room_id.clone(), expected_version: version, position_ms };
        self.app.client().seek(with_token(request, &self.owner)).await.unwrap().into_inner().state.unwrap()
    }

    /// Waits until a retention pass as of the clock's time has finished.
    async fn pass_done(&self) -> String {
        svc_kit::testing::retention_pass_done(self.app.server.addr, "sync", self.clock.now_ms()).await
    }

    /// Creation times of every log row of the room, oldest first.
    async fn log_times(&self) -> Vec<i64> {
        let mut times = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = pb::ListSyncLogsRequest {
                room_id: self.room_id.clone(),
                end_time: Some(proto::timestamp_from_ms(self.clock.now_ms() + 1)),
                page_size: 500,
                page_token,
                ..Default::default()
            };
            let response =
                self.app.admin().list_sync_logs(with_token(request, ADMIN_TOKEN)).await.unwrap().into_inner();
            times.extend(
                response.sync_logs.iter().map(|log| proto::ms_from_timestamp(log.create_time.as_ref().unwrap())),
            );
            if response.next_page_token.is_empty() {
                return times;
            }
            page_token = response.next_page_token;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_logs_are_pruned_exactly_past_their_period() {
    let peers = Peers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let shared: SharedClock = clock.clone();
    let app = SyncApp::start_with_retention(&peers, dir.path(), &test_config(), &policy(), shared).await;
    let (owner_id, owner) = peers.user("Owner").await;
    let room_id = peers.rooms.create_room(&owner_id);
    let fixture = Fixture { app, clock, owner, room_id, _peers: peers, _dir: dir };

    let request = pb::ChangeMediaRequest {
        room_id: fixture.room_id.clone(),
        expected_version: 0,
        url: "https://media.example/film.webm".to_owned(),
        title: "Film".to_owned(),
        duration_ms: 3_600_000,
        library_item_id: String::new(),
    };
    let loaded = fixture.app.client().change_media(with_token(request, &fixture.owner)).await.unwrap();
    let mut version = loaded.into_inner().state.unwrap().version;
    for position in 1..OLD_COMMANDS {
        version = fixture.seek(version, position).await.version;
    }
    fixture.clock.advance(Duration::from_millis(1));
    version = fixture.seek(version, 0).await.version;
    let times = fixture.log_times().await;
    let old_commands = usize::try_from(OLD_COMMANDS).unwrap();
    assert_eq!(times.iter().filter(|&&time| time == START_MS).count(), old_commands);
    assert_eq!(times.len(), old_commands + 1);

    // Exactly one period after the oldest rows: all kept.
    fixture.clock.advance(SYNC_LOGS - Duration::from_millis(1));
    let metrics = fixture.pass_done().await;
    assert_eq!(pruned(&metrics), 0);
    assert_eq!(fixture.log_times().await.len(), old_commands + 1);

    // One millisecond more: the rows of START_MS go, while commands are still accepted.
    fixture.clock.advance(Duration::from_millis(1));
    let mut accepted = 0;
    let metrics = loop {
        version = fixture.seek(version, accepted).await.version;
        accepted += 1;
        let metrics = fixture.app.metrics().await;
        if pass_finished(&metrics, fixture.clock.now_ms()) {
            break metrics;
        }
    };
    assert_eq!(pruned(&metrics), u64::try_from(OLD_COMMANDS).unwrap());
    let times = fixture.log_times().await;
    assert_eq!(i64::try_from(times.len()).unwrap(), 1 + accepted);
    assert_eq!(times.first(), Some(&(START_MS + 1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_and_queue_of_a_closed_room_go_one_period_after_it_closed() {
    const CLOSED_ROOMS: Duration = Duration::from_secs(2 * 86_400);
    let peers = Peers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(START_MS);
    let shared: SharedClock = clock.clone();
    let policy = RetentionConfig { closed_rooms: CLOSED_ROOMS, ..policy() };
    let app = SyncApp::start_with_retention(&peers, dir.path(), &test_config(), &policy, shared).await;
    peers.rooms.wait_for_follower().await;
    let (owner_id, owner) = peers.user("Owner").await;

    // Two rooms with a timeline and a queue, closed a millisecond apart.
    let mut rooms = Vec::new();
    for index in 0..2 {
        let room_id = peers.rooms.create_room(&owner_id);
        let request = pb::AddQueueItemRequest {
            room_id: room_id.clone(),
            expected_version: None,
            url: format!("https://media.example/{index}.webm"),
            title: String::new(),
            duration_ms: 60_000,
            library_item_id: String::new(),
        };
        app.client().add_queue_item(with_token(request, &owner)).await.unwrap();
        let mut events = watch(&app, &room_id, &owner).await;
        peers.rooms.close(&room_id);
        // The stream ends once sync-svc has heard of the closing (and recorded it).
        assert_eq!(end_status(&mut events).await.code(), Code::FailedPrecondition);
        rooms.push(room_id);
        clock.advance(Duration::from_millis(1));
    }
    let fixture = Fixture { app, clock, owner, room_id: rooms[0].clone(), _peers: peers, _dir: dir };

    // Now START_MS + 2 ms; exactly one period after the first closing: kept.
    fixture.clock.advance(CLOSED_ROOMS - Duration::from_millis(2));
    let metrics = fixture.pass_done().await;
    assert_eq!(pruned_from(&metrics, "closed_rooms"), 0);
    assert_eq!(pruned_from(&metrics, "room_states"), 0);

    fixture.clock.advance(Duration::from_millis(1));
    let metrics = fixture.pass_done().await;
    assert_eq!(pruned_from(&metrics, "closed_rooms"), 1);
    assert_eq!(pruned_from(&metrics, "room_states"), 1);
    assert_eq!(pruned_from(&metrics, "queue_items"), 1);

    fixture.clock.advance(Duration::from_millis(1));
    let metrics = fixture.pass_done().await;
    assert_eq!(pruned_from(&metrics, "closed_rooms"), 2);
    assert_eq!(pruned_from(&metrics, "room_states"), 2);
    assert_eq!(pruned_from(&metrics, "queue_items"), 2);
    // Log rows are not the closed-rooms period's business.
    assert_eq!(pruned(&metrics), 0);
}
