//! sync-svc end to end: real servers on loopback ports over fresh SQLite files, called through
//! generated clients.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::helpers::{
    ADMIN_TOKEN, Events, Peers, SyncApp, conflict_state, end_status, next_event, next_state, test_config,
    violated_fields, watch, with_token,
};
use proto::room::v1 as room_pb;
use proto::sync::v1 as pb;
use proto::sync::v1::watch_room_response::Event;
use svc_kit::clock::{ManualClock, SharedClock};
use tonic::Code;

const START_MS: i64 = 1_800_000_000_000;

struct Fixture {
    peers: Peers,
    app: SyncApp,
    _dir: tempfile::TempDir,
    owner_id: String,
    owner: String,
    room_id: String,
}

impl Fixture {
    async fn start() -> Self {
        Self::start_with(test_config(), svc_kit::clock::system()).await
    }

    async fn start_with(config: sync_svc::Config, clock: SharedClock) -> Self {
        Self::start_on(Peers::start().await, config, clock).await
    }

    async fn start_on(peers: Peers, config: sync_svc::Config, clock: SharedClock) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let app = SyncApp::start(&peers, dir.path(), &config, clock).await;
        let (owner_id, owner) = peers.user("Owner").await;
        let room_id = peers.rooms.create_room(&owner_id);
        Self { peers, app, _dir: dir, owner_id, owner, room_id }
    }

    /// A fixture whose session service lets `people` sessions be created at once: every member
    /// of a crowd is a different person.
    async fn for_crowd(people: u32, config: sync_svc::Config) -> Self {
        let peers = Peers::start_with(|common| common.session.create_burst = people).await;
        Self::start_on(peers, config, svc_kit::clock::system()).await
    }

    /// A member named `name` watching, with the list its stream's first event gave.
    async fn viewer(&self, name: &str) -> (Events, PresenceView) {
        let (_, token) = self.member(name, room_pb::Role::Member).await;
        let mut events = watch(&self.app, &self.room_id, &token).await;
        let mut view = PresenceView::default();
        view.apply(&next_event(&mut events).await.unwrap());
        (events, view)
    }

    async fn member(&self, name: &str, role: room_pb::Role) -> (String, String) {
        let (user_id, token) = self.peers.user(name).await;
        self.peers.rooms.join(&self.room_id, &user_id, role);
        (user_id, token)
    }

    /// Who watches, as a fresh `GetRoomState` lists them (`PresenceView::summary`'s shape).
    async fn watchers(&self) -> Vec<(String, i32, i64)> {
        let request = pb::GetRoomStateRequest { room_id: self.room_id.clone() };
        let response = self.app.client().get_room_state(with_token(request, &self.owner)).await.unwrap();
        let mut watchers: Vec<_> = response
            .into_inner()
            .watchers
            .into_iter()
            .map(|watcher| (watcher.user_id, watcher.state, watcher.offset_ms))
            .collect();
        watchers.sort();
        watchers
    }

    async fn state(&self, token: &str) -> pb::RoomState {
        let request = with_token(pb::GetRoomStateRequest { room_id: self.room_id.clone() }, token);
        self.app.client().get_room_state(request).await.unwrap().into_inner().state.unwrap()
    }

    async fn load_media(&self, duration_ms: i64) -> pb::RoomState {
        let version = self.state(&self.owner).await.version;
        let request = pb::ChangeMediaRequest {
            room_id: self.room_id.clone(),
            expected_version: version,
            url: "https://media.example/film.webm".to_owned(),
            title: "Film".to_owned(),
            duration_ms,
            library_item_id: String::new(),
        };
        self.app.client().change_media(with_token(request, &self.owner)).await.unwrap().into_inner().state.unwrap()
    }

    async fn play(&self, version: i64, start_ms: Option<i64>) -> Result<pb::RoomState, tonic::Status> {
        let request = pb::PlayRequest {
            room_id: self.room_id.clone(),
            expected_version: version,
            start_time: start_ms.map(proto::timestamp_from_ms),
        };
        Ok(self.app.client().play(with_token(request, &self.owner)).await?.into_inner().state.unwrap())
    }

    async fn pause(&self, version: i64) -> pb::RoomState {
        let request = pb::PauseRequest { room_id: self.room_id.clone(), expected_version: version, position_ms: None };
        self.app.client().pause(with_token(request, &self.owner)).await.unwrap().into_inner().state.unwrap()
    }

    async fn seek(&self, token: &str, version: i64, position_ms: i64) -> Result<pb::RoomState, tonic::Status> {
        let request = pb::SeekRequest { room_id: self.room_id.clone(), expected_version: version, position_ms };
        Ok(self.app.client().seek(with_token(request, token)).await?.into_inner().state.unwrap())
    }

    async fn set_rate(&self, version: i64, rate: f64, start_ms: Option<i64>) -> Result<pb::RoomState, tonic::Status> {
        let request = pb::SetRateRequest {
            room_id: self.room_id.clone(),
            expected_version: version,
            rate,
            start_time: start_ms.map(proto::timestamp_from_ms),
        };
        Ok(self.app.client().set_rate(with_token(request, &self.owner)).await?.into_inner().state.unwrap())
    }

    async fn add_to_queue(&self, url: &str, duration_ms: i64) -> pb::AddQueueItemResponse {
        let request = pb::AddQueueItemRequest {
            room_id: self.room_id.clone(),
            expected_version: None,
            url: url.to_owned(),
            title: String::new(),
            duration_ms,
            library_item_id: String::new(),
        };
        self.app.client().add_queue_item(with_token(request, &self.owner)).await.unwrap().into_inner()
    }

    async fn report(&self, token: &str, state: pb::PlayerState, offset_ms: i64, media_id: &str) {
        let request = pb::ReportStatusRequest {
            room_id: self.room_id.clone(),
            state: state.into(),
            offset_ms,
            round_trip_ms: 20,
            ignore_wait: false,
            media_id: media_id.to_owned(),
            offset_uncertainty_ms: 0,
            load_error: None,
        };
        self.app.client().report_status(with_token(request, token)).await.unwrap();
    }

    async fn sync_logs(&self) -> Vec<pb::SyncLog> {
        let request = pb::ListSyncLogsRequest { room_id: self.room_id.clone(), ..Default::default() };
        self.app.admin().list_sync_logs(with_token(request, ADMIN_TOKEN)).await.unwrap().into_inner().sync_logs
    }
}

fn media_id(state: &pb::RoomState) -> String {
    state.timeline.as_ref().and_then(|timeline| timeline.media.as_ref()).map(|media| media.media_id.clone()).unwrap()
}

