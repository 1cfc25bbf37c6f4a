//! media-svc's file serving and uploads, each beside a peer or a ceiling measured in the same
//! run on the same machine:
//!
//! * Range serving: readers fetch random 1 MiB ranges of one large file over keep-alive
//!   HTTP/1.1 connections, from `xiaowo up` (a signed URL and the session token on every
//!   request, as a browser sends them) and from nginx serving the same file (`sendfile on`), both
//!   pinned to the server core; `cat` of the file to `/dev/null` is the ceiling.
//! * Upload: one file sent as tus PATCH requests of 8 MiB each, as the web client sends it,
//!   beside a plain local write of the same bytes in the same 8 MiB pieces to the same disk
//!   (with and without a data sync after each piece, since the server syncs every request).
//!   The server's resident memory is sampled throughout: it must stay flat.
//!
//! The test file is a short MP4 (so that media-svc's probe accepts it) followed by random
//! bytes up to the size wanted: what is measured is moving bytes, not decoding them.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use proto::media::v1 as media_pb;
use proto::sync::v1 as sync_pb;

use crate::stack::{Launcher, bearer, channel, create_room, create_session};
use crate::stats::{Summary, summarize};

const MIB: u64 = 1 << 20;
const MIB_BYTES: usize = 1 << 20;
const RANGE_BYTES: u64 = MIB;
const CHUNK_BYTES: usize = 8 << 20;

/// Sizes and durations of one run.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The `xiaowo` binary.
    #[arg(long)]
    pub server_binary: PathBuf,
    /// The CPU the servers (xiaowo, nginx) are pinned to.
    #[arg(long)]
    pub server_cpu: Option<usize>,
    /// nginx, for the peer.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    pub nginx: PathBuf,
    /// Tiny sizes: checks that everything works, not how fast.
    #[arg(long)]
    pub smoke: bool,
    /// Where to write the Markdown table (stdout otherwise).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

struct Sizes {
    file_bytes: u64,
    readers: usize,
    seconds: f64,
    upload_bytes: u64,
    /// Uploads, each right after a synced write of the same bytes: the disk's speed varies
    /// from one second to the next, so each upload is set beside its own ceiling.
    upload_rounds: usize,
}

impl Options {
    fn sizes(&self) -> Sizes {
        if self.smoke {
            Sizes { file_bytes: 16 * MIB, readers: 4, seconds: 1.0, upload_bytes: 24 * MIB, upload_rounds: 1 }
        } else {
            Sizes { file_bytes: 200 * MIB, readers: 50, seconds: 15.0, upload_bytes: 1024 * MIB, upload_rounds: 3 }
        }
    }
}

/// A short real MP4 followed by random bytes, `bytes` long in all.
fn make_file(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let head = path.with_extension("head.mp4");
    let status = std::process::Command::new("ffmpeg")
        .args(["-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=320x180:rate=25", "-t", "10"])
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-movflags", "+faststart"])
        .arg(&head)
        .status()
        .context("ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg failed");
    }
    let mut out = std::fs::File::create(path)?;
    let header = std::fs::read(&head)?;
    std::fs::remove_file(&head)?;
    out.write_all(&header)?;
    let mut left = bytes.saturating_sub(header.len() as u64);
    let mut block = vec![0_u8; MIB_BYTES];
    while left > 0 {
        rand_fill(&mut block);
        let take = left.min(MIB) as usize;
        out.write_all(&block[..take])?;
        left -= take as u64;
    }
    out.sync_all()?;
    Ok(())
}

/// Cheap incompressible bytes (xorshift): no encoder or cache can shortcut them.
fn rand_fill(block: &mut [u8]) {
    let mut state = 0x9e37_79b9_7f4a_7c15_u64 ^ (block.as_ptr() as u64) ^ crate::stats::wall_micros().cast_unsigned();
    for chunk in block.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let bytes = state.to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

fn http_client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build(connector)
}

/// What one set of readers achieved.
struct RangeRun {
    bytes: u64,
    seconds: f64,
    latency: Summary,
    errors: u64,
    server_cpu_seconds: f64,
}

impl RangeRun {
    /// Range bodies received, bytes per second.
    fn throughput(&self) -> f64 {
        self.bytes as f64 / self.seconds
    }
}

