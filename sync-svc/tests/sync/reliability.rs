//! sync-svc under faults: a restart with fifty watchers connected, a database held locked by
//! another writer, and its peers (room-svc, session-svc) going away and coming back. Real
//! servers on loopback ports over SQLite files in temporary directories; a restarted server
//! takes the same port, as a restarted process would.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use proto::room::v1 as room_pb;
use proto::sync::v1 as pb;
use proto::sync::v1::sync_service_client::SyncServiceClient;
use proto::sync::v1::watch_room_response::Event;
use tokio::sync::mpsc;
use tonic::Code;
use xiaowo::node::Target;
use xiaowo::testing::{Stack, any_port};

use crate::helpers::{ADMIN_TOKEN, Peers, Start, SyncApp, conflict_state, next_state, test_config, with_token};

const WATCHERS: usize = 50;
/// What an internal call may take before it counts as failed (more than the services' peer
/// deadline, `--peer-deadline`, 2 s by default).
const PEER_DEADLINE: Duration = Duration::from_secs(5);

/// sync-svc with `config` at `addr` (again, after a server stopped there).
async fn start_sync_at(
    peers: &Peers,
    data_dir: &std::path::Path,
    addr: SocketAddr,
    config: &sync_svc::Config,
) -> SyncApp {
    SyncApp::start_as(peers, Start { addr, ..Start::new(data_dir, config, svc_kit::clock::system()) }).await
}

/// Peers whose session-svc takes a crowd of new sessions.
async fn crowd_peers() -> Peers {
    Peers::start_with(|common| common.session.create_burst = 1_000).await
}

/// session-svc started again at `addr` over the stack's database, once the port is free.
async fn restart_session_at(stack: &Stack, addr: SocketAddr) -> xiaowo::testing::Node {
    let mut attempts = 0;
    loop {
        match stack.try_start(addr, &[Target::Session], None, |_| {}).await {
            Ok(node) => return node,
            Err(xiaowo::node::StartError::Bind { .. }) if attempts < 100 => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("session-svc did not start again: {error}"),
        }
    }
}

async fn change_media(client: &mut SyncServiceClient<tonic::transport::Channel>, room_id: &str, token: &str) -> i64 {
    let request = pb::ChangeMediaRequest {
        room_id: room_id.to_owned(),
        expected_version: 0,
        url: "https://media.example/film.webm".to_owned(),
        title: "Film".to_owned(),
        duration_ms: 0,
        library_item_id: String::new(),
    };
    client.change_media(with_token(request, token)).await.unwrap().into_inner().state.unwrap().version
}

async fn seek(
    client: &mut SyncServiceClient<tonic::transport::Channel>,
    room_id: &str,
    token: &str,
    expected_version: i64,
    position_ms: i64,
) -> Result<pb::RoomState, tonic::Status> {
    let request = pb::SeekRequest { room_id: room_id.to_owned(), expected_version, position_ms };
    Ok(client.seek(with_token(request, token)).await?.into_inner().state.unwrap())
}

/// A seek retried while it is `UNAVAILABLE` (a peer coming back; channels reconnect with a
/// back-off), for at most 20 s.
async fn seek_once_back(
    client: &mut SyncServiceClient<tonic::transport::Channel>,
    room_id: &str,
    token: &str,
    expected_version: i64,
) -> pb::RoomState {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match seek(client, room_id, token, expected_version, 3_000).await {
            Ok(state) => return state,
            Err(status) if status.code() == Code::Unavailable && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(status) => panic!("the peer came back but the call still fails: {status:?}"),
        }
    }
}

fn position(state: &pb::RoomState) -> i64 {
    state.timeline.as_ref().unwrap().position_ms
}

/// What one watcher saw across the restart.
#[derive(Debug)]
struct Resumed {
    /// How its first stream ended.
    ended_with: Code,
    /// The snapshot its new stream started with.
    snapshot: pb::RoomState,
    /// The first change after that.
    next: pb::RoomState,
}