fn anchor_ms(state: &pb::RoomState) -> i64 {
    proto::ms_from_timestamp(state.timeline.as_ref().unwrap().anchor_time.as_ref().unwrap())
}

#[tokio::test]
async fn fifty_concurrent_seeks_on_one_version_accept_exactly_one() {
    let fixture = Arc::new(Fixture::start().await);
    let loaded = fixture.load_media(0).await;

    let mut seeks = tokio::task::JoinSet::new();
    for index in 0..50 {
        let fixture = Arc::clone(&fixture);
        let version = loaded.version;
        seeks.spawn(async move { fixture.seek(&fixture.owner, version, 1_000 * (index + 1)).await });
    }
    let results = seeks.join_all().await;

    let accepted: Vec<_> = results.iter().filter_map(|result| result.as_ref().ok()).collect();
    assert_eq!(accepted.len(), 1, "exactly one seek wins");
    let winner = accepted[0];
    assert_eq!(winner.version, loaded.version + 1);
    for status in results.iter().filter_map(|result| result.as_ref().err()) {
        assert_eq!(status.code(), Code::Aborted);
        let current = conflict_state(status);
        assert_eq!(current.version, winner.version, "the refusal carries the current state");
        assert_eq!(current.timeline.as_ref().unwrap().position_ms, winner.timeline.as_ref().unwrap().position_ms);
    }
    let stored = fixture.state(&fixture.owner).await;
    assert_eq!(stored.version, winner.version);

    let logs = fixture.sync_logs().await;
    let actions: Vec<_> = logs.iter().map(|log| (log.action(), log.version)).collect();
    assert_eq!(actions, [(pb::Action::ChangeMedia, 1), (pb::Action::Seek, 2)], "a log row per accepted command only");
    assert_eq!(logs[1].user_id, fixture.owner_id);
    assert_eq!(logs[1].position_ms, winner.timeline.as_ref().unwrap().position_ms);
}

#[tokio::test]
async fn positions_extrapolate_on_the_injected_clock() {
    let clock = ManualClock::new(START_MS);
    let fixture = Fixture::start_with(test_config(), clock.clone()).await;
    let loaded = fixture.load_media(0).await;

    let scheduled = fixture.play(loaded.version, Some(START_MS + 500)).await.unwrap();
    assert_eq!(anchor_ms(&scheduled), START_MS + 500, "starts at the requested server time");
    assert_eq!(scheduled.timeline.as_ref().unwrap().position_ms, 0);

    clock.advance(Duration::from_millis(10_500));
    let faster = fixture.set_rate(scheduled.version, 2.0, Some(START_MS + 10_500)).await.unwrap();
    assert_eq!(faster.timeline.as_ref().unwrap().position_ms, 10_000, "10 s played after the scheduled start");
    assert_eq!(anchor_ms(&faster), START_MS + 10_500);

    clock.advance(Duration::from_millis(1_000));
    let paused = fixture.pause(faster.version).await;
    assert_eq!(paused.timeline.as_ref().unwrap().position_ms, 12_000, "twice as fast for 1 s");
    assert!(paused.timeline.as_ref().unwrap().paused);

    clock.advance(Duration::from_secs(60));
    assert_eq!(fixture.state(&fixture.owner).await.timeline.unwrap().position_ms, 12_000, "paused stays put");

    let clock_sample = fixture.app.client().get_clock(pb::GetClockRequest {}).await.unwrap().into_inner();
    assert_eq!(proto::ms_from_timestamp(&clock_sample.receive_time.unwrap()), START_MS + 71_500);
}

#[tokio::test]
async fn play_without_a_start_time_is_scheduled_ahead_and_bounded() {
    let clock = ManualClock::new(START_MS);
    let fixture = Fixture::start_with(test_config(), clock.clone()).await;
    let loaded = fixture.load_media(0).await;

    let too_far = fixture.play(loaded.version, Some(START_MS + 11_000)).await.unwrap_err();
    assert_eq!(too_far.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&too_far), ["start_time"]);

    let playing = fixture.play(loaded.version, None).await.unwrap();
    assert_eq!(anchor_ms(&playing), START_MS + 300, "the default lead");

    let paused = fixture.pause(playing.version).await;
    let past = fixture.play(paused.version, Some(START_MS - 5_000)).await.unwrap();
    assert_eq!(anchor_ms(&past), START_MS, "a start time already past means now");
}

#[tokio::test]
async fn rate_changes_are_scheduled_ahead_and_play_on_at_the_old_rate_until_then() {
    let clock = ManualClock::new(START_MS);
    let fixture = Fixture::start_with(test_config(), clock.clone()).await;
    let mut events = watch(&fixture.app, &fixture.room_id, &fixture.owner).await;
    let loaded = fixture.load_media(0).await;
    let playing = fixture.play(loaded.version, Some(START_MS)).await.unwrap();
    clock.advance(Duration::from_secs(10));

    let faster = fixture.set_rate(playing.version, 1.5, None).await.unwrap();
    let timeline = faster.timeline.as_ref().unwrap();
    assert_eq!(anchor_ms(&faster), START_MS + 10_300, "the default lead, as for a play");
    assert_eq!((timeline.rate, timeline.lead_in_rate, timeline.position_ms), (1.5, 1.0, 10_300));
    assert!(!timeline.paused, "nobody pauses for a rate change");
    let streamed = loop {
        let state = next_state(&mut events).await;
        if state.version == faster.version {
            break state;
        }
    };
    assert_eq!(streamed, faster, "watchers get the scheduled change");
    assert_eq!(fixture.state(&fixture.owner).await, faster, "and so does a later reader");

    let too_far = fixture.set_rate(faster.version, 1.0, Some(START_MS + 20_001)).await.unwrap_err();
    assert_eq!((too_far.code(), violated_fields(&too_far)), (Code::InvalidArgument, vec!["start_time".to_owned()]));
    let both = fixture.set_rate(faster.version, 9.0, Some(START_MS + 20_001)).await.unwrap_err();
    assert_eq!(violated_fields(&both), ["rate", "start_time"], "every problem is reported");

    // After the instant, a change at a requested time already past applies now.
    clock.advance(Duration::from_secs(1));
    let back = fixture.set_rate(faster.version, 1.0, Some(START_MS)).await.unwrap();
    assert_eq!(anchor_ms(&back), START_MS + 11_000);
    assert_eq!(back.timeline.as_ref().unwrap().position_ms, 11_350, "0.3 s at 1× then 0.7 s at 1.5×");
}

