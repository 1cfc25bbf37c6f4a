//! The whole suite in one run: each scenario against a fresh `xiaowo up` pinned to the server
//! core, its ceilings and peers pinned to the same core, and one Markdown report of it all.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::AsyncBufReadExt;
use tokio::process::{Child, Command};

use crate::fanout::{self, People, Shape, Step};
use crate::stack::Launcher;
use crate::stats::Summary;
use crate::{chat, control, procstat, stack};

/// The longest a system may take to start and open one fleet (its watchers alone get 120 s).
const FLEET_OPEN_LIMIT: Duration = Duration::from_secs(240);

/// Suite options.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// The `xiaowo` binary to benchmark.
    #[arg(long, default_value = "target/release/xiaowo")]
    server_binary: PathBuf,
    /// CPU the server (and every ceiling and peer server) is pinned to; the generator should be
    /// pinned elsewhere by whoever starts it.
    #[arg(long)]
    server_cpu: Option<usize>,
    /// Directory of the socket.io peer (`server.js` with its `node_modules`); skipped if absent.
    #[arg(long)]
    socketio_dir: Option<PathBuf>,
    /// Debian's `syncplay-server` executable, the second peer; skipped if not given.
    #[arg(long)]
    syncplay_server: Option<PathBuf>,
    /// nginx, for the browser path (scenario 5); skipped if not given.
    #[arg(long)]
    nginx: Option<PathBuf>,
    /// Tiny sizes, a second per step: checks that every scenario works, not how fast.
    #[arg(long)]
    smoke: bool,
    /// Scenarios to run (default all): fanout, chat, control, idle, browser.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Fan-out shapes instead of the default ones, as ROOMSxWATCHERS@RATE (e.g. 1000x10@1);
    /// the step-up is then skipped.
    #[arg(long, value_delimiter = ',', value_parser = parse_shape)]
    shapes: Vec<(Shape, f64)>,
    /// Fan-out systems to measure (default all): xiaowo, xiaowo-web, xiaowo-shared, xiaowo-owner-session,
    /// xiaowo-chat, xiaowo-chat-web, in-process, raw-tcp, socketio, syncplay.
    #[arg(long, value_delimiter = ',')]
    systems: Vec<String>,
    /// Idle-watcher counts instead of the default ones (e.g. 10000), each run with one
    /// connection per watcher and with 100 watchers per connection.
    #[arg(long, value_delimiter = ',')]
    idle_watchers: Vec<usize>,
    /// Where to write the Markdown report.
    #[arg(long, default_value = "bench-results.md")]
    out: PathBuf,
}

struct Sizes {
    step: Duration,
    shapes: Vec<(Shape, f64)>,
    step_up_shape: Shape,
    step_up_rates: (f64, f64),
    chat_rooms: Vec<usize>,
    chat_messages: usize,
    chat_in_flight: usize,
    sqlite_rows: usize,
    control_concurrency: Vec<usize>,
    control_duration: Duration,
    idle_watchers: Vec<usize>,
    idle_duration: Duration,
    browser_shape: (Shape, f64),
}

impl Sizes {
    fn full() -> Self {
        let shape = |rooms, watchers_per_room| Shape { rooms, watchers_per_room };
        Self {
            step: Duration::from_secs(4),
            shapes: vec![(shape(1, 1000), 20.0), (shape(10, 100), 5.0), (shape(1000, 10), 1.0)],
            step_up_shape: shape(1, 1000),
            step_up_rates: (20.0, 1280.0),
            chat_rooms: vec![10, 100],
            chat_messages: 4000,
            chat_in_flight: 8,
            sqlite_rows: 4000,
            control_concurrency: vec![1, 16, 256],
            control_duration: Duration::from_secs(3),
            idle_watchers: vec![1000, 5000, 10000],
            idle_duration: Duration::from_secs(5),
            browser_shape: (shape(1, 100), 10.0),
        }
    }

