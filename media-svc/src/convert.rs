//! Conversion to HLS of the items browsers cannot play, in a bounded background queue.
//!
//! Every item probed as "needs conversion" gets a row in `conversions` (queued). Workers
//! (`--media-convert-jobs`, default 1) take the oldest one under a lease, run ffmpeg under
//! `nice` into `.xiaowo/hls/<id>/` (the plan is `convert/plan.rs`) and follow its `-progress`
//! reports (`convert/progress.rs`): the item is PLAYABLE ("ready to start") as soon as the
//! growing EVENT playlist lists its first segment, and COMPLETE once ffmpeg has written
//! ENDLIST. Progress is written to the database (renewing the lease) at most once a second and
//! announced to `WatchMedia` streams.
//!
//! Stopping: deleting an item (or a change of its file) cancels its run; a shutdown cancels
//! every run. ffmpeg is then killed (it is one process, started in a process group of its own
//! so that a terminal's Ctrl-C cannot make it finish the playlist early, and with a parent-death
//! signal so that it does not outlive a crashed server), reaped, and its files removed. A run
//! stopped by a shutdown goes back to the queue and starts again at the next start; a run whose
//! worker died without a word is started again by any instance once its lease runs out. The
//! state lives in the database, not in memory: several instances share the queue.

mod plan;
mod progress;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts};
use svc_kit::auth::Caller;
use svc_kit::id::RoomId;
use svc_kit::status::Violation;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{Notify, broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

pub use plan::{INIT_SEGMENT, PLAYLIST, Plan, SEGMENT_SECONDS, is_served_name};
pub use progress::{read_playlist, start_at_beginning};

use crate::Error;
use crate::config::Config;
use crate::library::{Library, WORK_DIR, check_id};
use crate::model::{Conversion, ConversionState, MediaItem, Playability};

/// How long a worker's claim on a conversion lasts without renewal.
const LEASE: Duration = Duration::from_secs(20);
/// How often a running conversion renews its lease even when ffmpeg reports nothing.
const RENEW_EVERY: Duration = Duration::from_secs(4);
/// Progress is written (and announced) at most this often.
const WRITE_EVERY: Duration = Duration::from_secs(1);
/// A conversion whose output does not move for this long is stopped and failed.
const STALL_LIMIT: Duration = Duration::from_secs(300);
/// How often idle workers look for work they were not told about (another instance's queue,
/// runs whose lease ran out).
const POLL_EVERY: Duration = Duration::from_secs(5);
/// Runs of one item that may start (and be cut short by a dying server) before it is failed.
const MAX_ATTEMPTS: i32 = 3;
/// How long a deletion waits for its conversion's ffmpeg to be gone.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// Items one `WatchMedia` call may follow.
pub const MAX_WATCHED: usize = 100;
/// A `WatchMedia` stream reads its items again this often (changes made by another instance
/// are not announced here).
const WATCH_REFRESH: Duration = Duration::from_secs(5);
/// A `WatchMedia` stream sends a heartbeat after this long without a message.
const WATCH_HEARTBEAT: Duration = Duration::from_secs(15);
/// The last bytes of ffmpeg's error output kept for the failure's reason.
const STDERR_TAIL_BYTES: usize = 4096;
/// The longest failure reason stored.
const MAX_REASON_CHARS: usize = 300;
/// ffmpeg's scheduling priority: conversions give way to serving.
const NICENESS: &str = "10";

/// The conversion queue's settings and what runs now.
#[derive(Debug)]
pub struct Conversions {
    jobs: u32,
    readrate: f64,
    /// The program and the arguments ffmpeg's command line starts with (`setpriv`, `nice`).
    launcher: Vec<PathBuf>,
    running: Mutex<HashMap<String, Running>>,
    /// Wakes an idle worker when a conversion is queued.
    wake: Notify,
    /// The ids of items whose conversion changed, for `WatchMedia`.
    changes: broadcast::Sender<String>,
    /// The server's shutdown: ends `WatchMedia` streams.
    shutdown: CancellationToken,
    metrics: ConversionMetrics,
}

/// A run in this process.
#[derive(Debug)]
struct Running {
    cancel: CancellationToken,
    /// Turns true once its ffmpeg is gone and its files are settled.
    finished: watch::Receiver<bool>,
}

/// `xiaowo_media_conversions_*`.
#[derive(Debug, Clone)]
struct ConversionMetrics {
    running: IntGauge,
    outcomes: IntCounterVec,
}

/// Finds `name` on `PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

impl Conversions {
    /// The queue for `config`, stopping with `shutdown`, its metrics in `registry`.
    #[must_use]
    pub fn new(config: &Config, shutdown: CancellationToken, registry: &prometheus::Registry) -> Self {
        // ffmpeg dies with the server (a parent-death signal, set by util-linux's setpriv) and
        // runs at a lower priority (nice); both are skipped where the programs are missing.
        let mut launcher = Vec::new();
        if let Some(setpriv) = find_program("setpriv") {
            launcher.extend([setpriv, "--pdeathsig".into(), "KILL".into(), "--".into()]);
        }
        if let Some(nice) = find_program("nice") {
            launcher.extend([nice, "-n".into(), NICENESS.into()]);
        }
        launcher.push(config.ffmpeg.clone());
        let metrics = ConversionMetrics {
            running: svc_kit::metrics::registered(
                registry,
                IntGauge::new("xiaowo_media_conversions_running", "Conversions to HLS running in this process."),
            ),
            outcomes: svc_kit::metrics::registered(
                registry,
                IntCounterVec::new(
                    Opts::new(
                        "xiaowo_media_conversions_total",
                        "Conversions to HLS by outcome: complete, failed, cancelled (deleted or changed), interrupted (shutdown).",
                    ),
                    &["outcome"],
                ),
            ),
        };
        Self {
            jobs: config.convert_jobs,
            readrate: config.convert_readrate,
            launcher,
            running: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            changes: broadcast::channel(256).0,
            shutdown,
            metrics,
        }
    }

    fn announce(&self, media_item_id: &str) {
        // Nobody watching is no error.
        let _ = self.changes.send(media_item_id.to_owned());
    }
}

/// What a run ended with.
#[derive(Debug)]
enum Outcome {
    /// ffmpeg wrote the whole playlist; the item's length in milliseconds.
    Complete(i64),
    /// The conversion cannot be done; the reason, in words.
    Failed(String),
    /// Cancelled here: the item was deleted or changed, or the server is stopping.
    Cancelled,
    /// The run is not the current one any more (its row went or was taken over).
    Lost,
}

/// What a `WatchMedia` stream carries.
#[derive(Debug, Clone)]
pub enum MediaEvent {
    /// An item as it is now, with its conversion.
    Item(Box<(MediaItem, Option<Conversion>)>),
    /// An item deleted, or one the caller may not see.
    Removed(String),
    Heartbeat,
    /// The server is stopping; the stream ends.
    ShuttingDown,
}

/// The last `max` bytes of `text`'s last non-empty line, for a failure reason.
fn reason_from(stderr: &str) -> String {
    let line = stderr.lines().map(str::trim).rfind(|line| !line.is_empty()).unwrap_or("no message");
    line.chars().take(MAX_REASON_CHARS).collect()
}

/// Kills a child (SIGKILL) and reaps it, so that no process is left behind.
async fn kill(child: &mut Child) {
    if let Err(error) = child.kill().await {
        tracing::warn!(%error, "cannot kill ffmpeg");
    }
}

impl Library {
    /// Where an item's HLS files are.
    pub(crate) fn hls_dir(&self, media_item_id: &str) -> PathBuf {
        self.dirs.root.join(WORK_DIR).join("hls").join(media_item_id)
    }

    /// Queues the conversion of an item browsers cannot play (from the start, if it had one).
    /// A failure is logged: the next start queues what has no conversion.
    pub(crate) async fn queue_conversion(&self, item: &MediaItem) {
        if item.info.playability != Playability::NeedsConversion {
            return;
        }
        match self.store.queue_conversion(&item.media_item_id, self.now_ms()).await {
            Ok(()) => {
                tracing::info!(media_item_id = %item.media_item_id, "conversion queued");
                self.conversions.announce(&item.media_item_id);
                self.conversions.wake.notify_one();
            }
            Err(error) => tracing::warn!(media_item_id = %item.media_item_id, %error, "cannot queue the conversion"),
        }
    }

    /// Stops the item's conversion in this process, if one runs (ffmpeg killed and reaped),
    /// and removes its files. Its row is the caller's business.
    pub(crate) async fn stop_conversion(&self, media_item_id: &str) {
        let finished = self.conversions.running.lock().ok().and_then(|running| {
            running.get(media_item_id).map(|run| {
                run.cancel.cancel();
                run.finished.clone()
            })
        });
        if let Some(mut finished) = finished
            && tokio::time::timeout(STOP_WAIT, finished.wait_for(|done| *done)).await.is_err()
        {
            tracing::warn!(%media_item_id, "conversion did not stop in time");
        }
        remove_dir_quietly(&self.hls_dir(media_item_id)).await;
        self.conversions.announce(media_item_id);
    }

    /// The item's file changed: its conversion starts over, or goes when it is not needed.
    pub(crate) async fn restart_conversion(&self, item: &MediaItem) {
        self.stop_conversion(&item.media_item_id).await;
        if item.info.playability == Playability::NeedsConversion {
            self.queue_conversion(item).await;
        } else if let Err(error) = self.store.delete_conversion(&item.media_item_id).await {
            tracing::warn!(media_item_id = %item.media_item_id, %error, "cannot forget the conversion");
        }
    }

    /// The conversions of those of `items` that need one, by item id.
    ///
    /// # Errors
    /// Database failures.
    pub async fn conversions_for(&self, items: &[MediaItem]) -> Result<HashMap<String, Conversion>, Error> {
        let ids: Vec<String> = items
            .iter()
            .filter(|item| item.info.playability == Playability::NeedsConversion)
            .map(|item| item.media_item_id.clone())
            .collect();
        let conversions = self.store.conversions_of(&ids).await?;
        Ok(conversions.into_iter().map(|conversion| (conversion.media_item_id.clone(), conversion)).collect())
    }

    /// Brings conversions in line with the library at start: items that need one and have no
    /// row are queued, complete ones whose files are gone are queued again, and folders that
    /// belong to no conversion are removed.
    async fn prepare_conversions(&self) -> Result<(), Error> {
        let now = self.now_ms();
        for media_item_id in self.store.items_without_conversion().await? {
            self.store.queue_conversion(&media_item_id, now).await?;
        }
        let conversions = self.store.all_conversions().await?;
        for conversion in &conversions {
            let playlist = self.hls_dir(&conversion.media_item_id).join(PLAYLIST);
            if conversion.state == ConversionState::Complete && !tokio::fs::try_exists(&playlist).await.unwrap_or(false)
            {
                tracing::info!(media_item_id = %conversion.media_item_id, "converted files missing; converting again");
                self.store.queue_conversion(&conversion.media_item_id, now).await?;
            }
        }
        let keep: std::collections::HashSet<&str> = conversions
            .iter()
            .filter(|conversion| conversion.state != ConversionState::Failed)
            .map(|conversion| conversion.media_item_id.as_str())
            .collect();
        let root = self.dirs.root.join(WORK_DIR).join("hls");
        if let Ok(mut entries) = tokio::fs::read_dir(&root).await {
            while let Ok(Some(entry)) = entries.next_entry().await {
                let name = entry.file_name();
                if !keep.contains(name.to_string_lossy().as_ref()) {
                    remove_dir_quietly(&entry.path()).await;
                }
            }
        }
        Ok(())
    }

    /// Runs the conversion workers until `shutdown`.
    pub async fn run_converters(self: Arc<Self>, shutdown: CancellationToken) {
        if let Err(error) = self.prepare_conversions().await {
            tracing::warn!(%error, "checking conversions at start failed");
        }
        let workers = (0..self.conversions.jobs).map(|_| {
            let library = Arc::clone(&self);
            let shutdown = shutdown.clone();
            async move { library.convert_loop(shutdown).await }
        });
        futures_util::future::join_all(workers).await;
    }

    async fn convert_loop(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let now = self.now_ms();
            match self.store.claim_conversion(now, now.saturating_add(svc_kit::clock::millis(LEASE))).await {
                Ok(Some(claimed)) => {
                    self.convert(claimed, &shutdown).await;
                    continue;
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, "cannot look for conversions"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.conversions.wake.notified() => {}
                () = tokio::time::sleep(POLL_EVERY) => {}
            }
        }
    }

    /// Runs one claimed conversion to its end and records the end.
    async fn convert(&self, claimed: Conversion, shutdown: &CancellationToken) {
        let media_item_id = claimed.media_item_id.clone();
        let attempt = claimed.attempts;
        let cancel = shutdown.child_token();
        let (finished, finished_receiver) = watch::channel(false);
        if let Ok(mut running) = self.conversions.running.lock() {
            running.insert(media_item_id.clone(), Running { cancel: cancel.clone(), finished: finished_receiver });
        }
        self.conversions.metrics.running.inc();
        self.conversions.announce(&media_item_id);
        let outcome = if attempt > MAX_ATTEMPTS {
            Outcome::Failed("The conversion was interrupted too many times.".to_owned())
        } else {
            self.run_ffmpeg(&media_item_id, attempt, &cancel).await
        };
        let now = self.now_ms();
        let dir = self.hls_dir(&media_item_id);
        let label = match &outcome {
            Outcome::Complete(duration_ms) => {
                tracing::info!(%media_item_id, "conversion complete");
                self.record_end(&media_item_id, attempt, ConversionState::Complete, *duration_ms, "").await;
                "complete"
            }
            Outcome::Failed(reason) => {
                tracing::warn!(%media_item_id, %reason, "conversion failed");
                remove_dir_quietly(&dir).await;
                self.record_end(&media_item_id, attempt, ConversionState::Failed, 0, reason).await;
                "failed"
            }
            Outcome::Cancelled if shutdown.is_cancelled() => {
                remove_dir_quietly(&dir).await;
                // Back in the queue: the next start converts it again, from the start.
                match self.store.release_conversion(&media_item_id, attempt, now).await {
                    Ok(_) => tracing::info!(%media_item_id, "conversion stopped by the shutdown; queued again"),
                    Err(error) => tracing::warn!(%media_item_id, %error, "cannot queue the stopped conversion again"),
                }
                "interrupted"
            }
            Outcome::Cancelled => {
                remove_dir_quietly(&dir).await;
                tracing::info!(%media_item_id, "conversion cancelled");
                "cancelled"
            }
            Outcome::Lost => {
                // Another worker may own the folder now; only a conversion that is gone
                // altogether leaves its files to be removed.
                if matches!(self.store.find_conversion(&media_item_id).await, Ok(None)) {
                    remove_dir_quietly(&dir).await;
                }
                tracing::info!(%media_item_id, "conversion no longer current; stopped");
                "cancelled"
            }
        };
        self.conversions.metrics.outcomes.with_label_values(&[label]).inc();
        self.conversions.metrics.running.dec();
        if let Ok(mut running) = self.conversions.running.lock() {
            running.remove(&media_item_id);
        }
        let _ = finished.send(true);
        self.conversions.announce(&media_item_id);
    }

    async fn record_end(
        &self,
        media_item_id: &str,
        attempt: i32,
        state: ConversionState,
        converted_ms: i64,
        error: &str,
    ) {
        let now = self.now_ms();
        if let Err(failure) =
            self.store.finish_conversion(media_item_id, attempt, state, converted_ms, error, now).await
        {
            tracing::warn!(%media_item_id, error = %failure, "cannot record the end of the conversion");
        }
    }

    /// Converts the item with ffmpeg, following its progress, until it ends or `cancel`.
    async fn run_ffmpeg(&self, media_item_id: &str, attempt: i32, cancel: &CancellationToken) -> Outcome {
        let item = match self.store.find_item(media_item_id).await {
            Ok(Some(item)) => item,
            Ok(None) => return Outcome::Lost,
            Err(error) => return Outcome::Failed(format!("The library could not be read: {error}")),
        };
        let Some(source) = self.dirs.resolve_inside(&item.relative_path) else {
            return Outcome::Failed("The file is missing.".to_owned());
        };
        let streams = match self.prober.source_streams(&source).await {
            Ok(streams) => streams,
            Err(error) => return Outcome::Failed(format!("The file could not be read: {error}")),
        };
        let Some(plan) = Plan::for_source(&streams) else {
            return Outcome::Failed("The file has no video or audio to convert.".to_owned());
        };
        let dir = self.hls_dir(media_item_id);
        remove_dir_quietly(&dir).await;
        if let Err(error) = tokio::fs::create_dir_all(&dir).await {
            return Outcome::Failed(format!("The conversion's folder could not be made: {error}"));
        }
        let (program, launcher_args) = match self.conversions.launcher.split_first() {
            Some(first) => first,
            None => return Outcome::Failed("No ffmpeg program is configured.".to_owned()),
        };
        let ffmpeg_args = plan.ffmpeg_args(&source, &dir, self.conversions.readrate);
        // The whole command line goes in the log: what an operator (or the benchmark, which runs
        // the same command alone) needs to run it by hand.
        let command_line = std::iter::once(program.as_os_str())
            .chain(launcher_args.iter().map(|arg| arg.as_os_str()))
            .chain(ffmpeg_args.iter().map(std::ffi::OsString::as_os_str))
            .map(|arg| arg.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        let mut command = Command::new(program);
        command
            .args(launcher_args)
            .args(&ffmpeg_args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // A group of its own: signals meant for the server's terminal do not reach it.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => return Outcome::Failed(format!("ffmpeg could not be started: {error}")),
        };
        tracing::info!(
            %media_item_id,
            pid = child.id().unwrap_or(0),
            video = if plan.copies_video() { "copy" } else { "encode" },
            command = %command_line,
            "conversion started"
        );
        let (Some(stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
            kill(&mut child).await;
            return Outcome::Failed("ffmpeg's output could not be read.".to_owned());
        };
        let stderr_tail = tokio::spawn(async move {
            let mut tail = Vec::new();
            let mut buffer = [0_u8; 4096];
            while let Ok(read) = stderr.read(&mut buffer).await {
                if read == 0 {
                    break;
                }
                tail.extend_from_slice(&buffer[..read]);
                if tail.len() > STDERR_TAIL_BYTES {
                    tail.drain(..tail.len() - STDERR_TAIL_BYTES);
                }
            }
            String::from_utf8_lossy(&tail).into_owned()
        });

        let mut lines = BufReader::new(stdout).lines();
        let mut reader = progress::ProgressReader::default();
        let mut state = ConversionState::Converting;
        let mut converted_ms = 0_i64;
        let mut written_at = tokio::time::Instant::now();
        let mut moved_at = tokio::time::Instant::now();
        let mut renew = tokio::time::interval(RENEW_EVERY);
        renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let playlist = dir.join(PLAYLIST);
        let duration_ms = item.info.duration_ms.max(0);
        loop {
            let write = tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    kill(&mut child).await;
                    return Outcome::Cancelled;
                }
                line = lines.next_line() => match line {
                    Ok(Some(line)) => match reader.line(&line) {
                        Some(report) => {
                            let reached = report.converted_ms.clamp(0, duration_ms);
                            if reached > converted_ms {
                                moved_at = tokio::time::Instant::now();
                                converted_ms = reached;
                            }
                            let became_playable = state == ConversionState::Converting
                                && read_playlist(&tokio::fs::read_to_string(&playlist).await.unwrap_or_default()).segments > 0;
                            if became_playable {
                                state = ConversionState::Playable;
                                tracing::info!(%media_item_id, converted_ms, "conversion ready to start");
                            }
                            became_playable || written_at.elapsed() >= WRITE_EVERY
                        }
                        None => false,
                    },
                    // ffmpeg closed its output: it is ending.
                    Ok(None) | Err(_) => break,
                },
                _ = renew.tick() => {
                    if moved_at.elapsed() >= STALL_LIMIT {
                        kill(&mut child).await;
                        return Outcome::Failed(format!("The conversion stopped moving for {} s.", STALL_LIMIT.as_secs()));
                    }
                    true
                }
            };
            if write {
                written_at = tokio::time::Instant::now();
                let now = self.now_ms();
                let lease_until = now.saturating_add(svc_kit::clock::millis(LEASE));
                match self.store.record_progress(media_item_id, attempt, state, converted_ms, lease_until, now).await {
                    Ok(true) => self.conversions.announce(media_item_id),
                    Ok(false) => {
                        kill(&mut child).await;
                        return Outcome::Lost;
                    }
                    Err(error) => tracing::warn!(%media_item_id, %error, "cannot record the conversion's progress"),
                }
            }
        }
        let status = tokio::select! {
            () = cancel.cancelled() => {
                kill(&mut child).await;
                return Outcome::Cancelled;
            }
            status = child.wait() => status,
        };
        let stderr = stderr_tail.await.unwrap_or_default();
        match status {
            Ok(status) if status.success() => {
                let facts = read_playlist(&tokio::fs::read_to_string(&playlist).await.unwrap_or_default());
                if facts.ended && facts.segments > 0 {
                    Outcome::Complete(duration_ms)
                } else {
                    Outcome::Failed("ffmpeg ended without finishing the playlist.".to_owned())
                }
            }
            Ok(status) => Outcome::Failed(format!("ffmpeg failed ({status}): {}", reason_from(&stderr))),
            Err(error) => Outcome::Failed(format!("ffmpeg could not be waited for: {error}")),
        }
    }

    /// Follows the conversions of `media_item_ids` for `caller`: the items as they are now,
    /// then each change, until none is unfinished, the receiver is dropped or the server stops.
    ///
    /// # Errors
    /// Invalid ids, `NotFound` when the caller may see none of them, access errors, database
    /// failures.
    pub async fn watch_media(
        self: &Arc<Self>,
        caller: &Caller,
        room_id: Option<&RoomId>,
        media_item_ids: Vec<String>,
    ) -> Result<mpsc::Receiver<MediaEvent>, Error> {
        let mut violations = Vec::new();
        if media_item_ids.is_empty() || media_item_ids.len() > MAX_WATCHED {
            violations.push(Violation::new("media_item_ids", format!("must hold 1 to {MAX_WATCHED} ids")));
        }
        let mut seen = std::collections::HashSet::new();
        for (index, media_item_id) in media_item_ids.iter().enumerate().take(MAX_WATCHED + 1) {
            let field = format!("media_item_ids[{index}]");
            if check_id(&field, media_item_id).is_err() {
                violations.push(Violation::new(field, "must be a media item id"));
            } else if !seen.insert(media_item_id.as_str()) {
                violations.push(Violation::new(field, "is named twice"));
            }
        }
        if !violations.is_empty() {
            return Err(Error::InvalidArgument(violations));
        }
        let viewer = self.viewer(caller, room_id).await?;
        // Subscribed before the first read: no change between the two is missed.
        let changes = self.conversions.changes.subscribe();
        let items = self.store.find_items(&media_item_ids).await?;
        if !items.iter().any(|item| Self::may_see(&viewer, item)) {
            return Err(Error::NotFound);
        }
        let (sender, receiver) = mpsc::channel(32);
        let library = Arc::clone(self);
        tokio::spawn(async move { library.feed_watcher(viewer, media_item_ids, changes, sender).await });
        Ok(receiver)
    }

    async fn feed_watcher(
        &self,
        viewer: crate::model::Viewer,
        media_item_ids: Vec<String>,
        mut changes: broadcast::Receiver<String>,
        sender: mpsc::Sender<MediaEvent>,
    ) {
        // What each watched item last looked like to this watcher.
        let mut watched: HashMap<String, Option<(ConversionState, i64, String, i64)>> =
            media_item_ids.into_iter().map(|media_item_id| (media_item_id, None)).collect();
        let mut refresh = tokio::time::interval_at(tokio::time::Instant::now() + WATCH_REFRESH, WATCH_REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending: Vec<String> = watched.keys().cloned().collect();
        let mut quiet_until = tokio::time::Instant::now() + WATCH_HEARTBEAT;
        loop {
            if !pending.is_empty() {
                let ids = std::mem::take(&mut pending);
                match self.watch_events(&viewer, &ids, &mut watched).await {
                    Ok(events) => {
                        for event in events {
                            if sender.send(event).await.is_err() {
                                return;
                            }
                            quiet_until = tokio::time::Instant::now() + WATCH_HEARTBEAT;
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot read watched media items"),
                }
                if watched.is_empty() {
                    return;
                }
            }
            tokio::select! {
                biased;
                () = sender.closed() => return,
                () = self.conversions.shutdown.cancelled() => {
                    let _ = tokio::time::timeout(Duration::from_secs(1), sender.send(MediaEvent::ShuttingDown)).await;
                    return;
                }
                change = changes.recv() => match change {
                    Ok(media_item_id) => if watched.contains_key(&media_item_id) { pending.push(media_item_id) },
                    Err(broadcast::error::RecvError::Lagged(_)) => pending = watched.keys().cloned().collect(),
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = refresh.tick() => pending = watched.keys().cloned().collect(),
                () = tokio::time::sleep_until(quiet_until) => {
                    if sender.send(MediaEvent::Heartbeat).await.is_err() {
                        return;
                    }
                    quiet_until = tokio::time::Instant::now() + WATCH_HEARTBEAT;
                }
            }
        }
    }

    /// The events for `ids` that changed since `watched` last saw them; items that are gone or
    /// finished stop being watched.
    async fn watch_events(
        &self,
        viewer: &crate::model::Viewer,
        ids: &[String],
        watched: &mut HashMap<String, Option<(ConversionState, i64, String, i64)>>,
    ) -> Result<Vec<MediaEvent>, Error> {
        // Conversions before items: a delete takes an item and its conversion at once, so an
        // item read after its conversion was found missing is missing too (read the other way
        // round, a delete in between showed a live item without its conversion, taken for a
        // finished one, and the watcher stopped without hearing of the removal).
        let mut conversions: HashMap<String, Conversion> = self
            .store
            .conversions_of(ids)
            .await?
            .into_iter()
            .map(|conversion| (conversion.media_item_id.clone(), conversion))
            .collect();
        let items = self.store.find_items(ids).await?;
        for item in &items {
            if item.info.playability != Playability::NeedsConversion {
                conversions.remove(&item.media_item_id);
            }
        }
        let mut found: HashMap<String, MediaItem> =
            items.into_iter().map(|item| (item.media_item_id.clone(), item)).collect();
        let mut events = Vec::new();
        for media_item_id in ids {
            let Some(seen) = watched.get_mut(media_item_id) else { continue };
            let item = found.remove(media_item_id).filter(|item| Self::may_see(viewer, item));
            let Some(item) = item else {
                watched.remove(media_item_id);
                events.push(MediaEvent::Removed(media_item_id.clone()));
                continue;
            };
            let conversion = conversions.get(media_item_id).cloned();
            let now = conversion.as_ref().map(|conversion| {
                (conversion.state, conversion.converted_ms, conversion.error.clone(), item.updated_at)
            });
            let unfinished = conversion.as_ref().is_some_and(|conversion| conversion.state.is_unfinished());
            if seen.is_none() || *seen != now {
                *seen = now;
                events.push(MediaEvent::Item(Box::new((item, conversion))));
            }
            if !unfinished {
                watched.remove(media_item_id);
            }
        }
        Ok(events)
    }
}

/// Removes a folder and everything in it, logging anything but "already gone".
async fn remove_dir_quietly(path: &Path) {
    if let Err(error) = tokio::fs::remove_dir_all(path).await
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %error, "cannot remove folder");
    }
}