/// `readers` tasks fetching random 1 MiB ranges of `url` for `seconds`.
async fn read_ranges(
    url: &str,
    token: Option<&str>,
    file_bytes: u64,
    readers: usize,
    seconds: f64,
    pids: &[u32],
) -> anyhow::Result<RangeRun> {
    let client = http_client();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let cpu_before = crate::procstat::cpu_seconds(pids);
    let began = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for reader in 0..readers {
        let (client, url, token) = (client.clone(), url.to_owned(), token.map(str::to_owned));
        tasks.spawn(async move {
            let mut seed = (reader as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d);
            let (mut bytes, mut errors, mut micros) = (0_u64, 0_u64, Vec::new());
            while Instant::now() < deadline {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let start = seed % (file_bytes - RANGE_BYTES);
                let mut request =
                    http::Request::get(&url).header("range", format!("bytes={start}-{}", start + RANGE_BYTES - 1));
                if let Some(token) = &token {
                    request = request.header("authorization", format!("Bearer {token}"));
                }
                let Ok(request) = request.body(Full::new(Bytes::new())) else { break };
                let asked = Instant::now();
                match client.request(request).await {
                    Ok(response) if response.status() == http::StatusCode::PARTIAL_CONTENT => {
                        match response.into_body().collect().await {
                            Ok(body) => {
                                let length = body.to_bytes().len() as u64;
                                if length == RANGE_BYTES {
                                    bytes += length;
                                    micros.push(u64::try_from(asked.elapsed().as_micros()).unwrap_or(u64::MAX));
                                } else {
                                    errors += 1;
                                }
                            }
                            Err(_) => errors += 1,
                        }
                    }
                    _ => errors += 1,
                }
            }
            (bytes, errors, micros)
        });
    }
    let (mut bytes, mut errors, mut micros) = (0, 0, Vec::new());
    while let Some(done) = tasks.join_next().await {
        let (reader_bytes, reader_errors, reader_micros) = done?;
        bytes += reader_bytes;
        errors += reader_errors;
        micros.extend(reader_micros);
    }
    let seconds = began.elapsed().as_secs_f64();
    Ok(RangeRun {
        bytes,
        seconds,
        latency: summarize(micros),
        errors,
        server_cpu_seconds: crate::procstat::cpu_seconds(pids) - cpu_before,
    })
}

/// nginx on a free port, pinned like the server; stopped when dropped.
struct Nginx {
    child: tokio::process::Child,
    port: u16,
    _prefix: tempfile::TempDir,
}

impl Nginx {
    /// The master and the worker it forked (the one that serves): both are charged.
    fn pids(&self) -> Vec<u32> {
        let master = self.child.id().unwrap_or_default();
        let children = std::fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap_or_default();
        let mut pids: Vec<u32> = children.split_whitespace().filter_map(|pid| pid.parse().ok()).collect();
        pids.push(master);
        pids
    }
}

impl Drop for Nginx {
    /// The master goes with `kill_on_drop`; its worker would outlive it, holding its port, so
    /// it goes first.
    fn drop(&mut self) {
        let master = self.child.id().unwrap_or_default();
        let workers: Vec<String> =
            self.pids().into_iter().filter(|pid| *pid != master).map(|pid| pid.to_string()).collect();
        if !workers.is_empty() {
            let _ = std::process::Command::new("kill").arg("-KILL").args(&workers).status();
        }
    }
}

/// nginx serving `dir` as plain static files: the peer.
async fn start_static_nginx(options: &Options, dir: &Path) -> anyhow::Result<Nginx> {
    start_nginx(options, "", &format!("root {}; location / {{ }}", dir.display())).await
}

/// nginx in front of media-svc at `upstream` as `deploy/nginx` sets it up when given the media
/// directory: `/media/` goes to media-svc, which checks each request and hands the file back
/// with `X-Accel-Redirect`; nginx then sends it from `dir`.
async fn start_fronting_nginx(options: &Options, upstream: &str, dir: &Path) -> anyhow::Result<Nginx> {
    let upstream = format!("upstream xiaowo_media {{ server {upstream}; keepalive 64; keepalive_timeout 20s; }}");
    let server = format!(
        "location ^~ /media/ {{ proxy_pass http://xiaowo_media; proxy_http_version 1.1;\n\
             proxy_set_header Connection \"\"; proxy_set_header X-Xiaowo-Accel-Prefix /xiaowo-media-files/;\n\
             proxy_buffering off; }}\n\
         location ^~ /xiaowo-media-files/ {{ internal; alias {}/; disable_symlinks on from=$document_root; }}",
        dir.display()
    );
    start_nginx(options, &upstream, &server).await
}