    fn smoke() -> Self {
        let shape = |rooms, watchers_per_room| Shape { rooms, watchers_per_room };
        Self {
            step: Duration::from_secs(1),
            shapes: vec![(shape(1, 10), 5.0), (shape(4, 3), 2.0)],
            step_up_shape: shape(1, 10),
            step_up_rates: (5.0, 10.0),
            chat_rooms: vec![3],
            chat_messages: 24,
            chat_in_flight: 2,
            sqlite_rows: 64,
            control_concurrency: vec![1, 4],
            control_duration: Duration::from_millis(500),
            idle_watchers: vec![20],
            idle_duration: Duration::from_secs(1),
            browser_shape: (shape(1, 5), 2.0),
        }
    }
}

/// A ceiling or peer server in its own process, pinned like the server under test.
struct PeerProcess {
    child: Child,
    address: SocketAddr,
    pid: u32,
}

impl PeerProcess {
    /// Starts `program args…` and waits for its `listening <port>` line.
    async fn start(cpu: Option<usize>, program: &str, args: &[&str], dir: Option<&PathBuf>) -> anyhow::Result<Self> {
        let mut command = match cpu {
            Some(cpu) => {
                let mut taskset = Command::new("taskset");
                taskset.arg("-c").arg(cpu.to_string()).arg(program);
                taskset
            }
            None => Command::new(program),
        };
        command.args(args).stdout(std::process::Stdio::piped()).stdin(std::process::Stdio::null()).kill_on_drop(true);
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().with_context(|| format!("cannot start {program}"))?;
        let pid = child.id().context("peer exited at once")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .context("peer did not report its port within 30 s")??
            .context("peer exited before listening")?;
        let port: u16 = line.strip_prefix("listening ").context("unexpected first line from peer")?.trim().parse()?;
        Ok(Self { child, address: SocketAddr::from(([127, 0, 0, 1], port)), pid })
    }

