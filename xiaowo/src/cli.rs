//! The command line: `xiaowo up` and `xiaowo serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::backup;
use crate::logs::{self, AccessLogArgs, AccessLogTo};
use crate::node::{self, Common, Peers, Plan, Running, Target};

/// Xiaowo (小窝): watch videos together, in sync, with chat.
///
/// Every flag can also be given as the `XIAOWO_*` environment variable shown with it.
#[derive(Debug, Parser)]
#[command(name = "xiaowo", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs every service in one process on one port, with the web client: the single-machine
    /// install.
    Up(UpArgs),
    /// Runs the chosen services, each on its own port (split mode, behind nginx).
    Serve(ServeArgs),
    /// Backs up every database in the data directory now, while services keep running.
    Backup(BackupArgs),
    /// Restores a backup (full + increments up to the chosen one) into an empty data directory.
    Restore(RestoreArgs),
    /// Checks every backup in a directory as a restore would, without restoring.
    VerifyBackups(VerifyBackupsArgs),
}

/// The SQLCipher passphrase of encrypted databases (as for `xiaowo up`).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Security")]
struct KeyArgs {
    /// A file holding the database passphrase (first line).
    #[arg(long, env = "XIAOWO_DB_KEY_FILE")]
    db_key_file: Option<PathBuf>,
    /// The passphrase itself.
    #[arg(long, env = "XIAOWO_DB_KEY", hide_env_values = true, conflicts_with = "db_key_file")]
    db_key: Option<String>,
}

impl KeyArgs {
    fn key(&self) -> anyhow::Result<Option<String>> {
        node::database_key(self.db_key_file.as_deref(), self.db_key.as_deref())
            .map_err(|(path, error)| anyhow::anyhow!("cannot read database key file {}: {error}", path.display()))
    }
}

#[derive(Debug, clap::Args)]
struct BackupArgs {
    /// Directory of the live databases.
    #[arg(long, env = "XIAOWO_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Full, or only the pages changed since the previous backup.
    #[arg(long, value_enum, default_value = "full")]
    kind: backup::Kind,
    /// Print the backup's manifest as JSON instead of a one-line summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    backup: backup::BackupConfig,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Debug, clap::Args)]
struct RestoreArgs {
    /// Where the backups are (the primary or the off-site location).
    #[arg(long, env = "XIAOWO_BACKUP_DIR")]
    backup_dir: PathBuf,
    /// The backup to restore to (an id from `xiaowo verify-backups`); default the newest.
    #[arg(long)]
    backup_id: Option<String>,
    /// The data directory to restore into; it must not hold the services' databases yet.
    #[arg(long, env = "XIAOWO_DATA_DIR")]
    data_dir: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Debug, clap::Args)]