#[tokio::test]
async fn control_mode_and_membership_decide_who_may_act() {
    let fixture = Fixture::start().await;
    let (_, member) = fixture.member("Member", room_pb::Role::Member).await;
    let (_, moderator) = fixture.member("Moderator", room_pb::Role::Moderator).await;
    let (_, outsider) = fixture.peers.user("Outsider").await;
    let loaded = fixture.load_media(0).await;

    let by_member = fixture.seek(&member, loaded.version, 1_000).await.unwrap();
    fixture.peers.rooms.set_control_mode(&fixture.room_id, room_pb::ControlMode::Moderators);
    let refused = fixture.seek(&member, by_member.version, 2_000).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    let by_moderator = fixture.seek(&moderator, by_member.version, 3_000).await.unwrap();

    fixture.peers.rooms.set_control_mode(&fixture.room_id, room_pb::ControlMode::Owner);
    assert_eq!(fixture.seek(&moderator, by_moderator.version, 4_000).await.unwrap_err().code(), Code::PermissionDenied);
    fixture.seek(&fixture.owner, by_moderator.version, 5_000).await.unwrap();

    let request = with_token(pb::GetRoomStateRequest { room_id: fixture.room_id.clone() }, &outsider);
    assert_eq!(fixture.app.client().get_room_state(request).await.unwrap_err().code(), Code::PermissionDenied);
    let request = with_token(pb::WatchRoomRequest { room_id: fixture.room_id.clone() }, &outsider);
    assert_eq!(fixture.app.client().watch_room(request).await.unwrap_err().code(), Code::PermissionDenied);
    let anonymous = tonic::Request::new(pb::GetRoomStateRequest { room_id: fixture.room_id.clone() });
    assert_eq!(fixture.app.client().get_room_state(anonymous).await.unwrap_err().code(), Code::Unauthenticated);
    // Reports are sent in the background, gathered for a moment first.
    let reports = &fixture.peers.rooms.activity_reports;
    svc_kit::testing::eventually("activity reported to room-svc", async || reports.load(Ordering::SeqCst) >= 1).await;
}

#[tokio::test]
async fn queue_operations_and_auto_advance() {
    let clock = ManualClock::new(START_MS);
    let fixture = Fixture::start_with(test_config(), clock.clone()).await;
    let mut events = watch(&fixture.app, &fixture.room_id, &fixture.owner).await;
    assert_eq!(next_state(&mut events).await.version, 0);

    let first = fixture.add_to_queue("https://media.example/1.webm", 1_000).await;
    let second = fixture.add_to_queue("https://media.example/2.webm", 0).await;
    let third = fixture.add_to_queue("http://media.example/3.webm", 0).await;
    let (first_id, second_id, third_id) =
        (first.item.unwrap().item_id, second.item.unwrap().item_id, third.item.unwrap().item_id);

    let request = pb::MoveQueueItemRequest {
        room_id: fixture.room_id.clone(),
        expected_version: third.state.as_ref().unwrap().version,
        item_id: third_id.clone(),
        new_index: 1,
    };
    let moved = fixture.app.client().move_queue_item(with_token(request, &fixture.owner)).await.unwrap();
    let moved = moved.into_inner().state.unwrap();
    let order: Vec<_> = moved.queue.iter().map(|item| item.item_id.clone()).collect();
    assert_eq!(order, [first_id.clone(), third_id.clone(), second_id.clone()]);

    let request = pb::RemoveQueueItemRequest {
        room_id: fixture.room_id.clone(),
        expected_version: moved.version,
        item_id: second_id.clone(),
    };
    let removed = fixture.app.client().remove_queue_item(with_token(request, &fixture.owner)).await.unwrap();
    let removed = removed.into_inner().state.unwrap();
    let request = pb::RemoveQueueItemRequest {
        room_id: fixture.room_id.clone(),
        expected_version: removed.version,
        item_id: second_id,
    };
    let missing = fixture.app.client().remove_queue_item(with_token(request, &fixture.owner)).await.unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let request = pb::PlayNextRequest { room_id: fixture.room_id.clone(), expected_version: removed.version };
    let playing = fixture.app.client().play_next(with_token(request, &fixture.owner)).await.unwrap();
    let playing = playing.into_inner().state.unwrap();
    assert_eq!(media_id(&playing), first_id);
    assert!(!playing.timeline.as_ref().unwrap().paused);

    // The first item lasts 1 s: past its end (after the start lead), the server advances.
    clock.advance(Duration::from_millis(1_400));
    let advanced = loop {
        let state = next_state(&mut events).await;
        if state.last_action() == pb::Action::AutoAdvance {
            break state;
        }
    };
    assert_eq!(media_id(&advanced), third_id);
    assert!(advanced.queue.is_empty());
    assert_eq!(advanced.last_action_user_id, "", "the server made the change");

    // The third item's length is unknown: a member reporting its end advances the room, and
    // a late report of the same end changes nothing.
    fixture.report(&fixture.owner, pb::PlayerState::Ended, 0, &third_id).await;
    let ended = fixture.state(&fixture.owner).await;
    assert_eq!(ended.last_action(), pb::Action::AutoAdvance);
    assert_eq!(ended.version, advanced.version + 1);
    assert!(ended.timeline.as_ref().unwrap().paused, "nothing left to play: paused at the end");
    fixture.report(&fixture.owner, pb::PlayerState::Ended, 0, &third_id).await;
    assert_eq!(fixture.state(&fixture.owner).await.version, ended.version);

    let request = pb::PlayNextRequest { room_id: fixture.room_id.clone(), expected_version: ended.version };
    let empty = fixture.app.client().play_next(with_token(request, &fixture.owner)).await.unwrap_err();
    assert_eq!(empty.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn state_and_version_survive_a_restart() {
    let peers = Peers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (owner_id, owner) = peers.user("Owner").await;
    let room_id = peers.rooms.create_room(&owner_id);
    let config = test_config();

    let before = {
        let app = SyncApp::start(&peers, dir.path(), &config, svc_kit::clock::system()).await;
        let request = pb::ChangeMediaRequest {
            room_id: room_id.clone(),
            expected_version: 0,
            url: "https://media.example/a.mp4".to_owned(),
            title: "A".to_owned(),
            duration_ms: 60_000,
            library_item_id: String::new(),
        };
        let loaded = app.client().change_media(with_token(request, &owner)).await.unwrap().into_inner();
        let request = pb::AddQueueItemRequest {
            room_id: room_id.clone(),
            expected_version: Some(loaded.state.unwrap().version),
            url: "https://media.example/b.mp4".to_owned(),
            title: "B".to_owned(),
            duration_ms: 0,
            library_item_id: String::new(),
        };
        let queued = app.client().add_queue_item(with_token(request, &owner)).await.unwrap().into_inner();
        let request = pb::SeekRequest {
            room_id: room_id.clone(),
            expected_version: queued.state.unwrap().version,
            position_ms: 42_000,
        };
        let sought = app.client().seek(with_token(request, &owner)).await.unwrap().into_inner().state.unwrap();
        let now = proto::timestamp_from_ms(svc_kit::clock::system().now_ms());
        let request =
            pb::PlayRequest { room_id: room_id.clone(), expected_version: sought.version, start_time: Some(now) };
        let playing = app.client().play(with_token(request, &owner)).await.unwrap().into_inner().state.unwrap();
        let switch_at = proto::timestamp_from_ms(svc_kit::clock::system().now_ms() + 9_000);
        let request = pb::SetRateRequest {
            room_id: room_id.clone(),
            expected_version: playing.version,
            rate: 2.0,
            start_time: Some(switch_at),
        };
        let faster = app.client().set_rate(with_token(request, &owner)).await.unwrap().into_inner().state.unwrap();
        assert_eq!(faster.timeline.as_ref().unwrap().lead_in_rate, 1.0);
        app.server.stop().await;
        faster
    };

    let app = SyncApp::start(&peers, dir.path(), &config, svc_kit::clock::system()).await;
    let request = with_token(pb::GetRoomStateRequest { room_id: room_id.clone() }, &owner);
    let after = app.client().get_room_state(request).await.unwrap().into_inner().state.unwrap();
    assert_eq!(after, before, "state, queue, scheduled rate change and version intact");
    assert_eq!(after.version, 5);
    let request = pb::SeekRequest { room_id, expected_version: 4, position_ms: 1 };
    assert_eq!(app.client().seek(with_token(request, &owner)).await.unwrap_err().code(), Code::Aborted);
}

/// A stream's view of who watches: the snapshot's list with every delta applied.
#[derive(Default)]
struct PresenceView(std::collections::BTreeMap<String, pb::Watcher>);

impl PresenceView {
    fn apply<'a>(&mut self, event: &'a Event) -> Option<&'a pb::PresenceDelta> {
        match event {
            Event::Snapshot(snapshot) => {
                self.0 = snapshot.watchers.iter().map(|watcher| (watcher.user_id.clone(), watcher.clone())).collect();
                None
            }
            Event::PresenceDelta(delta) => {
                for watcher in &delta.watchers {
                    self.0.insert(watcher.user_id.clone(), watcher.clone());
                }
                for user_id in &delta.left_user_ids {
                    self.0.remove(user_id);
                }
                if !delta.more {
                    assert_eq!(
                        usize::try_from(delta.watcher_count).ok(),
                        Some(self.0.len()),
                        "the delta's count matches the applied list once its last page is in"
                    );
                }
                Some(delta)
            }
            _ => None,
        }
    }

    fn summary(&self) -> Vec<(String, i32, i64)> {
        self.0.values().map(|watcher| (watcher.user_id.clone(), watcher.state, watcher.offset_ms)).collect()
    }
}

