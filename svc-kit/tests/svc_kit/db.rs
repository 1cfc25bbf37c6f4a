//! `svc_kit::db::connect` on both engines: on PostgreSQL every service keeps its tables in its
//! own schema of a shared database, so two services with a table of the same name never see
//! each other's rows, and SQLite-only options are refused; on SQLite each service has its file.
//! Runs on SQLite by default, on PostgreSQL when `XIAOWO_TEST_POSTGRES` is set.

use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use sea_orm_migration::prelude::*;
use svc_kit::db::{Backend, DbOptions};

#[derive(DeriveIden)]
enum Items {
    Table,
    Name,
}

/// Creates `items(name)`, the same table for both services.
struct CreateItems;

impl MigrationName for CreateItems {
    fn name(&self) -> &str {
        "m0001_create_items"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateItems {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Items::Table)
                    .if_not_exists()
                    .col(ColumnDef::new(Items::Name).string().not_null().primary_key())
                    .to_owned(),
            )
            .await
    }
}

struct AlphaMigrator;

#[async_trait::async_trait]
impl MigratorTrait for AlphaMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateItems)]
    }

    fn migration_table_name() -> DynIden {
        "alpha_migrations".into_iden()
    }
}

struct BetaMigrator;

#[async_trait::async_trait]
impl MigratorTrait for BetaMigrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![Box::new(CreateItems)]
    }

    fn migration_table_name() -> DynIden {
        "beta_migrations".into_iden()
    }
}

/// A fresh directory under the system's temporary directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let path = std::env::temp_dir().join(format!("svc-kit-{label}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn strings(db: &DatabaseConnection, sql: &str) -> Vec<String> {
    let rows = db.query_all_raw(Statement::from_string(db.get_database_backend(), sql)).await.unwrap();
    rows.iter().map(|row| row.try_get_by_index::<String>(0).unwrap()).collect()
}

#[tokio::test]
async fn services_sharing_a_database_keep_to_their_own_schema() {
    let dir = TempDir::new("schemas");
    let alpha_url = svc_kit::testing::database_url(&dir.0, "alpha.db").await;
    let beta_url = svc_kit::testing::database_url(&dir.0, "beta.db").await;
    let alpha = svc_kit::db::connect::<AlphaMigrator>(&alpha_url, &DbOptions::default()).await.unwrap();
    let beta = svc_kit::db::connect::<BetaMigrator>(&beta_url, &DbOptions::default()).await.unwrap();

    alpha.execute_unprepared("INSERT INTO items (name) VALUES ('from alpha')").await.unwrap();
    beta.execute_unprepared("INSERT INTO items (name) VALUES ('from beta')").await.unwrap();

    assert_eq!(strings(&alpha, "SELECT name FROM items").await, ["from alpha"]);
    assert_eq!(strings(&beta, "SELECT name FROM items").await, ["from beta"]);
    // Connecting again finds the migrations applied and the rows where they were.
    let again = svc_kit::db::connect::<AlphaMigrator>(&alpha_url, &DbOptions::default()).await.unwrap();
    assert_eq!(strings(&again, "SELECT name FROM items").await, ["from alpha"]);

    if Backend::of(&alpha_url) == Backend::Postgres {
        assert_eq!(alpha_url, beta_url, "one database for both services");
        let tables = strings(
            &alpha,
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        )
        .await;
        assert_eq!(tables, ["alpha.alpha_migrations", "alpha.items", "beta.beta_migrations", "beta.items"]);
    }
}

#[tokio::test]
async fn a_busy_pooled_connection_is_handed_out_without_a_ping_of_its_own() {
    let dir = TempDir::new("pings");
    let url = svc_kit::testing::database_url(&dir.0, "alpha.db").await;
    let db = svc_kit::db::connect::<AlphaMigrator>(&url, &DbOptions::default()).await.unwrap();
    // Every statement checks a connection out of the pool; a ping there was a round trip to
    // SQLite's thread (or PostgreSQL's server) before each one. PostgreSQL's connections are
    // still pinged after a long idle spell, by a hook of their own.
    let pinged_on_every_checkout = match Backend::of(&url) {
        Backend::Sqlite => db.get_sqlite_connection_pool().options().get_test_before_acquire(),
        Backend::Postgres => db.get_postgres_connection_pool().options().get_test_before_acquire(),
    };
    assert!(!pinged_on_every_checkout);
    db.execute_unprepared("INSERT INTO items (name) VALUES ('still works')").await.unwrap();
    assert_eq!(strings(&db, "SELECT name FROM items").await, ["still works"]);
}