struct VerifyBackupsArgs {
    /// Where the backups are; default `<data dir>/backups`, where `xiaowo backup` writes them.
    #[arg(long, env = "XIAOWO_BACKUP_DIR")]
    backup_dir: Option<PathBuf>,
    /// The data directory whose `backups` directory is checked when `--backup-dir` is not given.
    #[arg(long, env = "XIAOWO_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Address for gRPC, gRPC-web, the web client and `/metrics`.
    #[arg(long, env = "XIAOWO_LISTEN", default_value = "127.0.0.1:8080", help_heading = "Network")]
    listen: SocketAddr,
    /// The built web client (`web/dist`); not served when the directory does not exist.
    #[arg(long, env = "XIAOWO_WEB_DIR", default_value = "web/dist", help_heading = "Network")]
    web_dir: PathBuf,
    // Groups are shown in the order their first setting is declared: Common's, then these.
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    backup: backup::BackupConfig,
    #[command(flatten)]
    schedule: backup::BackupSchedule,
    #[command(flatten)]
    access: AccessLogArgs,
    /// Serve `/metrics` to everyone who reaches the port. By default it is served to this host
    /// and to callers presenting the admin token (Prometheus: `authorization: credentials_file`).
    #[arg(long, env = "XIAOWO_METRICS_PUBLIC", help_heading = "Monitoring")]
    metrics_public: bool,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The services to run, comma-separated (e.g. `session,room`).
    #[arg(long, env = "XIAOWO_TARGET", value_enum, value_delimiter = ',', required = true)]
    target: Vec<Target>,
    /// session-svc's address when it runs here.
    #[arg(long, env = "XIAOWO_SESSION_LISTEN", default_value_t = default_listen(Target::Session))]
    session_listen: SocketAddr,
    /// session-svc's URL when it runs elsewhere [default: its default port on this host].
    #[arg(long, env = "XIAOWO_SESSION_URL")]
    session_url: Option<String>,
    /// room-svc's address when it runs here.
    #[arg(long, env = "XIAOWO_ROOM_LISTEN", default_value_t = default_listen(Target::Room))]
    room_listen: SocketAddr,
    /// sync-svc's address when it runs here.
    #[arg(long, env = "XIAOWO_SYNC_LISTEN", default_value_t = default_listen(Target::Sync))]
    sync_listen: SocketAddr,
    /// chat-svc's address when it runs here.
    #[arg(long, env = "XIAOWO_CHAT_LISTEN", default_value_t = default_listen(Target::Chat))]
    chat_listen: SocketAddr,
    /// room-svc's URL when it runs elsewhere [default: its default port on this host].
    #[arg(long, env = "XIAOWO_ROOM_URL")]
    room_url: Option<String>,
    /// monitor-svc's address when it runs here.
    #[arg(long, env = "XIAOWO_MONITOR_LISTEN", default_value_t = default_listen(Target::Monitor))]
    monitor_listen: SocketAddr,
    /// media-svc's address when it runs here.
    #[arg(long, env = "XIAOWO_MEDIA_LISTEN", default_value_t = default_listen(Target::Media))]
    media_listen: SocketAddr,
    /// sync-svc's URL when it runs elsewhere (media-svc asks it what a room plays) [default: its
    /// default port on this host].
    #[arg(long, env = "XIAOWO_SYNC_URL")]
    sync_url: Option<String>,
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    access: AccessLogArgs,
}

/// `127.0.0.1:<the service's default port>`.
fn default_listen(target: Target) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], target.default_port()))
}

impl ServeArgs {
    fn listen(&self, target: Target) -> SocketAddr {
        match target {
            Target::Session => self.session_listen,
            Target::Room => self.room_listen,
            Target::Sync => self.sync_listen,
            Target::Chat => self.chat_listen,
            Target::Monitor => self.monitor_listen,
            Target::Media => self.media_listen,
        }
    }
}

/// Settings renamed in this release, by clap id, with their old environment variable. Their old
/// flag names are hidden aliases (on each argument); the old variable is read when the new one
/// is not set. Both go in the next release.
const RENAMED: [(&str, &str); 5] = [
    ("session-heartbeat-interval", "XIAOWO_SESSION_CHANGES_HEARTBEAT"),
    ("room-heartbeat-interval", "XIAOWO_ROOM_EVENTS_HEARTBEAT"),
    ("room-session-cache-ttl", "XIAOWO_ROOM_SESSION_CACHE"),
    ("sync_room_buffer", "XIAOWO_SYNC_WATCHER_BUFFER"),
    ("sync_activity_interval", "XIAOWO_SYNC_ACTIVITY_DEBOUNCE"),
];

/// The groups of `up` and `serve` settings in `--help`, in order, and which long flags (by
/// prefix, the first match wins) belong to each. One table, so that a new flag lands in a group
/// by its name.
const GROUPS: [(&str, &[&str]); 12] = [
    ("Logs", &["access-log"]),
    ("Backups", &["backup-"]),
    ("Security", &["admin-token", "internal-token", "db-key", "room-bcrypt-cost", "session-cookie-secure"]),
    (
        "Limits",
        &[
            "max-",
            "room-creates-",
            "room-max-",
            "room-password-attempts-",
            "session-create-",
            "chat-flood-",
            "sync-command",
            "media-max-",
        ],
    ),
    ("Network", &["listen", "web-dir", "target", "trusted-proxies", "peer-deadline", "nats-url", "shutdown-grace"]),
    ("Storage", &["data-dir", "db-", "retention-"]),
    ("Monitoring", &["monitor-", "metrics-public"]),
    ("Sessions", &["session-"]),
    ("Rooms", &["room-"]),
    ("Sync", &["sync-"]),
    ("Chat", &["chat-"]),
    ("Media", &["media-"]),
];

