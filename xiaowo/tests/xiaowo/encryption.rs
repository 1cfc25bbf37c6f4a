//! At-rest encryption: with a database key every SQLite file is SQLCipher-encrypted, plain
//! SQLite cannot read it, a wrong key stops start-up with a clear error, and backups of an
//! encrypted database stay encrypted and restore with the key.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use proto::session::v1 as pb;
use proto::session::v1::session_service_client::SessionServiceClient;
use svc_kit::service::BuildError;
use tokio_util::sync::CancellationToken;
use xiaowo::backup::{self, Kind, Settings};
use xiaowo::node::{self, Common, Plan, StartError, Target};

const KEY: &str = "correct horse battery staple";

async fn start(data_dir: &Path, key: Option<&str>) -> Result<(node::Running, CancellationToken), StartError> {
    let mut common: Common = svc_kit::testing::from_env();
    common.data_dir = data_dir.to_path_buf();
    common.db_key = key.map(str::to_owned);
    let shutdown = CancellationToken::new();
    let plan = Plan { groups: vec![(SocketAddr::from(([127, 0, 0, 1], 0)), vec![Target::Session])], ..Plan::default() };
    let running = node::start(plan, &common, svc_kit::clock::system(), &shutdown).await?;
    Ok((running, shutdown))
}

/// What Python's plain SQLite (no SQLCipher) makes of a database file.
fn plain_sqlite_reads(path: &Path) -> bool {
    Command::new("python3")
        .args(["-c", "import sqlite3, sys; sqlite3.connect(sys.argv[1]).execute('SELECT COUNT(*) FROM sqlite_master').fetchall()"])
        .arg(path)
        .output()
        .expect("python3")
        .status
        .success()
}

fn names_with_key(path: &Path, key: Option<&str>) -> rusqlite::Result<Vec<String>> {
    let connection = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    if let Some(key) = key {
        connection.pragma_update(None, "key", key)?;
    }
    let mut statement = connection.prepare("SELECT display_name FROM user_sessions")?;
    statement.query_map([], |row| row.get(0))?.collect()
}

#[tokio::test]
async fn encrypted_databases_need_their_key_and_back_up_encrypted() {
    let data = tempfile::tempdir().unwrap();
    let (running, shutdown) = start(data.path(), Some(KEY)).await.unwrap();
    let url = running.servers[0].url();
    let mut client =
        SessionServiceClient::new(svc_kit::peer::channel(&url, std::time::Duration::from_secs(5)).unwrap());
    client.create_session(pb::CreateSessionRequest { display_name: "secret".to_owned() }).await.unwrap();
    let backups = tempfile::tempdir().unwrap();
    let settings = Settings {
        data_dir: data.path().to_path_buf(),
        backup_dir: backups.path().to_path_buf(),
        offsite_dir: None,
        keep_full: 2,
        encryption_key: Some(KEY.to_owned()),
    };
    let manifest =
        tokio::task::spawn_blocking(move || backup::run(&settings, Kind::Full, 1_000)).await.unwrap().unwrap();
    shutdown.cancel();
    running.wait().await.unwrap();
    let database = data.path().join("session.db");

    assert!(!plain_sqlite_reads(&database), "plain SQLite read an encrypted database");
    assert!(names_with_key(&database, None).is_err());
    assert!(names_with_key(&database, Some("wrong")).is_err());
    assert_eq!(names_with_key(&database, Some(KEY)).unwrap(), vec!["secret".to_owned()]);

    let backed_up = backups.path().join(&manifest.id).join("session.db");
    assert!(!plain_sqlite_reads(&backed_up), "the backup of an encrypted database is readable without the key");
    let restored = tempfile::tempdir().unwrap();
    assert!(backup::restore(backups.path(), None, restored.path(), None).is_err(), "restore without the key");
    backup::restore(backups.path(), None, restored.path(), Some(KEY)).unwrap();
    assert_eq!(names_with_key(&restored.path().join("session.db"), Some(KEY)).unwrap(), vec!["secret".to_owned()]);
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_a_clear_startup_error() {
    let data = tempfile::tempdir().unwrap();
    let (running, shutdown) = start(data.path(), Some(KEY)).await.unwrap();
    shutdown.cancel();
    running.wait().await.unwrap();

    for key in [Some("not the key"), None] {
        let refused = start(data.path(), key).await.unwrap_err();
        assert!(
            matches!(
                refused,
                StartError::Build { service: "session", source: BuildError::Database(sea_orm::DbErr::Custom(_)) }
            ),
            "{key:?}: {refused}"
        );
    }
    let plain = tempfile::tempdir().unwrap();
    let (running, shutdown) = start(plain.path(), None).await.unwrap();
    shutdown.cancel();
    running.wait().await.unwrap();
    assert!(plain_sqlite_reads(&plain.path().join("session.db")), "without a key the file is plain SQLite");
}