    /// Starts a server told to listen on `port` and waits until it accepts connections there.
    async fn start_on_port(cpu: Option<usize>, program: &str, args: &[String], port: u16) -> anyhow::Result<Self> {
        let mut command = match cpu {
            Some(cpu) => {
                let mut taskset = Command::new("taskset");
                taskset.arg("-c").arg(cpu.to_string()).arg(program);
                taskset
            }
            None => Command::new(program),
        };
        command
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        let child = command.spawn().with_context(|| format!("cannot start {program}"))?;
        let pid = child.id().context("peer exited at once")?;
        let address = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(address).await.is_err() {
            if tokio::time::Instant::now() > deadline {
                bail!("{program} did not listen on {address} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self { child, address, pid })
    }

    async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

/// A loopback port free a moment ago, for servers that must be told their port.
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Bytes per watcher of a memory growth, in KiB.
pub fn per_watcher(after: u64, before: u64, watchers: usize) -> f64 {
    after.saturating_sub(before) as f64 / 1024.0 / watchers.max(1) as f64
}

/// The column names of fan-out rows.
pub fn fanout_header(out: &mut String) {
    out.push_str(
        "| system | rate/room | deliveries/s | p50 ms | p99 ms | max ms | delivered | server CPU-µs/delivery | generator CPU-µs/delivery | memory/watcher KiB | UNAVAILABLE |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
}

/// One fan-out row.
pub fn fanout_row(out: &mut String, system: &str, step: &Step, rss_per_watcher: f64) {
    let delivered = 100.0 * step.latency.count as f64 / step.expected.max(1) as f64;
    let _ = writeln!(
        out,
        "| {system} | {} | {:.0} | {:.2} | {:.2} | {:.1} | {delivered:.1} % | {:.1} | {:.1} | {} | {} |",
        step.rate,
        step.deliveries_per_second,
        step.latency.p50_ms,
        step.latency.p99_ms,
        step.latency.max_ms,
        step.server_cpu_us_per_delivery,
        step.generator_cpu_us_per_delivery,
        if rss_per_watcher > 0.0 { format!("{rss_per_watcher:.1}") } else { "–".to_owned() },
        step.unavailable,
    );
}

fn summary_cells(summary: &Summary) -> String {
    format!("{:.2} | {:.2}", summary.p50_ms, summary.p99_ms)
}

/// Watchers per connection in the [`System::XiaowoShared`] rows.
const WATCHERS_PER_SHARED_CONNECTION: usize = 100;

/// `ROOMSxWATCHERS@RATE`, e.g. `1000x10@1`.
fn parse_shape(text: &str) -> Result<(Shape, f64), String> {
    let parsed = text.split_once('@').and_then(|(shape, rate)| {
        let (rooms, watchers_per_room) = shape.split_once('x')?;
        let shape = Shape { rooms: rooms.parse().ok()?, watchers_per_room: watchers_per_room.parse().ok()? };
        Some((shape, rate.parse().ok()?))
    });
    parsed
        .filter(|(shape, rate)| shape.rooms > 0 && shape.watchers_per_room > 0 && *rate > 0.0)
        .ok_or_else(|| format!("{text:?} is not ROOMSxWATCHERS@RATE, e.g. 1000x10@1"))
}

/// Which fan-out implementation to measure. Every Xiaowo row but one gives each watcher its
/// own session and membership.
#[derive(Clone, Copy)]
enum System {
    Xiaowo,
    /// Xiaowo as a browser reaches it: gRPC-web over HTTP/1.1, a connection per watcher (what
    /// nginx's `proxy_pass` upstreams and the single binary's own port carry for every page).
    XiaowoWeb,
    /// Xiaowo with watchers sharing HTTP/2 connections, [`WATCHERS_PER_SHARED_CONNECTION`] each:
    /// what a delivery costs once the connection's write is shared.
    XiaowoShared,
    /// Xiaowo with every watcher the room owner's session: the shape of earlier figures, a
    /// labelled extra.
    XiaowoOwnerSession,
    /// Chat as a fan-out: `SendMessage` → `WatchMessages`.
    XiaowoChat,
    /// Chat as a browser reaches it: gRPC-web over HTTP/1.1, a connection per watcher and per
    /// sender.
    XiaowoChatWeb,
    InProcess,
    RawTcp,
    SocketIo,
    Syncplay,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            Self::Xiaowo => "xiaowo",
            Self::XiaowoWeb => "xiaowo-web",
            Self::XiaowoShared => "xiaowo-shared",
            Self::XiaowoOwnerSession => "xiaowo-owner-session",
            Self::XiaowoChat => "xiaowo-chat",
            Self::XiaowoChatWeb => "xiaowo-chat-web",
            Self::InProcess => "in-process",
            Self::RawTcp => "raw-tcp",
            Self::SocketIo => "socketio",
            Self::Syncplay => "syncplay",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Xiaowo => "Xiaowo (gRPC WatchRoom)",
            Self::XiaowoWeb => "Xiaowo as browsers reach it (gRPC-web over HTTP/1.1)",
            Self::XiaowoShared => "Xiaowo, 100 watchers per HTTP/2 connection",
            Self::XiaowoOwnerSession => "extra: Xiaowo, every watcher the room owner's session",
            Self::XiaowoChat => "Xiaowo chat (SendMessage → WatchMessages)",
            Self::XiaowoChatWeb => "Xiaowo chat as browsers reach it (gRPC-web over HTTP/1.1)",
            Self::InProcess => "ceiling: in-process broadcast",
            Self::RawTcp => "ceiling: raw TCP fan-out",
            Self::SocketIo => "peer: socket.io 4.8",
            Self::Syncplay => "peer: syncplay-server (chat)",
        }
    }
}

struct Bench {
    options: Options,
    launcher: Launcher,
    sizes: Sizes,
    report: String,
}

impl Bench {
    fn section(&mut self, text: &str) {
        self.report.push_str(text);
        print!("{text}");
        let _ = std::fs::write(&self.options.out, &self.report);
    }

    fn systems(&self) -> Vec<System> {
        let mut systems = vec![
            System::Xiaowo,
            System::XiaowoWeb,
            System::XiaowoShared,
            System::XiaowoOwnerSession,
            System::XiaowoChat,
            System::XiaowoChatWeb,
            System::InProcess,
            System::RawTcp,
        ];
        if self.socketio_server().is_some() {
            systems.push(System::SocketIo);
        }
        if self.options.syncplay_server.is_some() {
            systems.push(System::Syncplay);
        }
        let chosen = &self.options.systems;
        systems.retain(|system| chosen.is_empty() || chosen.iter().any(|name| name == system.name()));
        systems
    }

    fn socketio_server(&self) -> Option<PathBuf> {
        self.options.socketio_dir.clone().filter(|dir| dir.join("node_modules/socket.io").is_dir())
    }

    /// [`Self::fleet`] within [`FLEET_OPEN_LIMIT`]: a server that stops answering while the fleet
    /// connects (syncplay-server at 1000 × 10 does) is given up on, and its process is killed
    /// when the abandoned future drops it, instead of holding up the rest of the suite.
    async fn bounded_fleet(
        &self,
        system: System,
        shape: Shape,
    ) -> anyhow::Result<(fanout::Fleet, f64, Option<stack::Server>, Option<PeerProcess>)> {
        tokio::time::timeout(FLEET_OPEN_LIMIT, self.fleet(system, shape))
            .await
            .with_context(|| format!("the fleet did not open within {} s", FLEET_OPEN_LIMIT.as_secs()))?
    }

    /// Opens a fleet of `system` in `shape`; returns it with the server process to stop after.
    async fn fleet(
        &self,
        system: System,
        shape: Shape,
    ) -> anyhow::Result<(fanout::Fleet, f64, Option<stack::Server>, Option<PeerProcess>)> {
        let cpu = self.options.server_cpu;
        match system {
            System::Xiaowo
            | System::XiaowoShared
            | System::XiaowoOwnerSession
            | System::XiaowoWeb
            | System::XiaowoChat
            | System::XiaowoChatWeb => {
                let server = self.launcher.start(&[]).await?;
                let targets = &server.targets;
                let before = procstat::rss_bytes(&targets.pids);
                let fleet = match system {
                    System::XiaowoWeb => {
                        let address = targets.sync_urls[0].trim_start_matches("http://").parse::<SocketAddr>()?;
                        fanout::xiaowo_grpc_web(targets, shape, address).await?
                    }
                    System::XiaowoChat => fanout::xiaowo_chat(targets, shape).await?,
                    System::XiaowoChatWeb => {
                        let address = targets.chat_url.trim_start_matches("http://").parse::<SocketAddr>()?;
                        fanout::xiaowo_chat_grpc_web(targets, shape, address).await?
                    }
                    System::XiaowoShared => {
                        fanout::xiaowo(targets, shape, People::Distinct, WATCHERS_PER_SHARED_CONNECTION, Some(256))
                            .await?
                    }
                    System::XiaowoOwnerSession => {
                        fanout::xiaowo(targets, shape, People::RoomOwner, 1, Some(256)).await?
                    }
                    _ => fanout::xiaowo(targets, shape, People::Distinct, 1, Some(256)).await?,
                };
                let rss = per_watcher(procstat::rss_bytes(&targets.pids), before, shape.watchers());
                Ok((fleet, rss, Some(server), None))
            }
            System::InProcess => Ok((fanout::in_process(shape).await?, 0.0, None, None)),
            System::RawTcp => {
                let binary = std::env::current_exe()?;
                let peer = PeerProcess::start(cpu, &binary.to_string_lossy(), &["tcp-fanout-server"], None).await?;
                let before = procstat::rss_bytes(&[peer.pid]);
                let fleet = fanout::raw_tcp(shape, peer.address, peer.pid).await?;
                let rss = per_watcher(procstat::rss_bytes(&[peer.pid]), before, shape.watchers());
                Ok((fleet, rss, None, Some(peer)))
            }
            System::SocketIo => {
                let dir = self.socketio_server().context("no socket.io peer")?;
                let peer = PeerProcess::start(cpu, "node", &["server.js"], Some(&dir)).await?;
                let before = procstat::rss_bytes(&[peer.pid]);
                let fleet = fanout::socket_io(shape, peer.address, peer.pid).await?;
                let rss = per_watcher(procstat::rss_bytes(&[peer.pid]), before, shape.watchers());
                Ok((fleet, rss, None, Some(peer)))
            }
            System::Syncplay => {
                let program = self.options.syncplay_server.clone().context("no syncplay-server")?;
                let port = free_port()?;
                let args = ["--port", &port.to_string(), "--disable-ready", "--max-chat-message-length", "1000"]
                    .map(str::to_owned);
                let peer = PeerProcess::start_on_port(cpu, &program.to_string_lossy(), &args, port).await?;
                let before = procstat::rss_bytes(&[peer.pid]);
                let fleet = fanout::syncplay(shape, peer.address, peer.pid).await?;
                let rss = per_watcher(procstat::rss_bytes(&[peer.pid]), before, shape.watchers());
                Ok((fleet, rss, None, Some(peer)))
            }
        }
    }

    async fn fanout(&mut self) -> anyhow::Result<()> {
        let mut text = String::from(
            "\n### 1 and 7. Sync fan-out: Xiaowo beside the ceilings and the peers\n\n\
             Publish → receive: from the publisher stamping an event (for Xiaowo: sending the `Seek`, so the \
             command's RPC, access check and SQLite commit are included) to each watcher decoding it. \
             One connection per watcher for every system, except the row that shares each HTTP/2 connection \
             among 100 of Xiaowo's watchers. Every Xiaowo watcher is a different person (their own session, \
             a member of the room), except in the row labelled extra, where all of a room's watchers use its \
             owner's session. The chat rows publish with `SendMessage` (committed before it is acknowledged) \
             and receive on `WatchMessages` (as browsers reach it: each room's sender and each watcher \
             a gRPC-web connection of their own); UNAVAILABLE counts the publishes the server refused \
             so.\n\n",
        );
        fanout_header(&mut text);
        self.section(&text);
        let shapes =
            if self.options.shapes.is_empty() { self.sizes.shapes.clone() } else { self.options.shapes.clone() };
        for (shape, rate) in shapes {
            for system in self.systems() {
                let label = format!("{}, {} × {}", system.label(), shape.rooms, shape.watchers_per_room);
                let (fleet, rss, server, peer) = match self.bounded_fleet(system, shape).await {
                    Ok(opened) => opened,
                    Err(error) => {
                        self.section(&format!("| {label} | {rate} | could not open the watchers: {error:#} |\n"));
                        continue;
                    }
                };
                let step = fleet.step(shape, rate, self.sizes.step).await;
                drop(fleet);
                stop(server, peer).await;
                let mut row = String::new();
                fanout_row(&mut row, &label, &step, rss);
                self.section(&row);
            }
        }

        if !self.options.shapes.is_empty() {
            return Ok(());
        }
        let shape = self.sizes.step_up_shape;
        let mut text = format!(
            "\n#### Rate step-up, {} room × {} watchers (doubling until p99 > 100 ms or deliveries fall behind)\n\n",
            shape.rooms, shape.watchers_per_room
        );
        fanout_header(&mut text);
        self.section(&text);
        let mut most = Vec::new();
        for system in self.systems() {
            // The step-up compares sync fan-out with one connection per watcher and distinct
            // people for every system.
            if matches!(
                system,
                System::InProcess
                    | System::XiaowoShared
                    | System::XiaowoOwnerSession
                    | System::XiaowoChat
                    | System::XiaowoChatWeb
            ) {
                continue;
            }
            let (fleet, rss, server, peer) = match self.bounded_fleet(system, shape).await {
                Ok(opened) => opened,
                Err(error) => {
                    self.section(&format!("| {} | – | could not open the watchers: {error:#} |\n", system.label()));
                    continue;
                }
            };
            let (first, last) = self.sizes.step_up_rates;
            let steps = fanout::step_up(&fleet, shape, first, last, self.sizes.step).await;
            drop(fleet);
            stop(server, peer).await;
            let mut rows = String::new();
            for step in &steps {
                let label = format!("{}{}", system.label(), if step.sustained() { "" } else { " (not sustained)" });
                fanout_row(&mut rows, &label, step, rss);
            }
            self.section(&rows);
            let best =
                steps.iter().filter(|step| step.sustained()).map(|step| step.deliveries_per_second).fold(0.0, f64::max);
            most.push((system.label(), best));
        }
        let mut text = String::from("\nMost deliveries/s sustained at p99 ≤ 100 ms: ");
        let parts: Vec<String> = most.iter().map(|(label, best)| format!("{label} **{best:.0}**")).collect();
        text.push_str(&parts.join("; "));
        text.push_str(".\n");
        self.section(&text);
        Ok(())
    }

    async fn chat(&mut self) -> anyhow::Result<()> {
        let mut text = String::from(
            "\n### 2. Chat with durability (send → committed → acknowledged; every member's stream receives it)\n\n\
             | run | msgs/s | ack p50 ms | ack p99 ms | all-received p50 ms | all-received p99 ms | complete | server CPU-µs/msg |\n\
             |---|---|---|---|---|---|---|---|\n",
        );
        let mut schema_source = None;
        for synchronous in ["full", "normal"] {
            for &members in &self.sizes.chat_rooms.clone() {
                let server = self.launcher.start(&["--chat-db-synchronous", synchronous]).await?;
                let result =
                    chat::durable(&server.targets, members, self.sizes.chat_messages, self.sizes.chat_in_flight)
                        .await?;
                let _ = writeln!(
                    text,
                    "| Xiaowo, room of {members}, synchronous={synchronous}, {} in flight per member | {:.0} | {} | {} | {}/{} | {:.1} |",
                    self.sizes.chat_in_flight,
                    result.acked_per_second,
                    summary_cells(&result.ack),
                    summary_cells(&result.all_received),
                    result.complete,
                    result.messages,
                    result.server_cpu_us_per_message,
                );
                if schema_source.is_none() {
                    let copy = tempfile::Builder::new().prefix("xiaowo-bench-schema-").tempdir()?;
                    let from = copy.path().join("chat.db");
                    copy_schema_source(&server.data_dir().join("chat.db"), &from)?;
                    schema_source = Some((copy, from));
                }
                server.stop().await;
            }
        }
        let (_keep, schema) = schema_source.context("no chat run")?;
        for synchronous in ["FULL", "NORMAL"] {
            for per_transaction in [1, 64] {
                let rows = chat::sqlite_ceiling(&schema, synchronous, self.sizes.sqlite_rows, per_transaction)?;
                let _ = writeln!(
                    text,
                    "| ceiling: SQLite insert loop, synchronous={synchronous}, {per_transaction} row(s)/commit | {rows:.0} | – | – | – | – | – | – |"
                );
            }
        }
        self.section(&text);
        Ok(())
    }

    async fn control(&mut self) -> anyhow::Result<()> {
        let server = self.launcher.start(&[]).await?;
        let loads = control::run(&server.targets, &self.sizes.control_concurrency, self.sizes.control_duration).await?;
        server.stop().await;
        let mut text = String::from(
            "\n### 3. Control plane (the echo row is the ceiling: gRPC health Check on the same server)\n\n\
             | call | concurrency | calls/s | p50 ms | p99 ms | errors | server CPU-µs/call |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for load in loads {
            let _ = writeln!(
                text,
                "| {} | {} | {:.0} | {} | {} | {:.1} |",
                load.operation,
                load.concurrency,
                load.per_second,
                summary_cells(&load.latency),
                load.errors,
                load.server_cpu_us_per_call
            );
        }
        self.section(&text);
        Ok(())
    }

    async fn idle(&mut self) -> anyhow::Result<()> {
        let mut text = String::from(
            "\n### 4. Idle watchers (rooms of 10; all opened together, at most 512 connecting at a time: the join storm)\n\n\
             | watchers | connections | join-storm p50 ms | join-storm p99 ms | max ms | server RSS/watcher KiB | idle server CPU % of a core |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for &watchers in &self.sizes.idle_watchers.clone() {
            for per_connection in [1, 100] {
                let server = self.launcher.start(&[]).await?;
                let shape = Shape { rooms: watchers.div_ceil(10), watchers_per_room: 10.min(watchers) };
                let rooms = stack::media_rooms(&server.targets, shape.rooms).await?;
                let watchers = fanout::watcher_tokens(&server.targets, shape, &rooms, People::Distinct).await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                let pids = server.targets.pids.clone();
                let before = procstat::rss_bytes(&pids);
                // A storm, bounded only so that the listen backlog does not overflow into resets.
                let fleet =
                    match fanout::xiaowo_in_rooms(&server.targets, shape, &rooms, &watchers, per_connection, Some(512))
                        .await
                    {
                        Ok(fleet) => fleet,
                        Err(error) => {
                            let _ = writeln!(text, "| {} | – | failed: {error:#} |", shape.watchers());
                            server.stop().await;
                            continue;
                        }
                    };
                tokio::time::sleep(Duration::from_secs(1)).await;
                let rss = per_watcher(procstat::rss_bytes(&pids), before, shape.watchers());
                let cpu_before = procstat::cpu_seconds(&pids);
                tokio::time::sleep(self.sizes.idle_duration).await;
                let idle = 100.0 * (procstat::cpu_seconds(&pids) - cpu_before) / self.sizes.idle_duration.as_secs_f64();
                let storm = crate::stats::summarize(fleet.open_latencies_us.clone());
                drop(fleet);
                server.stop().await;
                let _ = writeln!(
                    text,
                    "| {} | {} | {} | {:.1} | {rss:.1} | {idle:.1} |",
                    shape.watchers(),
                    shape.watchers().div_ceil(per_connection),
                    summary_cells(&storm),
                    storm.max_ms
                );
            }
        }
        self.section(&text);
        Ok(())
    }
}

impl Bench {
    /// Scenario 5: the same fan-out as native gRPC, as gRPC-web straight to the server, and as
    /// gRPC-web through nginx (HTTP/1.1 keep-alive upstream with streaming settings).
    async fn browser_path(&mut self) -> anyhow::Result<()> {
        let Some(nginx) = self.options.nginx.clone() else { return Ok(()) };
        let (shape, rate) = self.sizes.browser_shape;
        let mut text = format!(
            "\n### 5. Browser path: {} room × {} watchers at {rate}/s, gRPC-web through nginx vs direct\n\n\
             nginx runs as one process on the server core, plain HTTP/1.1 on loopback (TLS is not measured); \
             server CPU includes nginx's.\n\n",
            shape.rooms, shape.watchers_per_room
        );
        fanout_header(&mut text);
        for path in ["native gRPC, direct", "gRPC-web, direct", "gRPC-web through nginx"] {
            let server = self.launcher.start(&[]).await?;
            let upstream = server.targets.control_url.trim_start_matches("http://").parse::<SocketAddr>()?;
            let mut targets = server.targets.clone();
            let mut proxy = None;
            let fleet = match path {
                "native gRPC, direct" => fanout::xiaowo(&targets, shape, People::Distinct, 1, Some(256)).await?,
                "gRPC-web, direct" => fanout::xiaowo_grpc_web(&targets, shape, upstream).await?,
                _ => {
                    let nginx = Nginx::start(&nginx, self.options.server_cpu, upstream).await?;
                    targets.pids.push(nginx.process.pid);
                    let fleet = fanout::xiaowo_grpc_web(&targets, shape, nginx.process.address).await?;
                    proxy = Some(nginx);
                    fleet
                }
            };
            let step = fleet.step(shape, rate, self.sizes.step).await;
            drop(fleet);
            if let Some(nginx) = proxy {
                nginx.process.stop().await;
            }
            server.stop().await;
            fanout_row(&mut text, &format!("Xiaowo, {path}"), &step, 0.0);
        }
        self.section(&text);
        Ok(())
    }
}

/// nginx in front of one server, with its own prefix, config and logs in a temporary directory.
struct Nginx {
    process: PeerProcess,
    _prefix: tempfile::TempDir,
}

impl Nginx {
    async fn start(binary: &std::path::Path, cpu: Option<usize>, upstream: SocketAddr) -> anyhow::Result<Self> {
        let prefix = tempfile::Builder::new().prefix("xiaowo-bench-nginx-").tempdir()?;
        let dir = prefix.path().display().to_string();
        // The gRPC-web proxying of deploy/nginx/xiaowo-public-grpc.conf.in, without TLS and
        // rate limits; one process (no master) so that its CPU is one /proc entry.
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log warn;\n\
             worker_rlimit_nofile 65536;\nevents {{ worker_connections 30000; }}\n\
             http {{\n  access_log off;\n  client_body_temp_path {dir}/body;\n  proxy_temp_path {dir}/proxy;\n\
               fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  scgi_temp_path {dir}/scgi;\n\
               upstream xiaowo {{ server {upstream}; keepalive 32; keepalive_timeout 20s; }}\n\
               server {{\n    listen 127.0.0.1:{{port}};\n    location / {{\n\
                 proxy_pass http://xiaowo;\n      proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
                 proxy_set_header Host $host;\n      proxy_buffering off;\n      proxy_request_buffering off;\n\
                 proxy_cache off;\n      proxy_read_timeout 1h;\n      proxy_send_timeout 1h;\n    }}\n  }}\n}}\n"
        );
        let port = free_port()?;
        std::fs::write(prefix.path().join("nginx.conf"), config.replace("{port}", &port.to_string()))?;
        let conf = prefix.path().join("nginx.conf").display().to_string();
        let error_log = prefix.path().join("startup.log").display().to_string();
        let args = ["-p", &dir, "-c", &conf, "-e", &error_log].map(str::to_owned);
        let process = PeerProcess::start_on_port(cpu, &binary.to_string_lossy(), &args, port).await?;
        Ok(Self { process, _prefix: prefix })
    }
}

/// The server's chat.db is live (WAL); SQLite's backup API copies it consistently.
fn copy_schema_source(live: &std::path::Path, copy: &std::path::Path) -> anyhow::Result<()> {
    let source = rusqlite::Connection::open_with_flags(live, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    source.backup(rusqlite::MAIN_DB, copy, None)?;
    Ok(())
}

async fn stop(server: Option<stack::Server>, peer: Option<PeerProcess>) {
    if let Some(server) = server {
        server.stop().await;
    }
    if let Some(peer) = peer {
        peer.stop().await;
    }
}

/// Runs every scenario and writes the report.
pub async fn run(options: Options) -> anyhow::Result<()> {
    if !options.server_binary.is_file() {
        bail!("no server binary at {}", options.server_binary.display());
    }
    let launcher = Launcher { binary: options.server_binary.clone(), cpu: options.server_cpu };
    let mut sizes = if options.smoke { Sizes::smoke() } else { Sizes::full() };
    if !options.idle_watchers.is_empty() {
        sizes.idle_watchers.clone_from(&options.idle_watchers);
    }
    let mut bench = Bench { options, launcher, sizes, report: String::new() };
    if bench.options.socketio_dir.is_some() && bench.socketio_server().is_none() {
        bail!("the socket.io peer has no node_modules; run npm ci in its directory");
    }
    let chosen = |name: &str| bench.options.only.is_empty() || bench.options.only.iter().any(|only| only == name);
    let (fanout, chat, control, idle, browser) =
        (chosen("fanout"), chosen("chat"), chosen("control"), chosen("idle"), chosen("browser"));
    if fanout {
        bench.fanout().await?;
    }
    if chat {
        bench.chat().await?;
    }
    if control {
        bench.control().await?;
    }
    if idle {
        bench.idle().await?;
    }
    if browser {
        bench.browser_path().await?;
    }
    Ok(())
}