/// The order groups are shown in.
const GROUP_ORDER: [&str; 12] = [
    "Network",
    "Storage",
    "Security",
    "Limits",
    "Sessions",
    "Rooms",
    "Sync",
    "Chat",
    "Media",
    "Monitoring",
    "Backups",
    "Logs",
];

/// The settings `-h` shows; `--help` shows them all.
const SHORT_HELP: [&str; 13] = [
    "listen",
    "web-dir",
    "target",
    "data-dir",
    "admin-token-file",
    "db-key-file",
    "access-log",
    "metrics-public",
    "backup-dir",
    "backup-offsite-dir",
    "nats-url",
    "trusted-proxies",
    "shutdown-grace",
];

/// A setting's group, from its long flag; `--<service>-listen` and `--<service>-url` are
/// Network, `--<service>-database-url` and `--<service>-db-…` Storage.
fn group_of(long: &str) -> &'static str {
    if long.ends_with("-database-url") || long.contains("-db-") {
        return "Storage";
    }
    if long.ends_with("-listen") || long.ends_with("-url") && !long.starts_with("monitor-") {
        return "Network";
    }
    GROUPS
        .iter()
        .find(|(_, prefixes)| prefixes.iter().any(|prefix| long.starts_with(prefix)))
        .map_or("Other", |(group, _)| group)
}

/// Puts every setting of `up` and `serve` in its group, in the groups' order, and keeps `-h` to
/// the settings people set first.
fn grouped(subcommand: clap::Command) -> clap::Command {
    let total = subcommand.get_arguments().filter(|arg| arg.get_long().is_some()).count();
    subcommand
        .mut_args(|arg| {
            let Some(long) = arg.get_long().map(str::to_owned) else { return arg };
            let group = group_of(&long);
            let rank = GROUP_ORDER.iter().position(|name| *name == group).unwrap_or(GROUP_ORDER.len());
            let order = rank * 1000 + arg.get_display_order();
            let arg = arg.help_heading(group).display_order(order);
            // Where each service listens and finds its peers belongs with the first settings.
            let placement = group == "Network" && (long.ends_with("-listen") || long.ends_with("-url"));
            arg.hide_short_help(!SHORT_HELP.contains(&long.as_str()) && !placement)
        })
        .after_help(format!("The settings people set first. All {total}, by group: --help"))
        .after_long_help("")
}

/// The command line, with the old environment variables of renamed settings still read.
fn command() -> clap::Command {
    let mut command = Cli::command();
    for subcommand in ["up", "serve"] {
        command = command.mut_subcommand(subcommand, grouped);
    }
    for (id, old_variable) in RENAMED {
        for subcommand in ["up", "serve"] {
            command = command.mut_subcommand(subcommand, |subcommand| {
                subcommand.mut_arg(id, |arg| {
                    let new_is_set = arg.get_env().is_some_and(|variable| std::env::var_os(variable).is_some());
                    if new_is_set || std::env::var_os(old_variable).is_none() { arg } else { arg.env(old_variable) }
                })
            });
        }
    }
    command
}

/// Parses the command line, runs it, and turns the outcome into an exit code.
#[must_use]
pub fn main() -> ExitCode {
    let cli = match Cli::from_arg_matches(&command().get_matches()) {
        Ok(cli) => cli,
        Err(error) => error.exit(),
    };
    let access = match &cli.command {
        Command::Up(args) => Some((&args.access, args.common.data_dir.as_path())),
        Command::Serve(args) => Some((&args.access, args.common.data_dir.as_path())),
        _ => None,
    };
    if let Err(error) = logs::init(access) {
        let path = access.map(|(_, data_dir)| logs::access_log_path(data_dir)).unwrap_or_default();
        eprintln!("xiaowo: cannot open the access log {}: {error}", path.display());
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(run(cli));
    // Everything that drains has drained (or been dropped) by the servers' shutdown deadline;
    // a blocking task still running then (a backup being written) is abandoned rather than
    // waited for: an unfinished backup has no manifest and is ignored.
    runtime.shutdown_timeout(EXIT_GRACE);
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "xiaowo failed");
            ExitCode::FAILURE
        }
    }
}