#[tokio::test]
async fn presence_deltas_carry_only_changes_and_converge_to_a_fresh_snapshot() {
    let fixture = Fixture::for_crowd(100, test_config()).await;
    let (mut events, mut view) = fixture.viewer("Watcher").await;

    // Thirty people, each with their own session and stream, join; every third reports its
    // player; then ten of them close their streams.
    let mut others = Vec::new();
    for index in 0..30 {
        let (_, token) = fixture.member(&format!("Person {index}"), room_pb::Role::Member).await;
        let stream = watch(&fixture.app, &fixture.room_id, &token).await;
        others.push((token, stream));
    }
    for (index, (token, _)) in others.iter().enumerate().step_by(3) {
        fixture.report(token, pb::PlayerState::Ready, i64::try_from(index).unwrap(), "").await;
    }
    others.truncate(20);

    // Settled when the ten closed streams are gone from the server's list and the stream's
    // view agrees with it.
    loop {
        let now = fixture.watchers().await;
        if now.len() == 21 && view.summary() == now {
            break;
        }
        view.apply(&next_event(&mut events).await.unwrap());
    }

    // Once settled, one more person costs one entry per stream, not the room's list.
    let (newcomer_id, newcomer) = fixture.member("Newcomer", room_pb::Role::Member).await;
    let _newcomer_events = watch(&fixture.app, &fixture.room_id, &newcomer).await;
    let delta = loop {
        let event = next_event(&mut events).await.unwrap();
        if let Some(delta) = view.apply(&event)
            && view.0.contains_key(&newcomer_id)
        {
            break delta.clone();
        }
    };
    assert_eq!(
        delta.watchers.iter().map(|watcher| watcher.user_id.as_str()).collect::<Vec<_>>(),
        [newcomer_id.as_str()]
    );
    assert!(delta.left_user_ids.is_empty());
    assert_eq!(delta.watcher_count, 22);
    assert_eq!(view.summary(), fixture.watchers().await);
}

/// Entries one snapshot or presence message lists at most.
const ENTRIES_PER_MESSAGE: usize = 50;

/// Checks one message of a paged list: at most [`ENTRIES_PER_MESSAGE`] entries.
fn assert_one_page(event: &Event) {
    let entries = match event {
        Event::Snapshot(snapshot) => snapshot.watchers.len(),
        Event::PresenceDelta(delta) => delta.watchers.len() + delta.left_user_ids.len(),
        _ => 0,
    };
    assert!(entries <= ENTRIES_PER_MESSAGE, "{entries} entries in one message");
}

