//! Starting services: which ones, on which ports, with which peers and databases. Every
//! service is started the same way, through the table in [`Target::build`]: the process works
//! out one [`Deps`] per service and hands it, with the service's own config block, to the
//! service's `build`.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::Duration;

use svc_kit::auth::{AdminToken, InternalToken};
use svc_kit::clock::SharedClock;
use svc_kit::db::{DbOptions, Synchronous};
use svc_kit::server::{Assembly, ServeError, ServerConfig, parse_duration};
use svc_kit::service::{BuildError, Deps};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A service the binary can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Target {
    /// session-svc: anonymous sessions.
    Session,
    /// room-svc: rooms, members, roles, passwords, the audit log.
    Room,
    /// sync-svc: the shared playback timeline, queue, clock sync and room streams.
    Sync,
    /// chat-svc: room chat, history, receipts, moderation.
    Chat,
    /// monitor-svc: scraping, alert rules, notifications.
    Monitor,
    /// media-svc: the media library, uploads, probing, thumbnails, file serving.
    Media,
}

impl Target {
    /// Every service, in start order (a service's peers come before it).
    pub const ALL: [Self; 6] = [Self::Session, Self::Room, Self::Sync, Self::Chat, Self::Monitor, Self::Media];

    /// The service's short name: database file stem, flag prefix.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Session => "session",
            Self::Room => "room",
            Self::Sync => "sync",
            Self::Chat => "chat",
            Self::Monitor => "monitor",
            Self::Media => "media",
        }
    }

    /// The port `xiaowo serve` gives the service unless told otherwise.
    #[must_use]
    pub fn default_port(self) -> u16 {
        match self {
            Self::Session => 50051,
            Self::Room => 50052,
            Self::Sync => 50053,
            Self::Chat => 50054,
            Self::Monitor => 50055,
            Self::Media => 50056,
        }
    }

    /// Where the service is found when it runs elsewhere on this host at its default port.
    #[must_use]
    pub fn default_url(self) -> String {
        format!("http://127.0.0.1:{}", self.default_port())
    }

    /// The service's database flag (`--<service>-database-url`), when given.
    fn configured_database_url(self, common: &Common) -> Option<String> {
        match self {
            Self::Session => common.session.database_url.clone(),
            Self::Room => common.room.database_url.clone(),
            Self::Sync => common.sync.database_url.clone(),
            Self::Chat => common.chat.database_url.clone(),
            Self::Monitor => common.monitor.database_url.clone(),
            Self::Media => common.media.database_url.clone(),
        }
    }

    /// Builds the service into `assembly`: every service has the one entry point
    /// `build(&Config, Deps, &mut Assembly)`, and this is the table of them.
    async fn build(self, common: &Common, deps: Deps, assembly: &mut Assembly) -> Result<(), BuildError> {
        match self {
            Self::Session => session_svc::build(&common.session, deps, assembly).await,
            Self::Room => room_svc::build(&common.room, deps, assembly).await,
            Self::Sync => sync_svc::build(&common.sync, deps, assembly).await,
            Self::Chat => chat_svc::build(&common.chat, deps, assembly).await,
            Self::Monitor => monitor_svc::build(&common.monitor, deps, assembly).await,
            Self::Media => {
                let config = media_svc::Config { media_dir: Some(common.media_dir()), ..common.media.clone() };
                media_svc::build(&config, deps, assembly).await
            }
        }
    }
}

