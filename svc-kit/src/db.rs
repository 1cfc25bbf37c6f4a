//! Connecting to a service's own database and running its migrations.
//!
//! SQLite is the default store: the file is created if missing and opened in WAL mode with an
//! explicit `synchronous` level, a `busy_timeout` so that a briefly locked database makes
//! writers wait instead of failing, and foreign keys enforced. A `postgres://` URL selects
//! PostgreSQL with the same code: each service keeps its tables in its own schema (created if
//! missing, and the only entry of every pooled connection's `search_path`), so that several
//! services can share one PostgreSQL database without seeing each other's tables.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr, SqliteTransactionMode, Statement,
    TransactionOptions, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

/// Which engine a database URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (`sqlite://…`), the default store.
    Sqlite,
    /// A PostgreSQL server (`postgres://…` or `postgresql://…`), the scale-out store.
    Postgres,
}

impl Backend {
    /// The engine `url` names; anything that is not PostgreSQL is handed to SQLite.
    #[must_use]
    pub fn of(url: &str) -> Self {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") { Self::Postgres } else { Self::Sqlite }
    }
}

/// The PostgreSQL schema a migrator's tables live in: its migrations table's name without the
/// `_migrations` suffix (`session_migrations` → `session`), so every service is told apart by
/// what it already declares.
#[must_use]
pub fn schema_of<M: MigratorTrait>() -> String {
    let table = M::migration_table_name().to_string();
    table.strip_suffix("_migrations").map_or_else(|| table.clone(), str::to_owned)
}

/// How durable a SQLite commit is. `Normal` in WAL mode loses at most the last transactions
/// on power loss, never consistency; `Full` fsyncs every commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Synchronous {
    /// `PRAGMA synchronous = NORMAL`.
    Normal,
    /// `PRAGMA synchronous = FULL`.
    Full,
}

/// How long a PostgreSQL connection may sit idle in the pool before it is pinged on checkout.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(30);

/// Options shared by every service's database connection.
#[derive(Clone)]
pub struct DbOptions {
    /// Pool size. SQLite allows one writer at a time, but readers proceed in parallel in WAL.
    pub max_connections: u32,
    /// How long a statement waits for a lock held by another connection.
    pub busy_timeout: Duration,
    /// SQLite's `synchronous` pragma.
    pub synchronous: Synchronous,
    /// SQLCipher passphrase: the file is encrypted at rest with it (`None`: plain SQLite).
    pub encryption_key: Option<String>,
}

impl std::fmt::Debug for DbOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbOptions")
            .field("max_connections", &self.max_connections)
            .field("busy_timeout", &self.busy_timeout)
            .field("synchronous", &self.synchronous)
            .field("encrypted", &self.encryption_key.is_some())
            .finish()
    }
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            busy_timeout: Duration::from_secs(5),
            synchronous: Synchronous::Normal,
            encryption_key: None,
        }
    }
}

/// Opens `url` (`sqlite://path?mode=rwc` or `postgres://…`) and runs migrator `M`; on
/// PostgreSQL in the schema [`schema_of::<M>`](schema_of).
///
/// # Errors
/// When the database cannot be opened or a migration fails.
pub async fn connect<M: MigratorTrait>(url: &str, options: &DbOptions) -> Result<DatabaseConnection, DbErr> {
    connect_in_schema::<M>(url, &schema_of::<M>(), options).await
}

/// Like [`connect`], with the PostgreSQL schema named explicitly (ignored for SQLite, where
/// every service has a file of its own).
///
/// # Errors
/// When the database cannot be opened or a migration fails, or when an option that only
/// SQLite has (an encryption key) is given for PostgreSQL.
pub async fn connect_in_schema<M: MigratorTrait>(
    url: &str,
    schema: &str,
    options: &DbOptions,
) -> Result<DatabaseConnection, DbErr> {
    match Backend::of(url) {
        Backend::Sqlite => connect_sqlite::<M>(url, options).await,
        Backend::Postgres => connect_postgres::<M>(url, schema, options).await,
    }
}