/// A client that keeps watching: on losing its stream it reconnects (every 50 ms, as the web
/// client backs off) and starts again from the snapshot the new stream opens with.
async fn resuming_watcher(
    url: String,
    room_id: String,
    token: String,
    connected: mpsc::Sender<i64>,
    resumed: mpsc::Sender<i64>,
) -> Resumed {
    let open = || async {
        loop {
            let channel = svc_kit::peer::channel(&url, PEER_DEADLINE).unwrap();
            let request = with_token(pb::WatchRoomRequest { room_id: room_id.clone() }, &token);
            match SyncServiceClient::new(channel).watch_room(request).await {
                Ok(response) => {
                    let mut events = response.into_inner();
                    match events.message().await {
                        Ok(Some(pb::WatchRoomResponse { event: Some(Event::Snapshot(snapshot)), .. })) => {
                            return (events, snapshot.state.unwrap());
                        }
                        other => tracing::debug!(?other, "no snapshot; reconnecting"),
                    }
                }
                Err(status) => tracing::debug!(?status, "not up yet; reconnecting"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let (mut events, first) = open().await;
    connected.send(first.version).await.unwrap();
    let ended_with = loop {
        match events.message().await {
            Ok(Some(_)) => {}
            Ok(None) => break Code::Ok,
            Err(status) => break status.code(),
        }
    };
    let (mut events, snapshot) = open().await;
    resumed.send(snapshot.version).await.unwrap();
    let next = next_state(&mut events).await;
    Resumed { ended_with, snapshot, next }
}

#[tokio::test]
async fn fifty_watchers_resume_with_the_current_state_after_a_restart() {
    let peers = crowd_peers().await;
    let dir = tempfile::tempdir().unwrap();
    let config = test_config();
    let app = start_sync_at(&peers, dir.path(), any_port(), &config).await;
    let addr = app.server.addr;
    let (owner_id, owner) = peers.user("Owner").await;
    let room_id = peers.rooms.create_room(&owner_id);
    let mut client = app.client();
    let loaded = change_media(&mut client, &room_id, &owner).await;
    let before = seek(&mut client, &room_id, &owner, loaded, 12_000).await.unwrap();

    let (connected_tx, mut connected) = mpsc::channel(WATCHERS);
    let (resumed_tx, mut resumed) = mpsc::channel(WATCHERS);
    let mut watchers = tokio::task::JoinSet::new();
    for index in 0..WATCHERS {
        let (user_id, token) = peers.user(&format!("Watcher {index}")).await;
        peers.rooms.join(&room_id, &user_id, room_pb::Role::Member);
        let watcher =
            resuming_watcher(app.server.url.clone(), room_id.clone(), token, connected_tx.clone(), resumed_tx.clone());
        watchers.spawn(watcher);
    }
    for _ in 0..WATCHERS {
        assert_eq!(connected.recv().await, Some(before.version));
    }

    app.server.stop().await;
    let restarted_at = Instant::now();
    let app = start_sync_at(&peers, dir.path(), addr, &config).await;
    for _ in 0..WATCHERS {
        let version = tokio::time::timeout(Duration::from_secs(30), resumed.recv()).await.expect("all resume");
        assert_eq!(version, Some(before.version), "resumed at the version the room was left at");
    }
    println!("figures: watchers={WATCHERS} all_resumed_after_restart_ms={}", restarted_at.elapsed().as_millis());

    let mut client = app.client();
    let stale = seek(&mut client, &room_id, &owner, loaded, 1_000).await.unwrap_err();
    assert_eq!(stale.code(), Code::Aborted, "a version from before the last change is refused");
    assert_eq!(conflict_state(&stale), before, "with the current state");
    let after = seek(&mut client, &room_id, &owner, before.version, 30_000).await.unwrap();
    assert_eq!(after.version, before.version + 1);

    let outcomes = watchers.join_all().await;
    assert_eq!(outcomes.len(), WATCHERS);
    for outcome in outcomes {
        assert_eq!(outcome.ended_with, Code::Unavailable, "told to reconnect, not cut off");
        assert_eq!(outcome.snapshot, before, "the whole state survived the restart");
        assert_eq!(outcome.next, after, "and changes flow again");
    }
}

#[tokio::test]
async fn a_locked_database_makes_commands_wait_then_fail_retryably_with_nothing_written() {
    if svc_kit::testing::skip_on_postgres("the lock is taken on the SQLite file, which PostgreSQL does not use") {
        return;
    }
    let busy_timeout = Duration::from_secs(1);
    let peers = Peers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = test_config();
    let start = Start {
        common: &|common| common.db_busy_timeout = busy_timeout,
        ..Start::new(dir.path(), &config, svc_kit::clock::system())
    };
    let app = SyncApp::start_as(&peers, start).await;
    let (owner_id, owner) = peers.user("Owner").await;
    let room_id = peers.rooms.create_room(&owner_id);
    let mut client = app.client();
    let loaded = change_media(&mut client, &room_id, &owner).await;
    let before = seek(&mut client, &room_id, &owner, loaded, 12_000).await.unwrap();
    let mut events = crate::helpers::watch(&app, &room_id, &owner).await;
    assert_eq!(next_state(&mut events).await, before);

    // Another writer (a backup tool, an operator's shell) takes the write lock and holds it.
    let other_writer = rusqlite::Connection::open(dir.path().join("sync.db")).unwrap();
    other_writer.execute_batch("BEGIN IMMEDIATE").unwrap();

    let started = Instant::now();
    let refused = seek(&mut client, &room_id, &owner, before.version, 20_000).await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(refused.code(), Code::Unavailable, "busy is retryable, not INTERNAL: {refused:?}");
    assert!(waited >= busy_timeout.mul_f32(0.9), "it waited for the lock first ({waited:?})");
    let request = with_token(pb::GetRoomStateRequest { room_id: room_id.clone() }, &owner);
    let during = client.get_room_state(request).await.unwrap().into_inner().state.unwrap();
    assert_eq!(during, before, "readers are not blocked and see nothing of the refused command");

    other_writer.execute_batch("ROLLBACK").unwrap();
    drop(other_writer);

    let request = with_token(pb::GetRoomStateRequest { room_id: room_id.clone() }, &owner);
    let released = client.get_room_state(request).await.unwrap().into_inner().state.unwrap();
    assert_eq!(released, before, "nothing half-written");
    let request = with_token(pb::ListSyncLogsRequest { room_id: room_id.clone(), ..Default::default() }, ADMIN_TOKEN);
    let logs = app.admin().list_sync_logs(request).await.unwrap().into_inner().sync_logs;
    assert_eq!(logs.len(), 2, "no sync log row for the refused command");

    let retried = seek(&mut client, &room_id, &owner, before.version, 21_000).await.unwrap();
    assert_eq!(retried.version, before.version + 1, "the retry takes the version the refused one could not");
    let heard = next_state(&mut events).await;
    assert_eq!((heard.version, position(&heard)), (retried.version, 21_000), "watchers never saw the refused one");
}

#[tokio::test]
async fn room_svc_down_fails_uncached_calls_fast_keeps_streams_and_recovers() {
    let peers = Peers::start().await;
    let rooms = peers.rooms.clone();
    let room_addr = peers.room_server.addr;
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config();
    // Access answers are reused for a while, so that what was allowed a moment ago still works.
    config.access_cache_ttl = Duration::from_secs(60);
    config.heartbeat_interval = Duration::from_millis(200);
    let app = start_sync_at(&peers, dir.path(), any_port(), &config).await;
    let (owner_id, owner) = peers.user("Owner").await;
    let (newcomer_id, newcomer) = peers.user("Newcomer").await;
    let room_id = rooms.create_room(&owner_id);
    rooms.join(&room_id, &newcomer_id, room_pb::Role::Member);
    let mut client = app.client();
    let loaded = change_media(&mut client, &room_id, &owner).await;
    let mut events = crate::helpers::watch(&app, &room_id, &owner).await;
    assert_eq!(next_state(&mut events).await.version, loaded);

    let Peers { stack: _stack, session, room_server, rooms: _ } = peers;
    room_server.stop().await;

    let started = Instant::now();
    let refused = seek(&mut client, &room_id, &newcomer, loaded, 1_000).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(started.elapsed() < PEER_DEADLINE, "failed within the internal call deadline");
    let accepted = seek(&mut client, &room_id, &owner, loaded, 2_000).await.unwrap();
    assert_eq!(next_state(&mut events).await, accepted, "the open stream still delivers");
    let mut heartbeats = 0;
    while heartbeats < 2 {
        if let Event::Heartbeat(_) = crate::helpers::next_event(&mut events).await.unwrap() {
            heartbeats += 1;
        }
    }

    let _room_server = Peers::serve_rooms(&rooms, room_addr).await;
    let recovered = seek_once_back(&mut client, &room_id, &newcomer, accepted.version).await;
    assert_eq!(recovered.version, accepted.version + 1);
    assert_eq!(next_state(&mut events).await, recovered);
    drop(session);
}

#[tokio::test]
async fn session_svc_down_fails_unvalidated_callers_fast_and_recovers() {
    let peers = crowd_peers().await;
    let session_addr = peers.session.addr;
    let rooms = peers.rooms.clone();
    let dir = tempfile::tempdir().unwrap();
    let app = start_sync_at(&peers, dir.path(), any_port(), &test_config()).await;
    let (owner_id, owner) = peers.user("Owner").await;
    let (newcomer_id, newcomer) = peers.user("Newcomer").await;
    let room_id = rooms.create_room(&owner_id);
    rooms.join(&room_id, &newcomer_id, room_pb::Role::Member);
    let mut client = app.client();
    let loaded = change_media(&mut client, &room_id, &owner).await;
    let mut events = crate::helpers::watch(&app, &room_id, &owner).await;
    assert_eq!(next_state(&mut events).await.version, loaded);

    let Peers { stack, session, room_server: _room_server, rooms: _ } = peers;
    session.stop().await;

    let started = Instant::now();
    let refused = seek(&mut client, &room_id, &newcomer, loaded, 1_000).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(started.elapsed() < PEER_DEADLINE, "failed within the internal call deadline");
    // The owner's session was validated moments ago and is reused: the room goes on.
    let accepted = seek(&mut client, &room_id, &owner, loaded, 2_000).await.unwrap();
    assert_eq!(next_state(&mut events).await, accepted, "the open stream still delivers");

    let _session = restart_session_at(&stack, session_addr).await;
    let recovered = seek_once_back(&mut client, &room_id, &newcomer, accepted.version).await;
    assert_eq!(recovered.version, accepted.version + 1);
    assert_eq!(next_state(&mut events).await, recovered);
}

#[tokio::test]
async fn a_hanging_room_svc_turns_into_unavailable_at_the_call_deadline() {
    let room_deadline = Duration::from_secs(1);
    // Accepts connections and never says a word: a peer that is up but stuck.
    let hanging = tokio::net::TcpListener::bind(any_port()).await.unwrap();
    let hanging_url = format!("http://{}", hanging.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hanging.accept().await {
            held.push(socket);
        }
    });
    let stack = Stack::new().await.on_system_clock();
    let _session = stack.start(&[Target::Session]).await;
    stack.set_peer(Target::Room, &hanging_url);
    let app = SyncApp {
        server: stack
            .start_with(&[Target::Sync], |common| {
                common.sync = test_config();
                common.peer_deadline = room_deadline;
            })
            .await,
    };
    let owner = stack.user("Owner").await.token;

    let started = Instant::now();
    let room_id = uuid::Uuid::new_v4().to_string();
    let refused = seek(&mut app.client(), &room_id, &owner, 0, 1_000).await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!(refused.code(), Code::Unavailable, "a stuck peer is an outage, not a hang: {refused:?}");
    assert!(waited >= room_deadline.mul_f32(0.9), "it gave the peer its deadline ({waited:?})");
}
