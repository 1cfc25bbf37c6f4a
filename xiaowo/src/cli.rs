//! The command line: `xiaowo up` and `xiaowo serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::backup;
use crate::node::{self, Common, Peers, Plan, Target};

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
    /// Where the backups are.
    #[arg(long, env = "XIAOWO_BACKUP_DIR")]
    backup_dir: PathBuf,
    #[command(flatten)]
    key: KeyArgs,
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    /// Address for gRPC, gRPC-web, the web client and `/metrics`.
    #[arg(long, env = "XIAOWO_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// The built web client (`web/dist`); not served when the directory does not exist.
    #[arg(long, env = "XIAOWO_WEB_DIR", default_value = "web/dist")]
    web_dir: PathBuf,
    #[command(flatten)]
    backup: backup::BackupConfig,
    #[command(flatten)]
    common: Common,
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

/// The command line, with the old environment variables of renamed settings still read.
fn command() -> clap::Command {
    let mut command = Cli::command();
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
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(EnvFilter::try_from_env("XIAOWO_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .init();
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
            println!("{}", serde_json::to_string_pretty(&manifest)?);
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
            let checked =
                tokio::task::spawn_blocking(move || backup::verify(&args.backup_dir, key.as_deref())).await??;
            for id in &checked {
                println!("ok {id}");
            }
            println!("{} backups verified", checked.len());
            return Ok(());
        }
        command => command,
    };
    let shutdown = svc_kit::shutdown::on_signals();
    let running = match command {
        Command::Up(mut args) => {
            // One process, one install: a token made now closes the internal APIs on the
            // public port with nothing for the operator to do.
            if args.common.internal_token.is_none() && args.common.internal_token_file.is_none() {
                args.common.internal_token = Some(svc_kit::auth::InternalToken::generate().expose().to_owned());
            }
            let web_dir = args.web_dir.join("index.html").is_file().then_some(args.web_dir.as_path());
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
                args.backup.backup_full_interval
            };
            // A worker of the server, so that it stops within the same shutdown deadline.
            let schedule = backup::run_schedule(
                args.backup.settings(
                    &args.common.data_dir,
                    node::database_key(args.common.db_key_file.as_deref(), args.common.db_key.as_deref())
                        .map_err(|(path, error)| anyhow::anyhow!("cannot read {}: {error}", path.display()))?,
                ),
                backup_full_interval,
                args.backup.backup_incremental_interval,
                clock.clone(),
                shutdown.child_token(),
            );
            let plan = Plan {
                groups: vec![(args.listen, Target::ALL.to_vec())],
                static_dir: web_dir.map(std::path::Path::to_path_buf),
                workers: vec![("backup-schedule".to_owned(), Box::pin(schedule))],
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
    running.wait().await
}
