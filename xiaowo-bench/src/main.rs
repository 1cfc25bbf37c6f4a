//! `xiaowo-bench`: Xiaowo's benchmark suite. It drives servers over gRPC on loopback (a
//! `xiaowo up` it starts pinned to one core, or services already running elsewhere) and
//! measures each figure beside a ceiling or a peer run in the same process and the same run:
//! an in-process broadcast, a raw TCP fan-out server, gRPC health as an echo RPC, a plain
//! SQLite insert loop, and a socket.io room-broadcast server. Server CPU and memory come from
//! `/proc/<pid>`, apart from the generator's own.
#![expect(clippy::cast_precision_loss, reason = "counts and durations become f64 figures in the report")]

mod chat;
mod control;
mod fanout;
mod grpc_web;
mod media;
mod procstat;
mod stack;
mod stats;
mod suite;
mod syncplay;
mod tcp_ceiling;
mod websocket;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xiaowo-bench", about = "Benchmarks Xiaowo against ceilings and peers from the same run")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs the whole suite against `xiaowo up` processes it starts, and writes the tables.
    Suite(suite::Options),
    /// Scenario 1 against services already running: rooms × watchers at a rate, optionally
    /// stepping the rate up.
    Fanout(FanoutArgs),
    /// Serves the raw TCP fan-out ceiling (prints `listening <port>`).
    TcpFanoutServer,
    /// media-svc: range serving beside nginx and `cat`, an upload beside a local write.
    Media(media::Options),
}

#[derive(Debug, clap::Args)]
struct FanoutArgs {
    /// session-svc and room-svc URL.
    #[arg(long)]
    control_url: String,
    /// sync-svc URLs; watchers are spread over them, commands go to the first.
    #[arg(long = "sync-url", required = true)]
    sync_urls: Vec<String>,
    /// Server pids whose CPU and memory are read from /proc.
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// Rooms.
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Watchers per room.
    #[arg(long, default_value_t = 1000)]
    watchers_per_room: usize,
    /// Watchers sharing one HTTP/2 connection.
    #[arg(long, default_value_t = 1)]
    per_connection: usize,
    /// Every watcher uses the room owner's session (the shape of earlier figures) instead of
    /// being a different member.
    #[arg(long)]
    owner_session: bool,
    /// Events per second per room (the first step when stepping up).
    #[arg(long, default_value_t = 20.0)]
    rate: f64,
    /// Doubles the rate until p99 exceeds 100 ms or this rate is passed.
    #[arg(long)]
    step_up_to: Option<f64>,
    /// Seconds per step.
    #[arg(long, default_value_t = 4.0)]
    seconds: f64,
    /// Where to write the Markdown table (stdout otherwise).
    #[arg(long)]
    out: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Command::Suite(options) => runtime.block_on(suite::run(options)),
        Command::TcpFanoutServer => runtime.block_on(tcp_ceiling::serve()),
        Command::Fanout(args) => runtime.block_on(fanout_only(args)),
        Command::Media(options) => runtime.block_on(async {
            let table = media::run(&options).await?;
            match &options.out {
                Some(path) => std::fs::write(path, table)?,
                None => print!("{table}"),
            }
            anyhow::Ok(())
        }),
    }
}

async fn fanout_only(args: FanoutArgs) -> anyhow::Result<()> {
    let targets = stack::Targets {
        control_url: args.control_url.clone(),
        sync_urls: args.sync_urls.clone(),
        chat_url: args.control_url.clone(),
        pids: args.pids.clone(),
    };
    let shape = fanout::Shape { rooms: args.rooms, watchers_per_room: args.watchers_per_room };
    let rss_before = procstat::rss_bytes(&targets.pids);
    let people = if args.owner_session { fanout::People::RoomOwner } else { fanout::People::Distinct };
    let fleet = fanout::xiaowo(&targets, shape, people, args.per_connection, Some(256)).await?;
    let rss_per_watcher = suite::per_watcher(procstat::rss_bytes(&targets.pids), rss_before, shape.watchers());
    let duration = Duration::from_secs_f64(args.seconds);
    let steps = match args.step_up_to {
        Some(max_rate) => fanout::step_up(&fleet, shape, args.rate, max_rate, duration).await,
        None => vec![fleet.step(shape, args.rate, duration).await],
    };
    let label = format!(
        "Xiaowo, {} × {} over {} sync-svc URL(s)",
        shape.rooms,
        shape.watchers_per_room,
        targets.sync_urls.len()
    );
    let mut table = String::new();
    suite::fanout_header(&mut table);
    for step in &steps {
        suite::fanout_row(&mut table, &label, step, rss_per_watcher);
    }
    match args.out {
        Some(path) => std::fs::write(path, table)?,
        None => print!("{table}"),
    }
    Ok(())
}
