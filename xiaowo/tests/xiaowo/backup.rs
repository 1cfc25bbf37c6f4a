//! Backups and restores of a running system's databases: consistent under load, full +
//! incremental chains that rebuild the exact state, verified off-site copies, refusal of
//! corrupt backups and of a live data directory, and retention.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use proto::session::v1 as pb;
use proto::session::v1::session_service_client::SessionServiceClient;
use tokio_util::sync::CancellationToken;
use xiaowo::backup::{self, BackupError, Kind, Settings};
use xiaowo::node::{self, Common, Plan, Target};

struct Node {
    url: String,
    shutdown: CancellationToken,
    running: Option<node::Running>,
    data: tempfile::TempDir,
}

impl Node {
    async fn start() -> Self {
        let data = tempfile::tempdir().unwrap();
        let mut common: Common = svc_kit::testing::from_env();
        common.data_dir = data.path().to_path_buf();
        // The writers here are load, not a flood.
        common.session.create_burst = 100_000;
        common.chat.flood_burst = 100_000;
        common.chat.flood_per_second = 100_000.0;
        common.room.bcrypt_cost = 4;
        let shutdown = CancellationToken::new();
        let plan =
            Plan { groups: vec![(SocketAddr::from(([127, 0, 0, 1], 0)), Target::ALL.to_vec())], ..Plan::default() };
        let running = node::start(plan, &common, svc_kit::clock::system(), &shutdown).await.unwrap();
        let url = running.servers[0].url();
        Self { url, shutdown, running: Some(running), data }
    }

    fn settings(&self, backups: &Path, offsite: Option<&Path>, keep_full: usize) -> Settings {
        Settings {
            data_dir: self.data.path().to_path_buf(),
            backup_dir: backups.to_path_buf(),
            offsite_dir: offsite.map(Path::to_path_buf),
            keep_full,
            encryption_key: None,
        }
    }

    fn client(&self) -> SessionServiceClient<tonic::transport::Channel> {
        SessionServiceClient::new(svc_kit::peer::channel(&self.url, std::time::Duration::from_secs(5)).unwrap())
    }

    async fn create(&self, name: &str) -> String {
        self.client()
            .create_session(pb::CreateSessionRequest { display_name: name.to_owned() })
            .await
            .unwrap()
            .into_inner()
            .session
            .unwrap()
            .user_id
    }

    async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.wait().await.unwrap();
        }
    }
}

/// Every row of every table, as text, in a stable order.
fn dump(path: &Path) -> Vec<String> {
    let connection = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut rows = Vec::new();
    for table in tables {
        let mut statement = connection.prepare(&format!("SELECT * FROM \"{table}\" ORDER BY 1")).unwrap();
        let columns = statement.column_count();
        let mut query = statement.query([]).unwrap();
        while let Some(row) = query.next().unwrap() {
            let values: Vec<String> = (0..columns).map(|index| format!("{:?}", row.get_ref(index).unwrap())).collect();
            rows.push(format!("{table}: {}", values.join(", ")));
        }
    }
    rows
}

fn session_ids(path: &Path) -> Vec<String> {
    let connection = rusqlite::Connection::open(path).unwrap();
    let mut statement = connection.prepare("SELECT session_id FROM user_sessions").unwrap();
    statement.query_map([], |row| row.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// `(room_id, seq)` of every chat message stored in `path`.
fn chat_messages(path: &Path) -> Vec<(String, i64)> {
    let connection = rusqlite::Connection::open(path).unwrap();
    let mut statement = connection.prepare("SELECT room_id, seq FROM messages").unwrap();
    statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?))).unwrap().collect::<Result<_, _>>().unwrap()
}

fn blocking_run(settings: &Settings, kind: Kind, now_ms: i64) -> backup::Manifest {
    backup::run(settings, kind, now_ms).unwrap()
}

#[tokio::test]
async fn backup_under_load_keeps_every_acknowledged_write() {
    let node = Arc::new(Node::start().await);
    let backups = tempfile::tempdir().unwrap();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let writers: Vec<_> = (0..4)
        .map(|writer| {
            let node = Arc::clone(&node);
            let acknowledged = Arc::clone(&acknowledged);
            tokio::spawn(async move {
                for index in 0..60 {
                    let id = node.create(&format!("w{writer}-{index}")).await;
                    acknowledged.lock().unwrap().push(id);
                }
            })
        })
        .collect();
    while acknowledged.lock().unwrap().len() < 40 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    let before_backup = acknowledged.lock().unwrap().clone();
    let settings = node.settings(backups.path(), None, 3);
    let manifest = tokio::task::spawn_blocking(move || blocking_run(&settings, Kind::Full, 1_000)).await.unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let restored = tempfile::tempdir().unwrap();
    backup::restore(backups.path(), Some(&manifest.id), restored.path(), None).unwrap();

    let ids = session_ids(&restored.path().join("session.db"));
    for id in &before_backup {
        assert!(ids.contains(id), "acknowledged before the backup but missing after restore: {id}");
    }
    assert!(ids.len() <= 240);
    Arc::try_unwrap(node).ok().unwrap().stop().await;
}