async fn connect_postgres<M: MigratorTrait>(
    url: &str,
    schema: &str,
    options: &DbOptions,
) -> Result<DatabaseConnection, DbErr> {
    if options.encryption_key.is_some() {
        return Err(DbErr::Custom(
            "an encryption key applies to SQLite files only; encrypt PostgreSQL's storage with the server's own means"
                .to_owned(),
        ));
    }
    if schema.is_empty() || !schema.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(DbErr::Custom(format!("schema name {schema:?} is not a plain lowercase identifier")));
    }
    let mut connect = ConnectOptions::new(url.to_owned());
    connect
        .max_connections(options.max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // A connection is pinged when it goes back to the pool; one that then sat idle long
        // enough for the server or a firewall to have dropped it is pinged again before use,
        // and a busy one is handed out without a round trip of its own.
        .test_before_acquire_if_idle_for(IDLE_BEFORE_PING)
        // Only the service's own schema: a table that cannot be created there fails loudly
        // instead of landing in `public` beside other services' tables.
        .set_schema_search_path(schema.to_owned());
    let db = Database::connect(connect).await?;
    migrate_postgres::<M>(&db, schema).await?;
    Ok(db)
}

/// Creates the schema and runs the migrations under a transaction-scoped advisory lock, so
/// that several instances of a service starting at once on one database migrate it once.
async fn migrate_postgres<M: MigratorTrait>(db: &DatabaseConnection, schema: &str) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let txn = db.begin().await?;
    txn.execute_raw(Statement::from_sql_and_values(
        backend,
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        [format!("xiaowo migrate {schema}").into()],
    ))
    .await?;
    txn.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\"")).await?;
    M::up(&txn, None).await?;
    txn.commit().await
}

async fn connect_sqlite<M: MigratorTrait>(url: &str, options: &DbOptions) -> Result<DatabaseConnection, DbErr> {
    let url = normalise_sqlite_url(url);
    let mut connect = ConnectOptions::new(url.clone());
    connect
        .max_connections(options.max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        // A pooled SQLite connection is a file handle on a thread of its own: nothing can drop
        // it while idle, and the ping on each checkout was a hop to that thread and back before
        // every statement.
        .test_before_acquire(false);
    let busy_timeout = options.busy_timeout;
    let synchronous = match options.synchronous {
        Synchronous::Normal => SqliteSynchronous::Normal,
        Synchronous::Full => SqliteSynchronous::Full,
    };
    connect.map_sqlx_sqlite_opts(move |sqlite| {
        sqlite
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(busy_timeout)
            .foreign_keys(true)
    });
    if let Some(key) = options.encryption_key.as_deref() {
        // sqlx writes pragma values verbatim: quote the passphrase as an SQL string.
        connect.sqlcipher_key(format!("'{}'", key.replace('\'', "''")));
    }
    let encrypted = options.encryption_key.is_some();
    let not_a_database = |error: DbErr| {
        if error.to_string().contains("file is not a database") {
            DbErr::Custom(if encrypted {
                "cannot open the database: wrong encryption key, or the file is not encrypted".to_owned()
            } else {
                "cannot open the database: it is encrypted (give its key) or not a database".to_owned()
            })
        } else {
            error
        }
    };
    let db = open_sqlite(connect, options.busy_timeout).await.map_err(not_a_database)?;
    // One write transaction from its first statement (`BEGIN IMMEDIATE`): instances starting
    // together on one file migrate one after the other, the later finding nothing to do,
    // instead of both recording the same migration.
    let txn = db
        .begin_with_options(TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        })
        .await
        .map_err(not_a_database)?;
    M::up(&txn, None).await.map_err(not_a_database)?;
    txn.commit().await?;
    Ok(db)
}