#[tokio::test]
async fn commits_are_checkpointed_into_the_database_file_in_the_background() {
    if svc_kit::testing::on_postgres() {
        println!("skipped on PostgreSQL: checkpoints are SQLite's write-ahead log");
        return;
    }
    let dir = TempDir::new("checkpoints");
    let url = svc_kit::testing::database_url(&dir.0, "alpha.db").await;
    let db = svc_kit::db::connect::<AlphaMigrator>(&url, &DbOptions::default()).await.unwrap();
    let file = dir.0.join("alpha.db");
    let writer = svc_kit::db::writer(&db).await.unwrap();
    let checkpoints = svc_kit::db::Checkpoints::new(db.clone());

    // 750 commits of 1 KiB rows: about 200 pages of log, far below the threshold at which a
    // commit checkpoints by itself, so only the background checkpoint after the 500th commit
    // copies them over.
    for index in 0..750 {
        let name = format!("{index:04}{}", "x".repeat(1024));
        writer.execute_unprepared(&format!("INSERT INTO items (name) VALUES ('{name}')")).await.unwrap();
        checkpoints.committed();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while checkpoints.completed() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(checkpoints.completed(), 1, "one checkpoint per 500 commits");
    let copied = std::fs::metadata(&file).unwrap().len();
    assert!(copied >= 500 * 1024, "the first 500 rows are in the database file itself ({copied} bytes)");
    assert_eq!(strings(&db, "SELECT count(*) || '' FROM items").await, ["750"]);
    let autocheckpoint = |db: DatabaseConnection| async move {
        let sql = Statement::from_string(db.get_database_backend(), "PRAGMA wal_autocheckpoint");
        db.query_one_raw(sql).await.unwrap().and_then(|row| row.try_get_by_index::<i64>(0).ok())
    };
    // The writer's commits checkpoint by themselves only far beyond the background's cadence;
    // other connections keep SQLite's default.
    assert_eq!(autocheckpoint(writer).await, Some(10_000));
    assert_eq!(autocheckpoint(db.clone()).await, Some(1_000));
}

#[tokio::test]
async fn the_writer_is_one_connection_to_the_same_database_opened_the_same_way() {
    let dir = TempDir::new("writer");
    let url = svc_kit::testing::database_url(&dir.0, "alpha.db").await;
    let sqlite = Backend::of(&url) == Backend::Sqlite;
    let options = DbOptions {
        encryption_key: sqlite.then(|| "secret".to_owned()),
        busy_timeout: std::time::Duration::from_millis(1234),
        ..DbOptions::default()
    };
    let db = svc_kit::db::connect::<AlphaMigrator>(&url, &options).await.unwrap();
    let writer = svc_kit::db::writer(&db).await.unwrap();

    writer.execute_unprepared("INSERT INTO items (name) VALUES ('written')").await.unwrap();
    assert_eq!(strings(&db, "SELECT name FROM items").await, ["written"]);
    if sqlite {
        assert_eq!(writer.get_sqlite_connection_pool().options().get_max_connections(), 1);
        assert_eq!(strings(&writer, "PRAGMA journal_mode").await, ["wal"]);
        assert_eq!(strings(&writer, "SELECT timeout || '' FROM pragma_busy_timeout").await, ["1234"]);
        assert_eq!(strings(&writer, "SELECT foreign_keys || '' FROM pragma_foreign_keys").await, ["1"]);
        // The writer opened the file with its key: without one it is not readable.
        let keyless = svc_kit::db::connect::<AlphaMigrator>(&url, &DbOptions::default()).await;
        assert!(keyless.is_err(), "the file is encrypted");
    }
}

#[tokio::test]
async fn a_held_connection_writes_the_same_file_and_hands_a_locked_statement_to_its_pool() {
    use futures_util::FutureExt as _;
    use sea_orm::{DbBackend, SqliteTransactionMode, TransactionOptions, TransactionTrait};
    use svc_kit::db::{HeldConnection, Synchronous};

    let dir = TempDir::new("held");
    let url = svc_kit::testing::database_url(&dir.0, "alpha.db").await;
    let sqlite = Backend::of(&url) == Backend::Sqlite;
    // A busy timeout far longer than the test: a held connection that waited for a lock would
    // show as a first poll that does not come back.
    let options = DbOptions {
        encryption_key: sqlite.then(|| "secret".to_owned()),
        busy_timeout: std::time::Duration::from_secs(60),
        ..DbOptions::default()
    };
    let db = svc_kit::db::connect::<AlphaMigrator>(&url, &options).await.unwrap();
    let writer = svc_kit::db::writer(&db).await.unwrap();
    let held = HeldConnection::open(&options, writer.clone()).unwrap();
    if !sqlite {
        assert!(held.is_none(), "PostgreSQL has no held connection");
        return;
    }
    let held = held.expect("a held connection on SQLite");
    let full = DbOptions { synchronous: Synchronous::Full, ..options.clone() };
    assert!(HeldConnection::open(&full, writer.clone()).unwrap().is_none(), "none where commits wait for the disk");

    // Every kind of value sea-orm binds, written through the held connection (keyed as the pool
    // is: the file is encrypted) and read back through the pool.
    let statement =
        |sql: &str, values: Vec<sea_orm::Value>| Statement::from_sql_and_values(DbBackend::Sqlite, sql, values);
    held.execute(statement("CREATE TABLE kinds (b, i, r, t, x, n)", vec![])).await.unwrap();
    let row = vec![
        true.into(),
        (-7_i32).into(),
        2.5_f64.into(),
        "text".into(),
        vec![0_u8, 255].into(),
        Option::<i64>::None.into(),
    ];
    assert_eq!(held.execute(statement("INSERT INTO kinds VALUES (?, ?, ?, ?, ?, ?)", row)).await.unwrap(), 1);
    let kinds = "SELECT b || ' ' || i || ' ' || r || ' ' || t || ' ' || hex(x) || ' ' || typeof(n) FROM kinds";
    assert_eq!(strings(&db, kinds).await, ["1 -7 2.5 text 00FF null"]);
    // A statement is prepared once: the same text with other values runs again.
    let rename =
        |from: &str, to: &str| statement("UPDATE items SET name = ? WHERE name = ?", vec![to.into(), from.into()]);
    held.execute(statement("INSERT INTO items (name) VALUES (?)", vec!["a".into()])).await.unwrap();
    assert_eq!(held.execute(rename("a", "b")).await.unwrap(), 1);
    assert_eq!(held.execute(rename("a", "c")).await.unwrap(), 0, "no row named a any more");
    assert_eq!(strings(&db, "SELECT name FROM items").await, ["b"]);
    let keyless = svc_kit::db::connect::<AlphaMigrator>(&url, &DbOptions::default()).await;
    assert!(keyless.is_err(), "the file is still encrypted");

    // Another connection holds the write lock. The held connection does not wait for it (its
    // caller's thread is not kept): the statement goes to the pool, which waits for the lock on
    // its own thread, and is written once the lock is released.
    let lock = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await
        .unwrap();
    lock.execute_unprepared("INSERT INTO items (name) VALUES ('first')").await.unwrap();
    let mut waiting = Box::pin(held.execute(statement("INSERT INTO items (name) VALUES (?)", vec!["second".into()])));
    let polled = std::time::Instant::now();
    assert!((&mut waiting).now_or_never().is_none(), "neither refused nor written while the lock is held");
    assert!(polled.elapsed() < std::time::Duration::from_secs(30), "the held connection waited for the lock itself");
    lock.commit().await.unwrap();
    assert_eq!(waiting.await.unwrap(), 1);
    assert_eq!(strings(&db, "SELECT name FROM items ORDER BY rowid").await, ["b", "first", "second"]);
}

#[tokio::test]
async fn an_encryption_key_is_refused_for_postgres() {
    if !svc_kit::testing::on_postgres() {
        println!("skipped on SQLite: this checks a PostgreSQL URL");
        return;
    }
    let dir = TempDir::new("key");
    let url = svc_kit::testing::database_url(&dir.0, "alpha.db").await;
    let options = DbOptions { encryption_key: Some("secret".to_owned()), ..DbOptions::default() };
    let refused = svc_kit::db::connect::<AlphaMigrator>(&url, &options).await;
    assert!(matches!(refused, Err(DbErr::Custom(_))), "{refused:?}");
}

#[test]
fn the_schema_is_named_after_the_migrations_table() {
    assert_eq!(svc_kit::db::schema_of::<AlphaMigrator>(), "alpha");
    assert_eq!(Backend::of("postgres://u@h/db"), Backend::Postgres);
    assert_eq!(Backend::of("postgresql://u@h/db"), Backend::Postgres);
    assert_eq!(Backend::of("sqlite:///var/lib/xiaowo/room.db"), Backend::Sqlite);
}

/// Turning a new SQLite file into WAL mode takes a lock that SQLite's busy timeout does not
/// wait for, so services opening one new file at the same moment used to fail at start with
/// "database is locked" on a loaded machine. Many pools opening and migrating one new file at
/// once must all succeed, the migration recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_starts_at_once_on_a_new_file_all_succeed_and_migrate_it_once() {
    if svc_kit::testing::on_postgres() {
        println!("skipped on PostgreSQL: this is about SQLite's file locks");
        return;
    }
    for round in 0..50 {
        let dir = TempDir::new(&format!("starts-{round}"));
        let url = svc_kit::testing::database_url(&dir.0, "alpha.db").await;
        let starts: Vec<_> = (0..8)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(async move { svc_kit::db::connect::<AlphaMigrator>(&url, &DbOptions::default()).await })
            })
            .collect();
        let mut connections = Vec::new();
        for start in starts {
            connections.push(start.await.unwrap().unwrap_or_else(|error| panic!("round {round}: {error}")));
        }
        let applied = strings(&connections[0], "SELECT version FROM alpha_migrations").await;
        assert_eq!(applied, ["m0001_create_items"], "round {round}");
        assert_eq!(strings(&connections[0], "PRAGMA journal_mode").await, ["wal"]);
    }
}