#[tokio::test]
async fn backup_during_chat_load_keeps_every_acknowledged_message() {
    use proto::chat::v1 as chat;
    use proto::room::v1 as room;
    let node = Node::start().await;
    let channel = svc_kit::peer::channel(&node.url, std::time::Duration::from_secs(5)).unwrap();
    let token = node
        .client()
        .create_session(pb::CreateSessionRequest { display_name: "host".to_owned() })
        .await
        .unwrap()
        .into_inner()
        .token;
    let room_id = room::room_service_client::RoomServiceClient::new(channel.clone())
        .create_room(authorized(room::CreateRoomRequest { name: "load".to_owned(), ..Default::default() }, &token))
        .await
        .unwrap()
        .into_inner()
        .room
        .unwrap()
        .room_id;
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let senders: Vec<_> = (0..4)
        .map(|sender| {
            let mut client = chat::chat_service_client::ChatServiceClient::new(channel.clone());
            let acknowledged = Arc::clone(&acknowledged);
            let requests: Vec<_> = (0..100)
                .map(|index| {
                    authorized(
                        chat::SendMessageRequest {
                            room_id: room_id.clone(),
                            text: format!("message {sender}-{index}"),
                            client_message_id: format!("c{sender}-{index}"),
                        },
                        &token,
                    )
                })
                .collect();
            tokio::spawn(async move {
                for request in requests {
                    let message = client.send_message(request).await.unwrap().into_inner().message.unwrap();
                    acknowledged.lock().unwrap().push((message.room_id, message.seq));
                }
            })
        })
        .collect();
    while acknowledged.lock().unwrap().len() < 80 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }

    let before_backup = acknowledged.lock().unwrap().clone();
    let backups = tempfile::tempdir().unwrap();
    let settings = node.settings(backups.path(), None, 3);
    let manifest = tokio::task::spawn_blocking(move || blocking_run(&settings, Kind::Full, 1_000)).await.unwrap();
    for sender in senders {
        sender.await.unwrap();
    }
    let restored = tempfile::tempdir().unwrap();
    backup::restore(backups.path(), Some(&manifest.id), restored.path(), None).unwrap();

    let stored = chat_messages(&restored.path().join("chat.db"));
    for message in &before_backup {
        assert!(stored.contains(message), "acknowledged before the backup, missing after restore: {message:?}");
    }
    let mut seqs: Vec<i64> = stored.iter().map(|(_, seq)| *seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=i64::try_from(seqs.len()).unwrap()).collect::<Vec<_>>(), "gap-free up to the backup");
    node.stop().await;
}

#[tokio::test]
async fn full_plus_increments_rebuild_each_point_exactly() {
    let node = Node::start().await;
    let backups = tempfile::tempdir().unwrap();
    let offsite = tempfile::tempdir().unwrap();
    let settings = node.settings(backups.path(), Some(offsite.path()), 3);
    let live = node.data.path().join("session.db");
    for index in 0..3 {
        node.create(&format!("first{index}")).await;
    }
    let full = blocking_run(&settings, Kind::Full, 1_000);
    for index in 0..30 {
        node.create(&format!("second{index}")).await;
    }
    let first_increment = blocking_run(&settings, Kind::Incremental, 2_000);
    let at_first_increment = dump(&live);
    node.create("third").await;
    let second_increment = blocking_run(&settings, Kind::Incremental, 3_000);
    let at_second_increment = dump(&live);

    assert_eq!(full.kind, Kind::Full);
    assert_eq!(second_increment.parent.as_deref(), Some(first_increment.id.as_str()));
    let session =
        |manifest: &backup::Manifest| manifest.services.iter().find(|s| s.service == "session").cloned().unwrap();
    assert!(
        session(&second_increment).pages_stored < session(&second_increment).page_count,
        "an increment stores only changed pages"
    );

    for (dir, label) in [(backups.path(), "primary"), (offsite.path(), "off-site")] {
        let to_first = tempfile::tempdir().unwrap();
        backup::restore(dir, Some(&first_increment.id), to_first.path(), None).unwrap();
        assert_eq!(dump(&to_first.path().join("session.db")), at_first_increment, "{label}: first increment");
        let to_latest = tempfile::tempdir().unwrap();
        backup::restore(dir, None, to_latest.path(), None).unwrap();
        assert_eq!(dump(&to_latest.path().join("session.db")), at_second_increment, "{label}: latest");
    }
    let verified = backup::verify(offsite.path(), None).unwrap();
    assert_eq!(verified, vec![full.id, first_increment.id, second_increment.id]);
    node.stop().await;
}