#[tokio::test]
async fn large_rooms_reach_streams_in_pages_that_build_the_whole_list() {
    let mut config = test_config();
    // Long enough that the crowd leaving below is one change of 120 entries.
    config.presence_interval = Duration::from_secs(2);
    let fixture = Fixture::for_crowd(200, config).await;
    let (mut first_events, mut first_view) = fixture.viewer("First").await;

    // 120 people, each with their own session and stream.
    let mut crowd = Vec::new();
    for index in 0..120 {
        let (_, token) = fixture.member(&format!("Person {index}"), room_pb::Role::Member).await;
        crowd.push(watch(&fixture.app, &fixture.room_id, &token).await);
    }
    while first_view.0.len() < 121 {
        let event = next_event(&mut first_events).await.unwrap();
        assert_one_page(&event);
        first_view.apply(&event);
    }

    // A newcomer's stream starts with the snapshot's first page, then the rest of the list
    // (the newcomer included) in pages, before anything else.
    let (newcomer_id, newcomer) = fixture.member("Newcomer", room_pb::Role::Member).await;
    let mut events = watch(&fixture.app, &fixture.room_id, &newcomer).await;
    let mut view = PresenceView::default();
    let snapshot = next_event(&mut events).await.unwrap();
    let Event::Snapshot(first_page) = &snapshot else { panic!("expected a snapshot first, got {snapshot:?}") };
    assert_eq!(first_page.watchers.len(), ENTRIES_PER_MESSAGE);
    view.apply(&snapshot);
    let mut pages = Vec::new();
    loop {
        let event = next_event(&mut events).await.unwrap();
        let Event::PresenceDelta(page) = &event else { panic!("the snapshot's pages come first, got {event:?}") };
        assert!(page.left_user_ids.is_empty());
        assert_eq!(page.watcher_count, 122);
        pages.push(page.watchers.len());
        let more = page.more;
        view.apply(&event);
        if !more {
            break;
        }
    }
    assert_eq!(pages, [50, 22], "122 watchers: the snapshot's 50, then 50 and 22");
    assert!(view.0.contains_key(&newcomer_id));
    assert_eq!(view.summary(), fixture.watchers().await);

    // The crowd leaves at once: one change of 120 entries, sent in pages of at most 50 that
    // bring both streams to the server's list.
    drop(crowd);
    let mut paged = false;
    for (events, view) in [(&mut events, &mut view), (&mut first_events, &mut first_view)] {
        while view.0.len() > 2 {
            let event = next_event(events).await.unwrap();
            assert_one_page(&event);
            paged |= matches!(&event, Event::PresenceDelta(delta) if delta.more);
            view.apply(&event);
        }
    }
    assert!(paged, "a change of more than 50 entries came in pages");
    assert_eq!(view.summary(), fixture.watchers().await);
    assert_eq!(first_view.summary(), view.summary());
}

#[tokio::test]
async fn streams_start_with_a_snapshot_then_carry_changes_presence_and_heartbeats() {
    let mut config = test_config();
    config.heartbeat_interval = Duration::from_millis(200);
    let fixture = Fixture::start_with(config, svc_kit::clock::system()).await;
    let (viewer_id, viewer) = fixture.member("Viewer", room_pb::Role::Member).await;
    let loaded = fixture.load_media(0).await;

    let mut events = watch(&fixture.app, &fixture.room_id, &viewer).await;
    match next_event(&mut events).await.unwrap() {
        Event::Snapshot(snapshot) => assert_eq!(snapshot.state.unwrap(), loaded),
        other => panic!("expected a snapshot first, got {other:?}"),
    }

    let sought = fixture.seek(&fixture.owner, loaded.version, 7_000).await.unwrap();
    assert_eq!(next_state(&mut events).await, sought);

    fixture.report(&viewer, pb::PlayerState::Ready, -35, "").await;
    let presence = loop {
        if let Event::PresenceDelta(presence) = next_event(&mut events).await.unwrap()
            && presence.watchers.iter().any(|watcher| watcher.state() == pb::PlayerState::Ready)
        {
            break presence;
        }
    };
    let watcher = presence.watchers.iter().find(|watcher| watcher.user_id == viewer_id).unwrap();
    assert_eq!((watcher.offset_ms, watcher.round_trip_ms, watcher.display_name.as_str()), (-35, 20, "Viewer"));
    assert_eq!(
        watcher.offset_uncertainty_ms, 10,
        "a report without uncertainty is as uncertain as half its round trip"
    );

    // A client that knows its clock better says so, and others see it.
    let request = pb::ReportStatusRequest {
        room_id: fixture.room_id.clone(),
        state: pb::PlayerState::Ready.into(),
        offset_ms: 4,
        round_trip_ms: 90,
        offset_uncertainty_ms: 3,
        ..Default::default()
    };
    fixture.app.client().report_status(with_token(request, &viewer)).await.unwrap();
    loop {
        if let Event::PresenceDelta(presence) = next_event(&mut events).await.unwrap()
            && let Some(watcher) = presence.watchers.iter().find(|watcher| watcher.user_id == viewer_id)
            && watcher.offset_ms == 4
        {
            assert_eq!((watcher.offset_uncertainty_ms, watcher.round_trip_ms), (3, 90));
            break;
        }
    }

    let mut heartbeats = 0;
    while heartbeats < 2 {
        if let Event::Heartbeat(_) = next_event(&mut events).await.unwrap() {
            heartbeats += 1;
        }
    }

    // The histogram holds how far each player may be from the room: 35 + 10 ms, then 4 + 3 ms.
    let metrics = fixture.app.metrics().await;
    assert!(metrics.contains("xiaowo_sync_drift_seconds_count 2"), "the reported drift is in the histogram");
    assert!(metrics.contains("xiaowo_sync_drift_seconds_bucket{le=\"0.01\"} 1"));
    assert!(metrics.contains("xiaowo_sync_drift_seconds_bucket{le=\"0.04\"} 1"), "45 ms is not within 40 ms");
    assert!(metrics.contains("xiaowo_sync_drift_seconds_bucket{le=\"0.08\"} 2"));
}