/// Settings every mode shares: data, secrets, database tuning and each service's own block.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Directory of the SQLite databases (one file per service), created if missing.
    #[arg(long, env = "XIAOWO_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The operator's token for admin RPCs and the admin page. Prefer `--admin-token-file`.
    /// Without either, `<data-dir>/admin.token` is used, created (mode 0600) on first start;
    /// an empty value turns admin access off.
    #[arg(long, env = "XIAOWO_ADMIN_TOKEN", hide_env_values = true, conflicts_with = "admin_token_file")]
    pub admin_token: Option<String>,
    /// A file holding the admin token (first line).
    #[arg(long, env = "XIAOWO_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The secret services present to each other's internal APIs (access checks, session
    /// validation, room events), which refuse calls without it. Prefer
    /// `--internal-token-file`. Without either, `xiaowo up` generates one at each start and
    /// `xiaowo serve` uses `<data-dir>/internal.token`, creating it (mode 0600) if missing, so
    /// that the services of one host sharing a data directory agree; services on several
    /// hosts must all be given the same token.
    #[arg(
        id = "internal_token",
        long = "internal-token",
        value_name = "TOKEN",
        env = "XIAOWO_INTERNAL_TOKEN",
        hide_env_values = true,
        conflicts_with = "internal_token_file"
    )]
    pub internal_token: Option<String>,
    /// A file holding the internal token (first line).
    #[arg(
        id = "internal_token_file",
        long = "internal-token-file",
        value_name = "FILE",
        env = "XIAOWO_INTERNAL_TOKEN_FILE"
    )]
    pub internal_token_file: Option<PathBuf>,
    /// How long a database statement waits for a lock held by another connection.
    #[arg(long, env = "XIAOWO_DB_BUSY_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_busy_timeout: Duration,
    /// SQLite durability: `normal` (WAL; a power cut may lose the last commits, never
    /// consistency) or `full` (fsync on every commit).
    #[arg(long, env = "XIAOWO_DB_SYNCHRONOUS", value_enum, default_value = "normal")]
    pub db_synchronous: Synchronous,
    /// A file holding the SQLCipher passphrase (first line) that encrypts every database at
    /// rest. Off by default; a database created without a key cannot be opened with one.
    #[arg(long, env = "XIAOWO_DB_KEY_FILE")]
    pub db_key_file: Option<PathBuf>,
    /// The passphrase itself, for environments that pass secrets as variables.
    #[arg(long, env = "XIAOWO_DB_KEY", hide_env_values = true, conflicts_with = "db_key_file")]
    pub db_key: Option<String>,
    /// Deadline of every call one service makes to another.
    #[arg(long, env = "XIAOWO_PEER_DEADLINE", default_value = "2s", value_parser = parse_duration)]
    pub peer_deadline: Duration,
    #[command(flatten)]
    pub server: ServerConfig,
    #[command(flatten)]
    pub session: session_svc::Config,
    #[command(flatten)]
    pub room: room_svc::Config,
    #[command(flatten)]
    pub sync: sync_svc::Config,
    #[command(flatten)]
    pub chat: chat_svc::Config,
    #[command(flatten)]
    pub media: media_svc::Config,
    #[command(flatten)]
    pub monitor: monitor_svc::Config,
    /// How long each service keeps closed rooms, audit and sync logs, and chat of closed rooms.
    #[command(flatten)]
    pub retention: svc_kit::retention::RetentionConfig,
    /// The NATS broker between instances of sync-svc and chat-svc, if any.
    #[command(flatten)]
    pub bus: svc_kit::bus::BusConfig,
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create data directory {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
    #[error("cannot read admin token file {path}: {source}")]
    AdminTokenFile { path: PathBuf, source: std::io::Error },
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
    #[error("{service}: {source}")]
    Build { service: &'static str, source: BuildError },
    #[error("invalid peer URL {url}")]
    PeerUrl { url: String },
    #[error("{path}: {service} is already running on this data directory")]
    AlreadyRunning { service: &'static str, path: PathBuf },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
    #[error("cannot read database key file {path}: {source}")]
    DbKeyFile { path: PathBuf, source: std::io::Error },
    #[error("internal token file {path}: {source}")]
    InternalTokenFile { path: PathBuf, source: std::io::Error },
    #[error("internal token: {0}")]
    InternalToken(#[from] svc_kit::auth::InvalidInternalToken),
    #[error("{0}")]
    Bus(#[from] svc_kit::bus::BusError),
}

/// The database passphrase from a key file (first line) or given directly; `None` when neither.
///
/// # Errors
/// The key file's path and the read error.
pub fn database_key(file: Option<&Path>, key: Option<&str>) -> Result<Option<String>, (PathBuf, std::io::Error)> {
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|source| (path.to_path_buf(), source))?;
        return Ok(text.lines().next().map(str::trim).filter(|key| !key.is_empty()).map(str::to_owned));
    }
    Ok(key.filter(|key| !key.is_empty()).map(str::to_owned))
}

/// Where `xiaowo serve` keeps the internal token it generated, for the other services of the
/// host that share the data directory.
#[must_use]
pub fn internal_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("internal.token")
}

/// Where the admin token made on first start is kept, unless one is configured.
#[must_use]
pub fn admin_token_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.token")
}