/// Opens the pool, waiting out a start-up lock for at most `busy_timeout`.
///
/// A connection's first statements switch a new file to WAL mode, which takes an exclusive lock
/// that SQLite's busy timeout does not wait for: a process (or pool) opening the file while
/// another is switching it gets `SQLITE_BUSY` at once. The switch happens once per file and
/// takes milliseconds, so opening again after a short pause finds the file in WAL mode already.
async fn open_sqlite(connect: ConnectOptions, busy_timeout: Duration) -> Result<DatabaseConnection, DbErr> {
    let deadline = tokio::time::Instant::now() + busy_timeout;
    let mut pause = Duration::from_millis(5);
    loop {
        match Database::connect(connect.clone()).await {
            Err(error) if crate::status::is_busy(&error) && tokio::time::Instant::now() + pause < deadline => {
                tracing::debug!(%error, "database locked while opening; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
            result => return result,
        }
    }
}

/// `sqlite:///abs/path` and `sqlite://rel/path` both name files; `mode=rwc` creates them.
fn normalise_sqlite_url(url: &str) -> String {
    if url.starts_with("sqlite:") && !url.contains("mode=") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}mode=rwc")
    } else {
        url.to_owned()
    }
}

/// The URL of a SQLite file inside `data_dir`.
#[must_use]
pub fn sqlite_url(data_dir: &std::path::Path, file_name: &str) -> String {
    format!("sqlite://{}?mode=rwc", data_dir.join(file_name).display())
}

/// A connection for a service's writes, beside `db`'s pool for everything else.
///
/// On SQLite a pool of one connection to the same file, opened with the same options: a pooled
/// connection that finds the database changed by another connection since its last statement
/// starts over with an empty page cache, and a pool hands its connections out in turn, so
/// writes spread over the pool read every page they touch afresh. Kept to one connection that
/// makes (nearly) all of the service's writes, the writer's cache stays warm. It checkpoints
/// the log by itself only past [`AUTOCHECKPOINT_PAGES`]: a service with a writer keeps the log
/// short with [`Checkpoints`]. On PostgreSQL, `db`.
///
/// # Errors
/// When the connection cannot be opened.
pub async fn writer(db: &DatabaseConnection) -> Result<DatabaseConnection, DbErr> {
    if db.get_database_backend() != sea_orm::DatabaseBackend::Sqlite {
        return Ok(db.clone());
    }
    let pool = db.get_sqlite_connection_pool();
    let options = pool.options();
    let writer = sea_orm::sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(options.get_acquire_timeout())
        .test_before_acquire(false)
        .connect_with(
            pool.connect_options().as_ref().clone().pragma("wal_autocheckpoint", AUTOCHECKPOINT_PAGES.to_string()),
        )
        .await
        .map_err(|error| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(error.into())))?;
    Ok(sea_orm::SqlxSqliteConnector::from_sqlx_sqlite_pool(writer))
}

/// A SQLite connection that runs single statements on the calling thread, for the one write
/// most of a service's commands make (on PostgreSQL, and with `synchronous = FULL`, there is
/// none).
///
/// sqlx runs each SQLite connection on a thread of its own: a statement is handed to that
/// thread and its result handed back, two thread switches, and a pooled connection makes a
/// second round trip as it goes back to its pool, where sqlx pings it. A statement of a few
/// tens of microseconds cost as much again in the handing over. Here it runs where it is
/// called, inside the commit that is waiting for it. It may then keep the calling thread for
/// what the statement takes and nothing more: the connection does not wait for a lock (its
/// busy timeout is zero) and is not used where a commit waits for the disk (`synchronous =
/// FULL`). A statement that finds the database locked by another connection is handed to the
/// `fallback` pool, which waits for it on its own thread as every other write does.
///
/// Opened with the service's file, key and pragmas; it checkpoints by itself only past
/// [`AUTOCHECKPOINT_PAGES`], as [`writer`] does. Statements are prepared once and cached.
#[derive(Clone)]
pub struct HeldConnection {
    connection: std::sync::Arc<std::sync::Mutex<rusqlite::Connection>>,
    fallback: DatabaseConnection,
}