/// How long the process waits, after its servers stopped, for blocking tasks before it exits.
/// The longest stop is therefore `--shutdown-grace` plus this (the systemd units allow more).
const EXIT_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

async fn run(cli: Cli) -> anyhow::Result<()> {
    let clock = svc_kit::clock::system();
    let command = match cli.command {
        Command::Backup(args) => {
            let settings = args.backup.settings(&args.data_dir, args.key.key()?);
            let backup_dir = settings.backup_dir.clone();
            let now = clock.now_ms();
            // The same variables the services read tell which databases live in PostgreSQL.
            let on_postgres = backup::postgres_services(Target::ALL.iter().filter_map(|target| {
                let variable = format!("XIAOWO_{}_DATABASE_URL", target.name().to_uppercase());
                std::env::var(variable).ok().map(|url| (target.name(), url))
            }));
            let manifest = tokio::task::spawn_blocking(move || {
                backup::run_beside_postgres(&settings, args.kind, now, &on_postgres)
            })
            .await??;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&manifest)?);
            } else {
                println!("{}", backup::summary(&manifest, &backup_dir));
            }
            return Ok(());
        }
        Command::Restore(args) => {
            let key = args.key.key()?;
            let manifest = tokio::task::spawn_blocking(move || {
                backup::restore(&args.backup_dir, args.backup_id.as_deref(), &args.data_dir, key.as_deref())
            })
            .await??;
            println!("restored {} ({} databases)", manifest.id, manifest.services.len());
            return Ok(());
        }
        Command::VerifyBackups(args) => {
            let key = args.key.key()?;
            let backup_dir = args.backup_dir.unwrap_or_else(|| args.data_dir.join("backups"));
            let checked = tokio::task::spawn_blocking(move || backup::verify(&backup_dir, key.as_deref())).await??;
            for id in &checked {
                println!("ok {id}");
            }
            println!("{} backups verified", checked.len());
            return Ok(());
        }
        command => command,
    };
    let shutdown = svc_kit::shutdown::on_signals();
    let (access_log, data_dir) = match &command {
        Command::Up(args) => (args.access.access_log, args.common.data_dir.clone()),
        Command::Serve(args) => (args.access.access_log, args.common.data_dir.clone()),
        _ => (AccessLogTo::Off, PathBuf::new()),
    };
    let mut web_client = false;
    let running = match command {
        Command::Up(mut args) => {
            // One process, one install: a token made now closes the internal APIs on the
            // public port with nothing for the operator to do.
            if args.common.internal_token.is_none() && args.common.internal_token_file.is_none() {
                args.common.internal_token = Some(svc_kit::auth::InternalToken::generate().expose().to_owned());
            }
            let web_dir = args.web_dir.join("index.html").is_file().then_some(args.web_dir.as_path());
            web_client = web_dir.is_some();
            if web_dir.is_none() {
                tracing::warn!(dir = %args.web_dir.display(), "web client not built; serving the API only");
            }
            // The single-process install backs itself up; split deployments use a timer
            // running `xiaowo backup` (deploy/systemd/xiaowo-backup.timer). Databases on
            // PostgreSQL are backed up with PostgreSQL's own tools.
            let on_postgres = backup::postgres_services(
                Target::ALL.iter().map(|target| (target.name(), args.common.database_url(*target))),
            );
            if !on_postgres.is_empty() {
                tracing::warn!(services = ?on_postgres, "on PostgreSQL: not covered by scheduled backups");
            }
            let backup_full_interval = if on_postgres.len() == Target::ALL.len() {
                std::time::Duration::ZERO
            } else {
                args.schedule.backup_full_interval
            };
            // A worker of the server, so that it stops within the same shutdown deadline.
            let schedule = backup::run_schedule(
                args.backup.settings(
                    &args.common.data_dir,
                    node::database_key(args.common.db_key_file.as_deref(), args.common.db_key.as_deref())
                        .map_err(|(path, error)| anyhow::anyhow!("cannot read {}: {error}", path.display()))?,
                ),
                backup_full_interval,
                args.schedule.backup_incremental_interval,
                clock.clone(),
                shutdown.child_token(),
            );
            let plan = Plan {
                groups: vec![(args.listen, Target::ALL.to_vec())],
                static_dir: web_dir.map(std::path::Path::to_path_buf),
                workers: vec![("backup-schedule".to_owned(), Box::pin(schedule))],
                guard_metrics: !args.metrics_public,
                ..Plan::default()
            };
            node::start(plan, &args.common, clock, &shutdown).await?
        }
        Command::Serve(args) => {
            let plan = Plan {
                groups: args.target.iter().map(|target| (args.listen(*target), vec![*target])).collect(),
                peers: Peers {
                    session_url: args.session_url.clone(),
                    room_url: args.room_url.clone(),
                    sync_url: args.sync_url.clone(),
                },
                ..Plan::default()
            };
            node::start(plan, &args.common, clock, &shutdown).await?
        }
        Command::Backup(_) | Command::Restore(_) | Command::VerifyBackups(_) => return Ok(()),
    };
    for server in &running.servers {
        let names: Vec<_> = server.targets.iter().map(|target| target.name()).collect();
        tracing::info!(addr = %server.addr, services = ?names, "listening");
    }
    println!("{}", banner(&running, web_client, &data_dir, access_log));
    running.wait().await
}