/// The token in the first line of `path`, trimmed.
fn read_token(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.lines().next().unwrap_or_default().trim().to_owned())
}

/// Writes a fresh token to `path` unless another process got there first. The token is
/// written in full to a private temporary file and then hard-linked into place, which fails
/// when `path` exists: a process starting at the same moment never reads a half-written file.
fn persist_new_token(path: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let temporary = path.with_extension(format!("token.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let written = options.open(&temporary).and_then(|mut file| {
        writeln!(file, "{}", InternalToken::generate().expose())?;
        file.sync_all()
    });
    let linked = written.and_then(|()| match std::fs::hard_link(&temporary, path) {
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    });
    let _ = std::fs::remove_file(&temporary);
    linked
}

/// The lock file a running service holds in the data directory, so that a second process (or
/// a restore) cannot open the same database behind its back.
#[must_use]
pub fn lock_path(data_dir: &Path, service: &str) -> PathBuf {
    data_dir.join(format!("{service}.lock"))
}

fn lock(data_dir: &Path, target: Target) -> Result<std::fs::File, StartError> {
    let path = lock_path(data_dir, target.name());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| StartError::Lock { path: path.clone(), source })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StartError::AlreadyRunning { service: target.name(), path }),
        Err(std::fs::TryLockError::Error(source)) => Err(StartError::Lock { path, source }),
    }
}

/// Peer addresses for services that are not in this process (default: their default port on
/// this host).
#[derive(Debug, Clone, Default)]
pub struct Peers {
    /// session-svc's URL (`http://host:port`).
    pub session_url: Option<String>,
    /// room-svc's URL (`http://host:port`).
    pub room_url: Option<String>,
    /// sync-svc's URL (`http://host:port`).
    pub sync_url: Option<String>,
}

/// A task that lives beside the services and drains with them.
pub type Worker = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What to start in this process.
#[derive(Default)]
pub struct Plan {
    /// One server per group: its listen address (port 0: any) and the services it runs.
    pub groups: Vec<(SocketAddr, Vec<Target>)>,
    /// Where the peers that do not run here are.
    pub peers: Peers,
    /// The built web client, served by every server for paths no service claims.
    pub static_dir: Option<PathBuf>,
    /// Tasks that run and drain with the first server (`xiaowo up`'s backup schedule), under
    /// the same shutdown deadline as its services' own workers.
    pub workers: Vec<(String, Worker)>,
    /// Serve `/metrics` only to this host and the admin token (a port that faces browsers).
    pub guard_metrics: bool,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("groups", &self.groups).field("peers", &self.peers).finish_non_exhaustive()
    }
}

/// One running server.
#[derive(Debug)]
pub struct Server {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// The services it runs.
    pub targets: Vec<Target>,
    /// What those services exposed (see `Assembly::expose`).
    pub exposed: http::Extensions,
}