impl std::fmt::Debug for HeldConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldConnection").finish_non_exhaustive()
    }
}

impl HeldConnection {
    /// A connection to the SQLite file `fallback` (the service's [`writer`]) is open on, opened
    /// with `options`; `fallback` runs what finds the database locked. `None` on PostgreSQL,
    /// with `synchronous = FULL`, and for a database that is not a file.
    ///
    /// # Errors
    /// When the file cannot be opened or keyed.
    pub fn open(options: &DbOptions, fallback: DatabaseConnection) -> Result<Option<Self>, DbErr> {
        if fallback.get_database_backend() != sea_orm::DatabaseBackend::Sqlite
            || options.synchronous == Synchronous::Full
        {
            return Ok(None);
        }
        let connect_options = fallback.get_sqlite_connection_pool().connect_options();
        let path = connect_options.get_filename();
        if !path.is_file() {
            // An in-memory database: a connection of its own would be another database.
            return Ok(None);
        }
        let connection =
            open_held(path, options).map_err(|error| DbErr::Conn(sea_orm::RuntimeErr::Internal(error.to_string())))?;
        Ok(Some(Self { connection: std::sync::Arc::new(std::sync::Mutex::new(connection)), fallback }))
    }

    /// Runs `statement`; the rows it changed.
    ///
    /// # Errors
    /// When the statement fails, here or, when the database was locked, on the fallback.
    pub async fn execute(&self, statement: Statement) -> Result<u64, DbErr> {
        match self.execute_here(&statement) {
            Err(error) if is_locked(&error) => {
                tracing::debug!(%error, "database locked; the statement waits on the pool");
                Ok(self.fallback.execute_raw(statement).await?.rows_affected())
            }
            result => result.map_err(|error| DbErr::Exec(sea_orm::RuntimeErr::Internal(error.to_string()))),
        }
    }

    fn execute_here(&self, statement: &Statement) -> rusqlite::Result<u64> {
        let connection = self.connection.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut prepared = connection.prepare_cached(&statement.sql)?;
        let values = statement.values.as_ref().map_or(&[][..], |values| values.0.as_slice());
        for (index, value) in values.iter().enumerate() {
            prepared.raw_bind_parameter(index + 1, to_sqlite(value)?)?;
        }
        let changed = prepared.raw_execute()?;
        Ok(u64::try_from(changed).unwrap_or(u64::MAX))
    }
}

fn open_held(path: &std::path::Path, options: &DbOptions) -> rusqlite::Result<rusqlite::Connection> {
    // The file the pool created and migrated; never another one.
    let connection = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    if let Some(key) = options.encryption_key.as_deref() {
        connection.pragma_update(None, "key", key)?;
    }
    // The pool opened the file and switched it to WAL; this connection only joins it.
    connection.busy_timeout(Duration::ZERO)?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "foreign_keys", true)?;
    connection.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES)?;
    connection.set_prepared_statement_cache_capacity(32);
    Ok(connection)
}