async fn start_nginx(options: &Options, http_extra: &str, server: &str) -> anyhow::Result<Nginx> {
    let prefix = tempfile::Builder::new().prefix("xiaowo-bench-nginx-").tempdir()?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let p = prefix.path().display();
    let config = format!(
        "worker_processes 1; daemon off; pid {p}/nginx.pid; error_log {p}/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;\n\
           client_body_temp_path {p}/body; proxy_temp_path {p}/proxy; fastcgi_temp_path {p}/fastcgi;\n\
           uwsgi_temp_path {p}/uwsgi; scgi_temp_path {p}/scgi;\n\
           {http_extra}\n\
           server {{ listen 127.0.0.1:{port}; {server} }} }}\n"
    );
    std::fs::write(prefix.path().join("nginx.conf"), config)?;
    let mut command = match options.server_cpu {
        Some(cpu) => {
            let mut taskset = tokio::process::Command::new("taskset");
            taskset.arg("-c").arg(cpu.to_string()).arg(&options.nginx);
            taskset
        }
        None => tokio::process::Command::new(&options.nginx),
    };
    let child = command
        .arg("-p")
        .arg(prefix.path())
        .arg("-c")
        .arg("nginx.conf")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start nginx")?;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Ok(Nginx { child, port, _prefix: prefix });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("nginx did not start")
}

/// `cat` of the file to /dev/null: how fast this machine reads it out of the page cache.
fn cat_ceiling(path: &Path) -> anyhow::Result<f64> {
    // Once to have it in the page cache, as the servers do.
    std::process::Command::new("cat").arg(path).stdout(std::process::Stdio::null()).status()?;
    let began = Instant::now();
    let status = std::process::Command::new("cat").arg(path).stdout(std::process::Stdio::null()).status()?;
    if !status.success() {
        bail!("cat failed");
    }
    Ok(std::fs::metadata(path)?.len() as f64 / began.elapsed().as_secs_f64())
}

/// Writes `data` to `path` in 8 MiB pieces, syncing after each when asked; bytes per second.
fn raw_write(path: &Path, data: &[u8], sync_each: bool) -> anyhow::Result<f64> {
    let began = Instant::now();
    let mut file = std::fs::File::create(path)?;
    for chunk in data.chunks(CHUNK_BYTES) {
        file.write_all(chunk)?;
        if sync_each {
            file.sync_data()?;
        }
    }
    file.sync_data()?;
    let rate = data.len() as f64 / began.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path)?;
    Ok(rate)
}

struct UploadRun {
    bytes_per_second: f64,
    server_cpu_seconds_per_gb: f64,
    rss_start: u64,
    rss_max: u64,
}

/// One tus upload of `data` in 8 MiB PATCH requests, sampling the server's memory meanwhile.
async fn upload(base: &str, token: &str, data: Bytes, pid: u32) -> anyhow::Result<UploadRun> {
    let client = http_client();
    let rss_start = crate::procstat::rss_bytes(&[pid]);
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = Arc::clone(&sampling);
        tokio::spawn(async move {
            let mut max = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                max = max.max(crate::procstat::rss_bytes(&[pid]));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            max
        })
    };
    let began = Instant::now();
    let cpu_before = crate::procstat::cpu_seconds(&[pid]);
    let create = http::Request::post(format!("{base}/media/uploads"))
        .header("authorization", format!("Bearer {token}"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", data.len().to_string())
        .header("upload-metadata", "filename YmVuY2gubXA0")
        .body(Full::new(Bytes::new()))?;
    let created = client.request(create).await?;
    if created.status() != http::StatusCode::CREATED {
        bail!("upload refused: {}", created.status());
    }
    let location = created.headers().get("location").and_then(|value| value.to_str().ok()).context("no location")?;
    let url = format!("{base}{location}");
    let mut offset = 0;
    while offset < data.len() {
        let end = (offset + CHUNK_BYTES).min(data.len());
        let patch = http::Request::patch(&url)
            .header("authorization", format!("Bearer {token}"))
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset.to_string())
            .header("content-type", "application/offset+octet-stream")
            .body(Full::new(data.slice(offset..end)))?;
        let answer = client.request(patch).await?;
        if answer.status() != http::StatusCode::NO_CONTENT {
            let status = answer.status();
            let body = answer.into_body().collect().await.map(|body| body.to_bytes()).unwrap_or_default();
            bail!("PATCH at {offset}: {status} {}", String::from_utf8_lossy(&body));
        }
        offset = end;
    }
    let seconds = began.elapsed().as_secs_f64();
    let server_cpu_seconds_per_gb = (crate::procstat::cpu_seconds(&[pid]) - cpu_before) / (data.len() as f64 / 1e9);
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let rss_max = sampler.await?;
    Ok(UploadRun { bytes_per_second: data.len() as f64 / seconds, server_cpu_seconds_per_gb, rss_start, rss_max })
}