impl Server {
    /// `http://<addr>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// The admin token in force and where the operator finds it.
#[derive(Debug, Clone)]
pub struct AdminAccess {
    /// Checks admin calls.
    pub token: AdminToken,
    /// The file holding it, and whether this start created it; `None` when given directly.
    pub file: Option<(PathBuf, bool)>,
}

/// A process's running servers.
#[derive(Debug)]
pub struct Running {
    /// Each server, in the order of the plan's groups.
    pub servers: Vec<Server>,
    /// The admin token the services check.
    pub admin: AdminAccess,
    handles: Vec<JoinHandle<Result<(), ServeError>>>,
    /// Held until the servers stop.
    _locks: Vec<std::fs::File>,
}

impl Running {
    /// Waits until every server has stopped (after the shutdown token is cancelled).
    ///
    /// # Errors
    /// The first server error.
    pub async fn wait(self) -> anyhow::Result<()> {
        for handle in self.handles {
            handle.await??;
        }
        Ok(())
    }
}

impl Common {
    /// The admin token: configured, else the one kept in the data directory (created on first
    /// start). Refusals name where it is.
    ///
    /// # Errors
    /// When the token file cannot be read or created.
    pub fn admin(&self) -> Result<AdminAccess, StartError> {
        if let Some(token) = &self.admin_token {
            let hint = if token.is_empty() { "admin access is off: --admin-token is empty" } else { "--admin-token" };
            return Ok(AdminAccess { token: AdminToken::new(Some(token)).with_hint(hint), file: None });
        }
        let (path, created) = match &self.admin_token_file {
            Some(path) => (path.clone(), false),
            None => {
                let path = admin_token_path(&self.data_dir);
                let created = !path.exists();
                if created {
                    persist_new_token(&path)
                        .map_err(|source| StartError::AdminTokenFile { path: path.clone(), source })?;
                }
                (path, created)
            }
        };
        let token = read_token(&path).map_err(|source| StartError::AdminTokenFile { path: path.clone(), source })?;
        let hint = path.display().to_string();
        Ok(AdminAccess { token: AdminToken::new(Some(&token)).with_hint(hint), file: Some((path, created)) })
    }

    /// The configured internal token, else the one persisted in the data directory (created
    /// on first use).
    fn internal_token(&self) -> Result<InternalToken, StartError> {
        if let Some(path) = &self.internal_token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|source| StartError::InternalTokenFile { path: path.clone(), source })?;
            return Ok(InternalToken::new(text.lines().next().unwrap_or_default())?);
        }
        if let Some(token) = &self.internal_token {
            return Ok(InternalToken::new(token)?);
        }
        let path = internal_token_path(&self.data_dir);
        let error = |source| StartError::InternalTokenFile { path: path.clone(), source };
        if !path.exists() {
            persist_new_token(&path).map_err(error)?;
        }
        Ok(InternalToken::new(&read_token(&path).map_err(error)?)?)
    }

    fn db_options(&self) -> Result<DbOptions, StartError> {
        Ok(DbOptions {
            busy_timeout: self.db_busy_timeout,
            synchronous: self.db_synchronous,
            encryption_key: database_key(self.db_key_file.as_deref(), self.db_key.as_deref())
                .map_err(|(path, source)| StartError::DbKeyFile { path, source })?,
            ..DbOptions::default()
        })
    }

    /// The media directory: `--media-dir`, else `<data dir>/media`.
    #[must_use]
    pub fn media_dir(&self) -> PathBuf {
        self.media.media_dir.clone().unwrap_or_else(|| self.data_dir.join("media"))
    }

    /// The database URL `target` uses: its own flag, else its SQLite file in the data dir.
    #[must_use]
    pub fn database_url(&self, target: Target) -> String {
        target
            .configured_database_url(self)
            .unwrap_or_else(|| svc_kit::db::sqlite_url(&self.data_dir, &format!("{}.db", target.name())))
    }
}

/// Whom monitor-svc scrapes unless `--monitor-targets` says otherwise: every server of this
/// process (named `xiaowo` when it runs several services, else after its one service) and, in
/// split mode, each service that runs elsewhere, at its default port on this host.
fn default_monitor_targets(local: &[(String, Vec<Target>)]) -> Vec<monitor_svc::ScrapeTarget> {
    let mut scrape: Vec<_> = local
        .iter()
        .map(|(url, targets)| {
            let name = match targets.as_slice() {
                [only] => only.name(),
                _ => "xiaowo",
            };
            monitor_svc::ScrapeTarget { name: name.to_owned(), url: url.clone() }
        })
        .collect();
    for target in Target::ALL {
        if !local.iter().any(|(_, targets)| targets.contains(&target)) {
            scrape.push(monitor_svc::ScrapeTarget { name: target.name().to_owned(), url: target.default_url() });
        }
    }
    scrape
}