fn is_locked(error: &rusqlite::Error) -> bool {
    matches!(error.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// A value sea-orm bound to a statement, as SQLite takes it (text and blobs borrowed).
fn to_sqlite(value: &sea_orm::sea_query::Value) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
    use rusqlite::types::{ToSqlOutput, Value as Owned, ValueRef};
    use sea_orm::sea_query::Value;
    let integer = |value: Option<i64>| ToSqlOutput::Owned(value.map_or(Owned::Null, Owned::Integer));
    let real = |value: Option<f64>| ToSqlOutput::Owned(value.map_or(Owned::Null, Owned::Real));
    Ok(match value {
        Value::Bool(value) => integer(value.map(i64::from)),
        Value::TinyInt(value) => integer(value.map(i64::from)),
        Value::SmallInt(value) => integer(value.map(i64::from)),
        Value::Int(value) => integer(value.map(i64::from)),
        Value::BigInt(value) => integer(*value),
        Value::TinyUnsigned(value) => integer(value.map(i64::from)),
        Value::SmallUnsigned(value) => integer(value.map(i64::from)),
        Value::Unsigned(value) => integer(value.map(i64::from)),
        Value::BigUnsigned(value) => match value.map(i64::try_from).transpose() {
            Ok(value) => integer(value),
            Err(error) => return Err(rusqlite::Error::ToSqlConversionFailure(Box::new(error))),
        },
        Value::Float(value) => real(value.map(f64::from)),
        Value::Double(value) => real(*value),
        Value::String(value) => value
            .as_deref()
            .map_or(ToSqlOutput::Owned(Owned::Null), |text| ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes()))),
        Value::Char(value) => ToSqlOutput::Owned(value.map_or(Owned::Null, |value| Owned::Text(value.to_string()))),
        Value::Bytes(value) => value
            .as_deref()
            .map_or(ToSqlOutput::Owned(Owned::Null), |bytes| ToSqlOutput::Borrowed(ValueRef::Blob(bytes))),
        other => {
            return Err(rusqlite::Error::ToSqlConversionFailure(
                format!("a value SQLite is not given here: {other:?}").into(),
            ));
        }
    })
}

/// Commits between two background checkpoints. A checkpoint copies each page once however many
/// commits changed it, and busy commits keep changing the same few pages (a log's last page, a
/// counter, an index's), so rarer checkpoints copy and sync less per commit. A few thousand
/// pages of log at most, under [`AUTOCHECKPOINT_PAGES`].
const COMMITS_PER_CHECKPOINT: u32 = 500;

/// Pages of log at which a [`writer`] checkpoints by itself (SQLite's `wal_autocheckpoint`,
/// 1000 by default, which other connections keep): a backstop that the background checkpoints
/// keep the log well under.
const AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// Copies a SQLite database's write-ahead log back into the database file off the commit path.
///
/// Left to SQLite, the commit that takes the log past its threshold checkpoints it itself, and
/// every writer queued behind that commit waits the tens of milliseconds that takes. A service
/// with a busy write path calls [`Self::committed`] after each commit instead: every
/// [`COMMITS_PER_CHECKPOINT`] commits a `PASSIVE` checkpoint runs on another pooled connection
/// in the background (one at a time), concurrently with readers and writers, so the log stays
/// small and SQLite's own checkpoint remains only a backstop. Nothing to do on PostgreSQL.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    db: DatabaseConnection,
    state: std::sync::Arc<CheckpointState>,
}

#[derive(Debug, Default)]
struct CheckpointState {
    commits: std::sync::atomic::AtomicU32,
    running: std::sync::atomic::AtomicBool,
    completed: std::sync::atomic::AtomicU64,
}

impl Checkpoints {
    /// Background checkpoints for `db`.
    #[must_use]
    pub fn new(db: DatabaseConnection) -> Self {
        Self { db, state: std::sync::Arc::default() }
    }

    /// Counts a commit, and starts a checkpoint when enough have gone by since the last.
    pub fn committed(&self) {
        use std::sync::atomic::Ordering;
        if self.db.get_database_backend() != sea_orm::DatabaseBackend::Sqlite
            || self.state.commits.fetch_add(1, Ordering::AcqRel) + 1 < COMMITS_PER_CHECKPOINT
            || self.state.running.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.state.commits.store(0, Ordering::Release);
        let (db, state) = (self.db.clone(), std::sync::Arc::clone(&self.state));
        tokio::spawn(async move {
            match db.execute_unprepared("PRAGMA wal_checkpoint(PASSIVE)").await {
                Ok(_) => {
                    state.completed.fetch_add(1, Ordering::AcqRel);
                }
                Err(error) => {
                    tracing::warn!(%error, "background WAL checkpoint failed; SQLite will checkpoint on commit")
                }
            }
            state.running.store(false, Ordering::Release);
        });
    }

    /// Background checkpoints finished so far.
    #[must_use]
    pub fn completed(&self) -> u64 {
        self.state.completed.load(std::sync::atomic::Ordering::Acquire)
    }
}