fn mb(bytes_per_second: f64) -> String {
    format!("{:.0}", bytes_per_second / 1e6)
}

/// Runs both scenarios and returns the Markdown table.
pub async fn run(options: &Options) -> anyhow::Result<String> {
    let sizes = options.sizes();
    let work = tempfile::Builder::new().prefix("xiaowo-bench-media-").tempdir_in(".")?;
    let media_dir = work.path().join("media");
    std::fs::create_dir_all(&media_dir)?;
    let file = media_dir.join("film.mp4");
    make_file(&file, sizes.file_bytes)?;

    let launcher = Launcher { binary: options.server_binary.clone(), cpu: options.server_cpu };
    let media_dir_arg = media_dir.display().to_string();
    let server = launcher
        .start(&[
            "--media-dir",
            &media_dir_arg,
            "--media-url-ttl",
            "1h",
            "--media-max-file-size",
            "4G",
            "--media-quota",
            "8G",
            "--media-min-free-disk",
            "0",
        ])
        .await?;
    let base = server.targets.control_url.clone();
    let pid = server.targets.pids[0];
    let control = channel(&base)?;
    let (token, _) = create_session(&control, "Bench").await?;
    let room_id = create_room(&control, &token, "Bench room").await?;
    let mut media = media_pb::media_service_client::MediaServiceClient::new(control.clone());
    let item = loop {
        let listed = media.list_media_items(bearer(media_pb::ListMediaItemsRequest::default(), &token)).await?;
        if let Some(item) = listed.into_inner().media_items.into_iter().next() {
            break item;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut sync = sync_pb::sync_service_client::SyncServiceClient::new(control.clone());
    let queued = sync_pb::AddQueueItemRequest {
        room_id: room_id.clone(),
        library_item_id: item.media_item_id.clone(),
        title: item.title.clone(),
        ..Default::default()
    };
    sync.add_queue_item(bearer(queued, &token)).await?;
    let asked = media_pb::CreatePlaybackUrlRequest { room_id, media_item_id: item.media_item_id };
    let signed = media.create_playback_url(bearer(asked, &token)).await?.into_inner().url;

    let ceiling = cat_ceiling(&file)?;
    let nginx = start_static_nginx(options, &media_dir).await?;
    let nginx_url = format!("http://127.0.0.1:{}/film.mp4", nginx.port);
    let peer = read_ranges(&nginx_url, None, sizes.file_bytes, sizes.readers, sizes.seconds, &nginx.pids()).await?;
    drop(nginx);
    let ours =
        read_ranges(&format!("{base}{signed}"), Some(&token), sizes.file_bytes, sizes.readers, sizes.seconds, &[pid])
            .await?;
    let upstream = base.trim_start_matches("http://").trim_end_matches('/');
    let front = start_fronting_nginx(options, upstream, &media_dir).await?;
    let mut front_pids = front.pids();
    front_pids.push(pid);
    let front_url = format!("http://127.0.0.1:{}{signed}", front.port);
    let fronted =
        read_ranges(&front_url, Some(&token), sizes.file_bytes, sizes.readers, sizes.seconds, &front_pids).await?;
    drop(front);

    // Upload: the same bytes written plainly first (the ceiling), then through media-svc.
    let mut data = vec![0_u8; usize::try_from(sizes.upload_bytes).unwrap_or(usize::MAX)];
    let header = std::fs::read(&file)?;
    let header_len = header.len().min(data.len()).min(4 * MIB_BYTES);
    data[..header_len].copy_from_slice(&header[..header_len]);
    rand_fill(&mut data[header_len..]);
    let data = Bytes::from(data);
    let raw_plain = raw_write(&work.path().join("raw.bin"), &data, false)?;
    let mut rounds = Vec::new();
    for _ in 0..sizes.upload_rounds {
        let raw_synced = raw_write(&work.path().join("raw-synced.bin"), &data, true)?;
        rounds.push((upload(&base, &token, data.clone(), pid).await?, raw_synced));
    }
    server.stop().await;

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let range_row = |name: &str, run: &RangeRun| {
        let throughput = run.throughput();
        let cpu_per_gb = if run.bytes > 0 { run.server_cpu_seconds / (run.bytes as f64 / 1e9) } else { f64::NAN };
        format!(
            "| {name} | {} | {:.0} | {:.1} | {:.1} | {:.2} | {} |\n",
            mb(throughput),
            run.bytes as f64 / RANGE_BYTES as f64 / run.seconds,
            run.latency.p50_ms,
            run.latency.p99_ms,
            cpu_per_gb,
            run.errors
        )
    };
    let peer_rate = peer.throughput();
    let mut table = String::new();
    table.push_str(&format!("Load average at the end: {} (2 cores shared with other work).\n\n", load.join(" ")));
    table.push_str(&format!(
        "**Range serving**: {} readers, random 1 MiB ranges of one {} MiB file, {:.0} s each, keep-alive HTTP/1.1 on loopback; servers pinned to one core.\n\n",
        sizes.readers,
        sizes.file_bytes / MIB,
        sizes.seconds
    ));
    table.push_str("| server | MB/s | ranges/s | p50 ms | p99 ms | server CPU s per GB | errors |\n|---|---|---|---|---|---|---|\n");
    table.push_str(&range_row("xiaowo up (media-svc, signed URL + session)", &ours));
    table.push_str(&range_row(
        "nginx in front of xiaowo up (media-svc checks, X-Accel-Redirect, nginx sends; CPU of both)",
        &fronted,
    ));
    table.push_str(&range_row("nginx 1.22 (sendfile, peer)", &peer));
    table.push_str(&format!("| `cat` to /dev/null (ceiling, one reader) | {} | | | | | |\n\n", mb(ceiling)));
    table.push_str(&format!(
        "xiaowo / nginx throughput: **{:.0} %** served by media-svc itself, **{:.0} %** with nginx in front sending the files after media-svc's checks (target ≥ 90 %).\n\n",
        ours.throughput() / peer_rate * 100.0,
        fronted.throughput() / peer_rate * 100.0
    ));
    table.push_str(&format!(
        "**Upload**: one {} MiB file in 8 MiB tus PATCH requests on loopback, {} time(s), each right after the synced write of the same bytes (its ceiling).\n\n",
        sizes.upload_bytes / MIB,
        rounds.len()
    ));
    table.push_str("| round | xiaowo up MB/s (tus, synced per request, probed at the end) | raw local write MB/s, 8 MiB pieces synced each (ceiling, same durability) | xiaowo / ceiling | server CPU s per GB |\n|---|---|---|---|---|\n");
    let mut ratios = Vec::new();
    for (index, (uploaded, raw_synced)) in rounds.iter().enumerate() {
        let ratio = uploaded.bytes_per_second / raw_synced * 100.0;
        ratios.push(ratio);
        table.push_str(&format!(
            "| {} | {} | {} | {ratio:.0} % | {:.2} |\n",
            index + 1,
            mb(uploaded.bytes_per_second),
            mb(*raw_synced),
            uploaded.server_cpu_seconds_per_gb
        ));
    }
    ratios.sort_by(f64::total_cmp);
    let rss_start = rounds.first().map_or(0, |(uploaded, _)| uploaded.rss_start);
    let rss_max = rounds.iter().map(|(uploaded, _)| uploaded.rss_max).max().unwrap_or(0);
    table.push_str(&format!(
        "\nRaw local write, 8 MiB pieces, synced once at the end (before the rounds): {} MB/s.\n\n",
        mb(raw_plain)
    ));
    table.push_str(&format!(
        "xiaowo / synced write: median **{:.0} %** (target ≥ 70 %). Server RSS {:.0} MB before the first upload, at most {:.0} MB during the uploads.\n",
        ratios[ratios.len() / 2],
        rss_start as f64 / 1e6,
        rss_max as f64 / 1e6
    ));
    if ours.errors > 0 || peer.errors > 0 || fronted.errors > 0 {
        bail!(
            "range requests failed: xiaowo {}, nginx {}, nginx in front {}\n{table}",
            ours.errors,
            peer.errors,
            fronted.errors
        );
    }
    if ours.bytes == 0 || peer.bytes == 0 || fronted.bytes == 0 {
        bail!("no range was read\n{table}");
    }
    Ok(table)
}
