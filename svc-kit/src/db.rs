//! Connecting to a service's own database and running its migrations.
//!
//! SQLite is the default store: the file is created if missing and opened in WAL mode with an
//! explicit `synchronous` level, a `busy_timeout` so that a briefly locked database makes
//! writers wait instead of failing, and foreign keys enforced. A `postgres://` URL selects
//! PostgreSQL with the same code.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};
use sea_orm_migration::MigratorTrait;

/// How durable a SQLite commit is. `Normal` in WAL mode loses at most the last transactions
/// on power loss, never consistency; `Full` fsyncs every commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Synchronous {
    /// `PRAGMA synchronous = NORMAL`.
    Normal,
    /// `PRAGMA synchronous = FULL`.
    Full,
}

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

/// Opens `url` (`sqlite://path?mode=rwc` or `postgres://…`) and runs migrator `M`.
///
/// # Errors
/// When the database cannot be opened or a migration fails.
pub async fn connect<M: MigratorTrait>(url: &str, options: &DbOptions) -> Result<DatabaseConnection, DbErr> {
    let url = normalise_sqlite_url(url);
    let mut connect = ConnectOptions::new(url.clone());
    connect
        .max_connections(options.max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
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
    if let Some(key) = options.encryption_key.as_deref().filter(|_| url.starts_with("sqlite:")) {
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
    let db = Database::connect(connect).await.map_err(not_a_database)?;
    M::up(&db, None).await.map_err(not_a_database)?;
    Ok(db)
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