/// What an operator needs at start: where to go, where the admin token and the data are,
/// what runs, where the logs go.
fn banner(running: &Running, web_client: bool, data_dir: &std::path::Path, access_log: AccessLogTo) -> String {
    use std::fmt::Write as _;
    let shown = |path: &std::path::Path| std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let url = |addr: SocketAddr| {
        // A wildcard address is reached through any of the host's addresses; this host's own
        // is the one that surely works here.
        let host = match addr.ip() {
            ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
            ip if ip.is_unspecified() => "[::1]".to_owned(),
            std::net::IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        };
        format!("http://{host}:{}", addr.port())
    };
    let mut text = format!("\nXiaowo {} is running.\n", env!("CARGO_PKG_VERSION"));
    let mut line = |label: &str, value: String| {
        let _ = writeln!(text, "  {label:<10}{value}");
    };
    if let [server] = running.servers.as_slice() {
        if web_client {
            line("Open", url(server.addr));
        } else {
            line("API", format!("{} (the web client is not built: scripts/run.sh builds it)", url(server.addr)));
        }
        let names: Vec<_> = server.targets.iter().map(|target| target.name()).collect();
        line("Services", names.join(", "));
    } else {
        for server in &running.servers {
            let names: Vec<_> = server.targets.iter().map(|target| target.name()).collect();
            line("Service", format!("{} at {}", names.join(", "), url(server.addr)));
        }
    }
    let admin = match &running.admin.file {
        Some((path, true)) => format!("token in {} (created now, readable only by you)", shown(path).display()),
        Some((path, false)) => format!("token in {}", shown(path).display()),
        None => "token given with --admin-token".to_owned(),
    };
    if web_client && let [server] = running.servers.as_slice() {
        line("Admin", format!("{}/admin, {admin}", url(server.addr)));
    } else {
        line("Admin", admin);
    }
    line("Data", shown(data_dir).display().to_string());
    let access = match access_log {
        AccessLogTo::File => format!("access log in {}", shown(&logs::access_log_path(data_dir)).display()),
        AccessLogTo::Console => "access log here too".to_owned(),
        AccessLogTo::Off => "no access log".to_owned(),
    };
    line("Logs", format!("this console (XIAOWO_LOG filters it); {access}"));
    line("Stop", "Ctrl-C (or SIGTERM): open calls drain first".to_owned());
    text
}
