//! Two sync-svc instances on one database (a SQLite file in WAL mode, or PostgreSQL when
//! `XIAOWO_TEST_POSTGRES` is set), as two hosts behind a balancer run them: commands racing
//! through both for one room get exactly one winner per version, decided by the database's
//! conditional update, and every loser gets ABORTED with the state the database holds, even
//! when its instance's memory of the room is behind.

use crate::helpers::{ADMIN_TOKEN, Peers, SyncApp, conflict_state, next_state, test_config, watch, with_token};
use proto::sync::v1 as pb;
use tokio::task::JoinSet;
use tonic::Code;

const ROUNDS: i64 = 12;
const RACERS_PER_INSTANCE: i64 = 3;

async fn seek(
    app: &SyncApp,
    room_id: &str,
    token: &str,
    version: i64,
    position_ms: i64,
) -> Result<pb::RoomState, tonic::Status> {
    let request = pb::SeekRequest { room_id: room_id.to_owned(), expected_version: version, position_ms };
    Ok(app.client().seek(with_token(request, token)).await?.into_inner().state.unwrap())
}

fn position(state: &pb::RoomState) -> i64 {
    state.timeline.as_ref().unwrap().position_ms
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_instances_accept_exactly_one_command_per_version() {
    let peers = Peers::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = test_config();
    let first = SyncApp::start(&peers, dir.path(), &config, svc_kit::clock::system()).await;
    let second = SyncApp::start(&peers, dir.path(), &config, svc_kit::clock::system()).await;
    let (owner_id, owner) = peers.user("Owner").await;
    let room_id = peers.rooms.create_room(&owner_id);
    // A watcher on each instance makes both keep the room's latest state in memory: the fast
    // path that must never outvote the database.
    let mut first_events = watch(&first, &room_id, &owner).await;
    let mut second_events = watch(&second, &room_id, &owner).await;
    assert_eq!(next_state(&mut first_events).await.version, 0);
    assert_eq!(next_state(&mut second_events).await.version, 0);
    let request = pb::ChangeMediaRequest {
        room_id: room_id.clone(),
        expected_version: 0,
        url: "https://media.example/film.webm".to_owned(),
        title: "Film".to_owned(),
        duration_ms: 3_600_000,
        library_item_id: String::new(),
    };
    first.client().change_media(with_token(request, &owner)).await.unwrap();

    let instances = std::sync::Arc::new([first, second]);
    let mut version = 1;
    for round in 0..ROUNDS {
        let mut racers = JoinSet::new();
        for instance in 0..2 {
            for racer in 0..RACERS_PER_INSTANCE {
                let position_ms = 1_000 * (round * 100 + i64::try_from(instance).unwrap() * 10 + racer);
                let (instances, room_id, owner) = (instances.clone(), room_id.clone(), owner.clone());
                racers.spawn(async move { seek(&instances[instance], &room_id, &owner, version, position_ms).await });
            }
        }
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        while let Some(outcome) = racers.join_next().await {
            match outcome.unwrap() {
                Ok(state) => winners.push(state),
                Err(status) => losers.push(status),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: exactly one winner for version {version}");
        let winner = &winners[0];
        assert_eq!(winner.version, version + 1);
        for status in &losers {
            assert_eq!(status.code(), Code::Aborted, "{status:?}");
            let current = conflict_state(status);
            assert_eq!((current.version, position(&current)), (winner.version, position(winner)), "the stored state");
        }
        version += 1;
    }

    // Each version was written once, by the one update that won it.
    let request = pb::ListSyncLogsRequest { room_id: room_id.clone(), ..Default::default() };
    let logs = instances[1].admin().list_sync_logs(with_token(request, ADMIN_TOKEN)).await.unwrap().into_inner();
    let versions: Vec<i64> = logs.sync_logs.iter().map(|log| log.version).collect();
    assert_eq!(versions, (1..=version).collect::<Vec<_>>());

    // The second instance moves the room on; the first still remembers the older version, and
    // a command naming it is refused with what the database holds.
    let moved = seek(&instances[1], &room_id, &owner, version, 42_000).await.unwrap();
    let status = seek(&instances[0], &room_id, &owner, version, 7_000).await.unwrap_err();
    assert_eq!(status.code(), Code::Aborted);
    let current = conflict_state(&status);
    assert_eq!((current.version, position(&current)), (moved.version, 42_000));
    // And the refusal taught it: the current version is accepted at once.
    let accepted = seek(&instances[0], &room_id, &owner, moved.version, 7_000).await.unwrap();
    assert_eq!(accepted.version, moved.version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_starting_together_on_a_new_database_migrate_it_once() {
    let peers = Peers::start().await;
    let config = test_config();
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let (first, second) = tokio::join!(
            SyncApp::start(&peers, dir.path(), &config, svc_kit::clock::system()),
            SyncApp::start(&peers, dir.path(), &config, svc_kit::clock::system()),
        );
        let (owner_id, owner) = peers.user("Owner").await;
        let room_id = peers.rooms.create_room(&owner_id);
        let request = pb::GetRoomStateRequest { room_id: room_id.clone() };
        for app in [&first, &second] {
            let state = app.client().get_room_state(with_token(request.clone(), &owner)).await.unwrap().into_inner();
            assert_eq!(state.state.unwrap().version, 0);
        }
    }
}