#[tokio::test]
async fn heartbeats_come_only_after_a_quiet_interval() {
    let mut config = test_config();
    config.heartbeat_interval = Duration::from_secs(2);
    let fixture = Fixture::start_with(config, svc_kit::clock::system()).await;
    let (_, viewer) = fixture.member("Viewer", room_pb::Role::Member).await;
    let mut version = fixture.load_media(0).await.version;
    let mut events = watch(&fixture.app, &fixture.room_id, &viewer).await;
    next_state(&mut events).await;

    // Changes every 200 ms for 3 s (longer than the interval): each one pushes the heartbeat
    // back, so none is sent.
    let busy_until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < busy_until {
        version = fixture.seek(&fixture.owner, version, 1_000).await.unwrap().version;
        loop {
            match next_event(&mut events).await.unwrap() {
                Event::State(state) if state.version == version => break,
                Event::Heartbeat(_) => panic!("a heartbeat while changes kept the stream busy"),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Quiet: the next heartbeat comes about one interval after the last change.
    let quiet_since = Instant::now();
    loop {
        if let Event::Heartbeat(_) = next_event(&mut events).await.unwrap() {
            break;
        }
    }
    assert!(quiet_since.elapsed() >= Duration::from_millis(1500), "not before the interval");
}

#[tokio::test]
async fn snapshots_and_events_larger_than_a_streams_first_buffer_arrive_whole() {
    let fixture = Fixture::start().await;
    let (_, viewer) = fixture.member("Viewer", room_pb::Role::Member).await;
    // Twenty items with long URLs: a snapshot of several KiB, past the 1 KiB a watch stream's
    // outgoing buffer starts with.
    for index in 0..20 {
        fixture.add_to_queue(&format!("https://media.example/{index}/{}.mp4", "x".repeat(300)), 60_000).await;
    }
    let state = fixture.state(&fixture.owner).await;
    assert_eq!(state.queue.len(), 20);

    let mut events = watch(&fixture.app, &fixture.room_id, &viewer).await;
    match next_event(&mut events).await.unwrap() {
        Event::Snapshot(snapshot) => assert_eq!(snapshot.state.unwrap(), state),
        other => panic!("expected a snapshot first, got {other:?}"),
    }
    let added = fixture.add_to_queue(&format!("https://media.example/last/{}.mp4", "y".repeat(1500)), 1_000).await;
    let after = next_state(&mut events).await;
    assert_eq!(after.queue.len(), 21);
    assert_eq!(Some(after), added.state);
}

/// A connection that went quiet after a watch opened (its buffers may be given back while it
/// waits) still carries, both ways, a request header larger than an 8 KiB read buffer and
/// states larger than a 16 KiB write buffer.
#[tokio::test]
async fn a_connection_that_went_quiet_carries_large_headers_and_states() {
    let fixture = Fixture::start().await;
    let mut client = pb::sync_service_client::SyncServiceClient::new(fixture.app.server.channel());
    let request = with_token(pb::WatchRoomRequest { room_id: fixture.room_id.clone() }, &fixture.owner);
    let mut events = client.watch_room(request).await.unwrap().into_inner();
    assert_eq!(next_state(&mut events).await.version, 0);

    // 12 KiB of header: past 8 KiB, under the server's 16 KiB limit on a request's headers.
    let mut request = with_token(pb::GetClockRequest {}, &fixture.owner);
    request.metadata_mut().insert("x-padding", "p".repeat(12 * 1024).parse().unwrap());
    client.get_clock(request).await.unwrap();

    // Each change carries the whole queue: the last is ~40 KiB on the quiet connection.
    let long_url = format!("https://media.example/{}.webm", "z".repeat(2_000));
    for _ in 0..20 {
        fixture.add_to_queue(&long_url, 0).await;
    }
    let expected = fixture.state(&fixture.owner).await;
    let mut last = next_state(&mut events).await;
    while last.version < expected.version {
        last = next_state(&mut events).await;
    }
    assert_eq!(last, expected);
    assert_eq!(last.queue.len(), 20);
}

#[tokio::test]
async fn a_slow_watcher_is_resynchronised_without_holding_up_the_others() {
    let mut config = test_config();
    config.room_buffer = 4;
    let fixture = Fixture::start_with(config, svc_kit::clock::system()).await;
    let mut fast = watch(&fixture.app, &fixture.room_id, &fixture.owner).await;
    let mut slow = watch(&fixture.app, &fixture.room_id, &fixture.owner).await;
    assert_eq!(next_state(&mut fast).await.version, 0);

    // Large messages (the whole queue rides on every change) fill the slow watcher's
    // transport buffers quickly, so that it really falls behind on the server.
    let long_url = format!("https://media.example/{}.webm", "x".repeat(2_000));
    let additions: i64 = 120;
    for _ in 0..additions {
        fixture.add_to_queue(&long_url, 0).await;
        // The fast watcher keeps up, seeing every version in order.
        let state = next_state(&mut fast).await;
        assert_eq!(usize::try_from(state.version).unwrap(), state.queue.len());
    }
    let final_version = additions;

    let mut seen = Vec::new();
    let mut resynchronised = false;
    while seen.last() != Some(&final_version) {
        match next_event(&mut slow).await.unwrap() {
            Event::Snapshot(snapshot) => {
                resynchronised |= !seen.is_empty();
                seen.push(snapshot.state.unwrap().version);
            }
            Event::State(state) => {
                let version = state.version;
                if let Some(previous) = seen.last() {
                    assert_eq!(version, previous + 1, "a gap without a snapshot");
                }
                seen.push(version);
            }
            Event::Presence(_) | Event::PresenceDelta(_) | Event::Heartbeat(_) => {}
        }
    }
    assert!(resynchronised, "the slow watcher was sent a fresh snapshot");
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "versions only move forward: {seen:?}");
    let metrics = fixture.app.metrics().await;
    assert!(!metrics.contains("xiaowo_sync_watcher_resyncs_total 0"));
}

#[tokio::test]
async fn kicked_members_and_closed_rooms_end_their_streams() {
    let fixture = Fixture::start().await;
    fixture.peers.rooms.wait_for_follower().await;
    let (kicked_id, kicked) = fixture.member("Kicked", room_pb::Role::Member).await;
    let (_, stays) = fixture.member("Stays", room_pb::Role::Member).await;
    let mut kicked_events = watch(&fixture.app, &fixture.room_id, &kicked).await;
    let mut staying_events = watch(&fixture.app, &fixture.room_id, &stays).await;
    next_state(&mut kicked_events).await;
    next_state(&mut staying_events).await;

    fixture.peers.rooms.kick(&fixture.room_id, &kicked_id);
    assert_eq!(end_status(&mut kicked_events).await.code(), Code::PermissionDenied);

    let loaded = fixture.load_media(0).await;
    assert_eq!(next_state(&mut staying_events).await.version, loaded.version, "the others keep watching");

    fixture.peers.rooms.close(&fixture.room_id);
    assert_eq!(end_status(&mut staying_events).await.code(), Code::FailedPrecondition);
    let request = with_token(pb::WatchRoomRequest { room_id: fixture.room_id.clone() }, &stays);
    assert_eq!(fixture.app.client().watch_room(request).await.unwrap_err().code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn wait_for_everyone_pauses_for_buffering_members_for_a_bounded_time() {
    let clock = ManualClock::new(START_MS);
    let fixture = Fixture::start_with(test_config(), clock.clone()).await;
    let (slow_id, slow) = fixture.member("Slow", room_pb::Role::Member).await;
    let (_, opted_out) = fixture.member("OptedOut", room_pb::Role::Member).await;
    let mut events = watch(&fixture.app, &fixture.room_id, &fixture.owner).await;
    let _slow_stream = watch(&fixture.app, &fixture.room_id, &slow).await;
    let _opted_out_stream = watch(&fixture.app, &fixture.room_id, &opted_out).await;
    let loaded = fixture.load_media(0).await;
    let request = pb::SetWaitForEveryoneRequest {
        room_id: fixture.room_id.clone(),
        expected_version: loaded.version,
        enabled: true,
    };
    let enabled = fixture.app.client().set_wait_for_everyone(with_token(request, &fixture.owner)).await.unwrap();
    let playing = fixture.play(enabled.into_inner().state.unwrap().version, Some(START_MS)).await.unwrap();

    // Opting out: this member's buffering never pauses the room.
    let request = pb::ReportStatusRequest {
        room_id: fixture.room_id.clone(),
        state: pb::PlayerState::Buffering.into(),
        ignore_wait: true,
        ..Default::default()
    };
    fixture.app.client().report_status(with_token(request, &opted_out)).await.unwrap();
    fixture.report(&slow, pb::PlayerState::Buffering, 0, "").await;
    clock.advance(Duration::from_millis(2_100));
    let paused = loop {
        let state = next_state(&mut events).await;
        if state.version > playing.version {
            break state;
        }
    };
    assert_eq!(paused.last_action(), pb::Action::WaitPause);
    assert_eq!(paused.waiting_for_user_ids, [slow_id]);
    assert!(paused.timeline.as_ref().unwrap().paused);

    fixture.report(&slow, pb::PlayerState::Ready, 0, "").await;
    let resumed = next_state(&mut events).await;
    assert_eq!(resumed.last_action(), pb::Action::WaitResume);
    assert!(!resumed.timeline.as_ref().unwrap().paused);
    assert!(resumed.waiting_for_user_ids.is_empty());

    // Buffering again, for longer than the timeout: the room goes on without them.
    fixture.report(&slow, pb::PlayerState::Buffering, 0, "").await;
    clock.advance(Duration::from_millis(2_100));
    assert_eq!(next_state(&mut events).await.last_action(), pb::Action::WaitPause);
    clock.advance(Duration::from_millis(10_100));
    let gave_up = next_state(&mut events).await;
    assert_eq!(gave_up.last_action(), pb::Action::WaitResume);
    clock.advance(Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fixture.state(&fixture.owner).await.version, gave_up.version, "no second wait for the same member");
}

#[tokio::test]
async fn bad_input_is_refused_with_the_field_named() {
    let fixture = Fixture::start().await;
    let loaded = fixture.load_media(60_000).await;
    let client = fixture.app.client();
    let room_id = fixture.room_id.clone();
    let version = loaded.version;

    let status = fixture.seek(&fixture.owner, version, -1).await.unwrap_err();
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["position_ms".to_owned()]));
    let status = fixture.seek(&fixture.owner, version, 60_001).await.unwrap_err();
    assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["position_ms".to_owned()]));

    for rate in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.2, 4.5, -1.0] {
        let request =
            pb::SetRateRequest { room_id: room_id.clone(), expected_version: version, rate, start_time: None };
        let status = client.clone().set_rate(with_token(request, &fixture.owner)).await.unwrap_err();
        assert_eq!(
            (status.code(), violated_fields(&status)),
            (Code::InvalidArgument, vec!["rate".to_owned()]),
            "{rate}"
        );
    }

    let oversized = format!("https://media.example/{}", "a".repeat(2_100));
    for url in [oversized.as_str(), "ftp://media.example/a.mp4", "javascript:alert(1)", "file:///etc/passwd", ""] {
        let request = pb::ChangeMediaRequest {
            room_id: room_id.clone(),
            expected_version: version,
            url: url.to_owned(),
            title: "t".to_owned(),
            duration_ms: 0,
            library_item_id: String::new(),
        };
        let status = client.clone().change_media(with_token(request, &fixture.owner)).await.unwrap_err();
        assert_eq!((status.code(), violated_fields(&status)), (Code::InvalidArgument, vec!["url".to_owned()]));
    }

    let request = pb::SeekRequest { room_id: "not-a-room".to_owned(), expected_version: 0, position_ms: -5 };
    let status = client.clone().seek(with_token(request, &fixture.owner)).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["room_id", "position_ms"], "every problem is reported");

    let unknown = uuid::Uuid::new_v4().to_string();
    let request = pb::SeekRequest { room_id: unknown, expected_version: 0, position_ms: 0 };
    assert_eq!(client.clone().seek(with_token(request, &fixture.owner)).await.unwrap_err().code(), Code::NotFound);

    assert_eq!(fixture.state(&fixture.owner).await.version, version, "nothing was written");
    assert_eq!(fixture.sync_logs().await.len(), 1);
}