/// Starts `plan`: one server per group, each service built into its group's server.
///
/// # Errors
/// When a port cannot be bound, the data directory or a database cannot be opened, or a
/// service refuses its settings.
pub async fn start(
    plan: Plan,
    common: &Common,
    clock: SharedClock,
    shutdown: &CancellationToken,
) -> Result<Running, StartError> {
    let Plan { groups, peers, static_dir, mut workers, guard_metrics } = plan;
    std::fs::create_dir_all(&common.data_dir)
        .map_err(|source| StartError::DataDir { path: common.data_dir.clone(), source })?;
    let admin = common.admin()?;
    let internal_token = common.internal_token()?;
    let db_options = common.db_options()?;

    let mut assemblies = Vec::new();
    for (addr, targets) in groups {
        let assembly = Assembly::bind(addr, common.server.clone(), shutdown.clone())
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        assemblies.push((assembly, targets));
    }
    let mut common = common.clone();
    if common.monitor.targets.is_empty() {
        let local: Vec<_> =
            assemblies.iter().map(|(assembly, targets)| (assembly.local_url(), targets.clone())).collect();
        common.monitor.targets = default_monitor_targets(&local);
    }
    // Peers in this process are reached through its own port; the others where the plan says,
    // else at their default port on this host.
    let url_of = |target: Target, configured: &Option<String>| {
        let local = assemblies.iter().find(|(_, targets)| targets.contains(&target));
        local
            .map(|(assembly, _)| assembly.local_url())
            .or_else(|| configured.clone())
            .unwrap_or_else(|| target.default_url())
    };
    let channel =
        |url: String| svc_kit::peer::channel(&url, common.peer_deadline).map_err(|_| StartError::PeerUrl { url });
    let peers = svc_kit::peer::Peers {
        session: channel(url_of(Target::Session, &peers.session_url))?,
        room: channel(url_of(Target::Room, &peers.room_url))?,
        sync: channel(url_of(Target::Sync, &peers.sync_url))?,
    };

    let mut locks = Vec::new();
    for target in assemblies.iter().flat_map(|(_, targets)| targets.iter().copied()) {
        locks.push(lock(&common.data_dir, target)?);
    }
    // One broker connection per process: its id is the instance that other instances see.
    let broker = match &common.bus.nats_url {
        Some(url) => Some(svc_kit::bus::Broker::connect(url, "xiaowo").await?),
        None => None,
    };
    let mut running = Running { servers: Vec::new(), admin: admin.clone(), handles: Vec::new(), _locks: locks };
    for (mut assembly, targets) in assemblies {
        for target in Target::ALL.into_iter().filter(|target| targets.contains(target)) {
            let deps = Deps {
                database_url: common.database_url(target),
                db_options: db_options.clone(),
                clock: clock.clone(),
                admin: admin.token.clone(),
                internal_token: Some(internal_token.clone()),
                retention: common.retention.clone(),
                peers: peers.clone(),
                broker: broker.clone(),
            };
            target
                .build(&common, deps, &mut assembly)
                .await
                .map_err(|source| StartError::Build { service: target.name(), source })?;
        }
        for (name, worker) in workers.drain(..) {
            assembly.spawn_worker(name, worker);
        }
        if let Some(dir) = &static_dir {
            assembly.serve_static(dir.clone());
        }
        if guard_metrics {
            assembly.guard_metrics(admin.token.clone());
        }
        let exposed = assembly.take_exposed();
        running.servers.push(Server { addr: assembly.local_addr(), targets, exposed });
        running.handles.push(tokio::spawn(assembly.run()));
    }
    Ok(running)
}