fn corrupt(path: &PathBuf, truncate: bool) {
    let mut bytes = std::fs::read(path).unwrap();
    if truncate {
        bytes.truncate(bytes.len() / 2);
    } else {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
    }
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test]
async fn corrupt_or_truncated_backups_are_refused() {
    let node = Node::start().await;
    let backups = tempfile::tempdir().unwrap();
    let settings = node.settings(backups.path(), None, 3);
    node.create("a").await;
    let full = blocking_run(&settings, Kind::Full, 1_000);
    node.create("b").await;
    let increment = blocking_run(&settings, Kind::Incremental, 2_000);
    node.stop().await;

    corrupt(&backups.path().join(&increment.id).join("session.delta"), true);
    let target = tempfile::tempdir().unwrap();
    let truncated = backup::restore(backups.path(), None, target.path(), None).unwrap_err();
    assert!(matches!(truncated, BackupError::Checksum { .. }), "{truncated}");
    assert!(!target.path().join("session.db").exists(), "nothing restored from a bad chain");

    corrupt(&backups.path().join(&full.id).join("session.db"), false);
    let flipped = backup::restore(backups.path(), Some(&full.id), target.path(), None).unwrap_err();
    assert!(matches!(flipped, BackupError::Checksum { .. }), "{flipped}");
    assert!(backup::verify(backups.path(), None).is_err());
}

#[tokio::test]
async fn restore_refuses_a_running_systems_files() {
    let node = Node::start().await;
    let backups = tempfile::tempdir().unwrap();
    let settings = node.settings(backups.path(), None, 3);
    node.create("a").await;
    blocking_run(&settings, Kind::Full, 1_000);

    let refused = backup::restore(backups.path(), None, node.data.path(), None).unwrap_err();

    assert!(matches!(refused, BackupError::TargetInUse(_)), "{refused}");
    node.create("still serving").await;
    node.stop().await;
}

#[tokio::test]
async fn retention_keeps_the_newest_full_chains() {
    let node = Node::start().await;
    let backups = tempfile::tempdir().unwrap();
    let offsite = tempfile::tempdir().unwrap();
    let settings = node.settings(backups.path(), Some(offsite.path()), 2);
    node.create("a").await;
    let mut ids = Vec::new();
    for round in 0..3 {
        let now = 10_000 * (round + 1);
        ids.push(blocking_run(&settings, Kind::Full, now).id);
        node.create("more").await;
        ids.push(blocking_run(&settings, Kind::Incremental, now + 1).id);
    }

    // A backup being written sits in a hidden staging directory with a manifest that may be
    // half-written; listing while the schedule writes one must not trip over it.
    let staging = backups.path().join(".20991231T000000000Z-full.partial");
    std::fs::create_dir(&staging).unwrap();
    std::fs::write(staging.join("manifest.json"), "").unwrap();
    for dir in [backups.path(), offsite.path()] {
        let kept: Vec<String> = backup::list(dir).unwrap().into_iter().map(|manifest| manifest.id).collect();
        assert_eq!(kept, ids[2..].to_vec());
    }
    node.stop().await;
}

/// An instance restarted more often than the increment interval used to never back itself up:
/// the first scheduled backup came one interval after start. Now a full backup is taken right
/// after start when none is younger than the full interval; a restart with a recent one takes
/// none at start and an increment at the next tick.
#[tokio::test]
async fn the_schedule_takes_a_full_backup_right_after_start_when_none_is_recent() {
    let node = Node::start().await;
    node.create("before the first start").await;
    let backups = tempfile::tempdir().unwrap();
    let settings = node.settings(backups.path(), None, 3);
    let schedule = |interval: std::time::Duration| {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(backup::run_schedule(
            settings.clone(),
            std::time::Duration::from_secs(24 * 3600),
            interval,
            svc_kit::clock::system(),
            shutdown.clone(),
        ));
        (shutdown, task)
    };
    let backups_now = || backup::list(backups.path()).unwrap();
    let eventually = async |what: &str, done: &dyn Fn(&[backup::Manifest]) -> bool| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !done(&backups_now()) {
            assert!(std::time::Instant::now() < deadline, "{what}: {:?}", backups_now());
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };

    // First start, hourly increments: a full backup at once, not an hour later.
    let (shutdown, task) = schedule(std::time::Duration::from_secs(3600));
    eventually("a full backup right after start", &|taken| taken.len() == 1).await;
    assert_eq!(backups_now()[0].kind, Kind::Full);
    shutdown.cancel();
    task.await.unwrap();

    // A restart with that full backup recent, increments every 200 ms: the start takes none, the
    // ticks after it take increments of that full backup.
    let (shutdown, task) = schedule(std::time::Duration::from_millis(200));
    eventually("an increment at the next tick", &|taken| taken.len() >= 2).await;
    shutdown.cancel();
    task.await.unwrap();
    let taken = backups_now();
    assert_eq!(taken.iter().filter(|manifest| manifest.kind == Kind::Full).count(), 1, "{taken:?}");
    assert_eq!(taken[1].parent.as_deref(), Some(taken[0].id.as_str()));
    node.stop().await;
}