#[tokio::test]
async fn library_items_play_and_queue_and_players_load_errors_reach_every_member() {
    let fixture = Fixture::start().await;
    let (member_id, member) = fixture.member("Bob", room_pb::Role::Member).await;
    let mut owner_events = watch(&fixture.app, &fixture.room_id, &fixture.owner).await;
    let _member_events = watch(&fixture.app, &fixture.room_id, &member).await;
    let client = fixture.app.client();
    let library_item_id = uuid::Uuid::new_v4().to_string();

    // A library item instead of a URL, in the queue and as the media.
    let request = pb::AddQueueItemRequest {
        room_id: fixture.room_id.clone(),
        library_item_id: library_item_id.clone(),
        title: "Holiday".to_owned(),
        duration_ms: 60_000,
        ..Default::default()
    };
    let added = client.clone().add_queue_item(with_token(request, &fixture.owner)).await.unwrap().into_inner();
    let media = added.item.unwrap().media.unwrap();
    assert_eq!((media.library_item_id.as_str(), media.url.as_str()), (library_item_id.as_str(), ""));
    let request =
        pb::PlayNextRequest { room_id: fixture.room_id.clone(), expected_version: added.state.unwrap().version };
    let playing = client.clone().play_next(with_token(request, &fixture.owner)).await.unwrap().into_inner();
    let media = playing.state.unwrap().timeline.unwrap().media.unwrap();
    assert_eq!(media.library_item_id, library_item_id);
    assert_eq!(fixture.state(&member).await.timeline.unwrap().media.unwrap().library_item_id, library_item_id);

    // Both or neither, and ids that are not ids, are refused.
    for (url, item, fields) in [
        ("https://media.example/a.mp4", library_item_id.as_str(), vec!["url"]),
        ("", "../etc/passwd", vec!["library_item_id"]),
        ("", "", vec!["url"]),
    ] {
        let request = pb::AddQueueItemRequest {
            room_id: fixture.room_id.clone(),
            url: url.to_owned(),
            library_item_id: item.to_owned(),
            ..Default::default()
        };
        let status = client.clone().add_queue_item(with_token(request, &fixture.owner)).await.unwrap_err();
        assert_eq!(violated_fields(&status), fields);
    }

    // Room lists show what members' rooms play; other rooms are left out.
    let outsider = fixture.peers.user("Carol").await.1;
    let other_room = uuid::Uuid::new_v4().to_string();
    let request = || pb::ListNowPlayingRequest { room_ids: vec![fixture.room_id.clone(), other_room.clone()] };
    let listed = client.clone().list_now_playing(with_token(request(), &member)).await.unwrap().into_inner();
    assert_eq!(listed.now_playing.len(), 1);
    assert_eq!(listed.now_playing[0].media.as_ref().unwrap().library_item_id, library_item_id);
    let hidden = client.clone().list_now_playing(with_token(request(), &outsider)).await.unwrap().into_inner();
    assert!(hidden.now_playing.is_empty());
    let too_many = pb::ListNowPlayingRequest { room_ids: vec![fixture.room_id.clone(); 51] };
    let status = client.clone().list_now_playing(with_token(too_many, &member)).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["room_ids"]);

    // A player that cannot play says why; everyone sees it in presence.
    let load_error = pb::LoadError {
        media_id: media.media_id.clone(),
        kind: pb::LoadErrorKind::HttpStatus.into(),
        http_status: 404,
        detail: "MEDIA_ELEMENT_ERROR: Format error".to_owned(),
    };
    let request = pb::ReportStatusRequest {
        room_id: fixture.room_id.clone(),
        state: pb::PlayerState::Failed.into(),
        load_error: Some(load_error.clone()),
        ..Default::default()
    };
    client.clone().report_status(with_token(request, &member)).await.unwrap();
    let seen = loop {
        if let Event::PresenceDelta(presence) = next_event(&mut owner_events).await.unwrap()
            && let Some(watcher) = presence.watchers.into_iter().find(|watcher| watcher.user_id == member_id)
            && watcher.load_error.is_some()
        {
            break watcher;
        }
    };
    assert_eq!(seen.state(), pb::PlayerState::Failed);
    assert_eq!(seen.load_error, Some(load_error.clone()));

    // FAILED needs a reason; a status only goes with HTTP_STATUS; the detail is plain and short.
    let report = |state: pb::PlayerState, load_error: Option<pb::LoadError>| pb::ReportStatusRequest {
        room_id: fixture.room_id.clone(),
        state: state.into(),
        load_error,
        ..Default::default()
    };
    let status =
        client.clone().report_status(with_token(report(pb::PlayerState::Failed, None), &member)).await.unwrap_err();
    assert_eq!(violated_fields(&status), ["load_error"]);
    let wrong_status = pb::LoadError { kind: pb::LoadErrorKind::Decode.into(), ..load_error.clone() };
    let status = client
        .clone()
        .report_status(with_token(report(pb::PlayerState::Failed, Some(wrong_status)), &member))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["load_error.http_status"]);
    let noisy = pb::LoadError { detail: "a\u{7}b".repeat(10), ..load_error };
    let status = client
        .clone()
        .report_status(with_token(report(pb::PlayerState::Failed, Some(noisy)), &member))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&status), ["load_error.detail"]);
}

#[tokio::test]
async fn streams_end_when_the_server_shuts_down() {
    let fixture = Fixture::start().await;
    let mut events = watch(&fixture.app, &fixture.room_id, &fixture.owner).await;
    next_state(&mut events).await;
    let Fixture { app, .. } = fixture;
    let stopping = tokio::spawn(app.server.stop());
    assert_eq!(end_status(&mut events).await.code(), Code::Unavailable);
    tokio::time::timeout(Duration::from_secs(10), stopping).await.expect("shutdown is not held up").unwrap();
}

#[tokio::test]
async fn command_floods_are_limited_per_user() {
    let mut config = test_config();
    config.command_burst = 3;
    config.commands_per_second = 1;
    let fixture = Fixture::start_with(config, svc_kit::clock::system()).await;
    let (_, other) = fixture.member("Other", room_pb::Role::Member).await;
    let loaded = fixture.load_media(0).await;

    let mut version = loaded.version;
    for position_ms in [1, 2] {
        version = fixture.seek(&fixture.owner, version, position_ms).await.unwrap().version;
    }
    let limited = fixture.seek(&fixture.owner, version, 3).await.unwrap_err();
    assert_eq!(limited.code(), Code::ResourceExhausted);
    fixture.seek(&other, version, 4).await.unwrap();
}

#[tokio::test]
async fn access_is_rechecked_after_the_room_event_stream_reconnects() {
    let fixture = Fixture::start().await;
    fixture.peers.rooms.wait_for_follower().await;
    let (removed_id, removed) = fixture.member("Removed", room_pb::Role::Member).await;
    let mut removed_events = watch(&fixture.app, &fixture.room_id, &removed).await;
    let mut owner_events = watch(&fixture.app, &fixture.room_id, &fixture.owner).await;
    next_state(&mut removed_events).await;
    next_state(&mut owner_events).await;

    // The removal's event is lost with the stream; after reconnecting, sync-svc asks again.
    fixture.peers.rooms.remove_silently(&fixture.room_id, &removed_id);
    fixture.peers.rooms.drop_followers();
    assert_eq!(end_status(&mut removed_events).await.code(), Code::PermissionDenied);

    let loaded = fixture.load_media(0).await;
    assert_eq!(next_state(&mut owner_events).await.version, loaded.version, "members keep watching");
}

#[tokio::test]
async fn two_instances_on_one_database_agree_on_versions() {
    let peers = Peers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (owner_id, owner) = peers.user("Owner").await;
    let room_id = peers.rooms.create_room(&owner_id);
    let first = SyncApp::start(&peers, dir.path(), &test_config(), svc_kit::clock::system()).await;
    let second = SyncApp::start(&peers, dir.path(), &test_config(), svc_kit::clock::system()).await;
    let seek = |app: &SyncApp, version: i64, position_ms: i64| {
        let request = pb::SeekRequest { room_id: room_id.clone(), expected_version: version, position_ms };
        let mut client = app.client();
        let request = with_token(request, &owner);
        async move { client.seek(request).await.map(|response| response.into_inner().state.unwrap()) }
    };
    let request = pb::ChangeMediaRequest {
        room_id: room_id.clone(),
        expected_version: 0,
        url: "https://media.example/a.webm".to_owned(),
        title: String::new(),
        duration_ms: 0,
        library_item_id: String::new(),
    };
    let loaded = first.client().change_media(with_token(request, &owner)).await.unwrap().into_inner().state.unwrap();
    // The second instance watches the room, so it holds the state it last saw (version 1).
    let mut events = watch(&second, &room_id, &owner).await;
    assert_eq!(next_state(&mut events).await.version, loaded.version);

    let on_first = seek(&first, loaded.version, 1_000).await.unwrap();
    let stale = seek(&second, loaded.version, 2_000).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "the stored version decides, not the instance's memory");
    assert_eq!(conflict_state(&stale).version, on_first.version);
    let on_second = seek(&second, on_first.version, 3_000).await.unwrap();
    assert_eq!(on_second.version, on_first.version + 1);
}
