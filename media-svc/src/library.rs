//! The library: who sees which item, renaming and deleting, playback URLs, quotas, and where
//! everything lives on disk. Uploads (`uploads.rs`) and the directory scan (`scan.rs`) add to
//! it; serving (`http.rs`) reads from it.
//!
//! On disk, under the media directory: the operator's own files anywhere, finished uploads in
//! `uploads/`, and media-svc's working files in `.xiaowo/` (unfinished uploads, thumbnails),
//! which the scan never indexes. Files are only ever found through the database's relative
//! path, resolved and checked to stay inside the media directory.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts};
use svc_kit::auth::Caller;
use svc_kit::clock::{SharedClock, millis};
use svc_kit::id::{RoomId, UserId};
use svc_kit::peer::room::RoomAccessClient;
use svc_kit::status::Violation;
use svc_kit::text::TextRule;

use crate::Error;
use crate::config::Config;
use crate::model::{ConversionState, MediaItem, Playability, Source, Upload, Viewer};
use crate::probe::Prober;
use crate::signing::UrlSigner;
use crate::store::{ItemQuery, Store};

/// Titles: what people type, bounded.
pub const TITLE: TextRule = TextRule { field: "title", min_chars: 1, max_chars: 200, allow_newline: false };
const QUERY_MAX_CHARS: usize = 100;
const DEFAULT_PAGE_SIZE: u64 = 50;
const MAX_PAGE_SIZE: u64 = 100;
const MAX_ADMIN_PAGE_SIZE: u64 = 500;

/// Whether the room's timeline or queue holds a library item (asked of sync-svc with the
/// caller's own credentials, so that sync-svc applies its own membership rule too).
pub trait RoomQueue: Send + Sync + std::fmt::Debug {
    /// `Ok(true)` when room `room_id` plays or has queued `media_item_id`.
    fn holds<'a>(
        &'a self,
        room_id: &'a RoomId,
        media_item_id: &'a str,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<bool, Error>> + Send + 'a>>;
}

/// Where media-svc keeps things under the media directory.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// The media directory, canonical (no symlinks, absolute).
    pub root: PathBuf,
    /// Unfinished uploads (`.xiaowo/uploads`).
    pub partial: PathBuf,
    /// Thumbnails (`.xiaowo/thumbnails`).
    pub thumbnails: PathBuf,
    /// Where finished uploads are placed (`uploads/`).
    pub uploaded: PathBuf,
}

/// The MIME type of an HLS playlist.
pub const HLS_CONTENT_TYPE: &str = "application/vnd.apple.mpegurl";

/// The folder under the media directory that the scan skips: media-svc's working files.
pub const WORK_DIR: &str = ".xiaowo";
/// The folder of finished uploads, relative to the media directory.
pub const UPLOADED_DIR: &str = "uploads";

impl Dirs {
    /// Creates the folders if missing.
    ///
    /// # Errors
    /// When the media directory cannot be created or resolved.
    pub fn prepare(media_dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(media_dir)?;
        let root = media_dir.canonicalize()?;
        let dirs = Self {
            partial: root.join(WORK_DIR).join("uploads"),
            thumbnails: root.join(WORK_DIR).join("thumbnails"),
            uploaded: root.join(UPLOADED_DIR),
            root,
        };
        std::fs::create_dir_all(&dirs.partial)?;
        std::fs::create_dir_all(&dirs.thumbnails)?;
        std::fs::create_dir_all(&dirs.uploaded)?;
        Ok(dirs)
    }

    #[must_use]
    pub fn part_path(&self, upload_id: &str) -> PathBuf {
        self.partial.join(format!("{upload_id}.part"))
    }

    #[must_use]
    pub fn thumbnail_path(&self, media_item_id: &str) -> PathBuf {
        self.thumbnails.join(format!("{media_item_id}.jpg"))
    }

    /// The file at `relative_path`, only when it resolves (symlinks followed) to a regular file
    /// inside the media directory: `..`, absolute paths and links that lead out are refused.
    #[must_use]
    pub fn resolve_inside(&self, relative_path: &str) -> Option<PathBuf> {
        let relative = Path::new(relative_path);
        let plain = relative.components().all(|part| matches!(part, std::path::Component::Normal(_)));
        if !plain {
            return None;
        }
        let resolved = self.root.join(relative).canonicalize().ok()?;
        (resolved.starts_with(&self.root) && resolved.is_file()).then_some(resolved)
    }
}

/// Bytes free for unprivileged writers on the disk holding `path`.
///
/// # Errors
/// When the file system cannot be asked.
pub fn free_bytes(path: &Path) -> std::io::Result<u64> {
    let stats = rustix::fs::statvfs(path)?;
    Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// The limits uploads are held to.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub quota_bytes: u64,
    pub max_concurrent_uploads: u32,
    pub min_free_disk_bytes: u64,
    pub upload_expiry: Duration,
    pub url_ttl: Duration,
    /// What a subtitle file may be.
    pub subtitles: crate::subtitles::Limits,
}

impl Limits {
    #[must_use]
    pub fn from_config(config: &Config) -> Self {
        Self {
            max_file_bytes: config.max_file_bytes,
            quota_bytes: config.quota_bytes,
            max_concurrent_uploads: config.max_concurrent_uploads,
            min_free_disk_bytes: config.min_free_disk_bytes,
            upload_expiry: config.upload_expiry,
            url_ttl: config.url_ttl,
            subtitles: crate::subtitles::Limits {
                max_bytes: usize::try_from(config.subtitle_max_bytes).unwrap_or(usize::MAX),
                max_cues: config.subtitle_max_cues,
            },
        }
    }
}

/// media-svc's counters and gauges (`xiaowo_media_*`).
#[derive(Debug, Clone)]
pub struct MediaMetrics {
    pub items: IntGauge,
    pub library_bytes: IntGauge,
    pub upload_bytes: IntCounter,
    pub uploads: IntCounterVec,
    pub patches_in_flight: IntGauge,
    pub probe_seconds: Histogram,
    pub http_requests: IntCounterVec,
    pub url_refusals: IntCounterVec,
    pub scans: IntCounter,
}

impl MediaMetrics {
    /// Registers media-svc's metrics in `registry`.
    ///
    /// # Panics
    /// Never: the names and labels are fixed.
    #[must_use]
    #[allow(clippy::expect_used)]
    pub fn new(registry: &prometheus::Registry) -> Self {
        let metrics = Self {
            items: IntGauge::new("xiaowo_media_items", "Items in the media library.").expect("valid metric"),
            library_bytes: IntGauge::new("xiaowo_media_library_bytes", "Bytes of the media library's files.")
                .expect("valid metric"),
            upload_bytes: IntCounter::new("xiaowo_media_upload_bytes_total", "Upload bytes received and stored.")
                .expect("valid metric"),
            uploads: IntCounterVec::new(
                Opts::new(
                    "xiaowo_media_uploads_total",
                    "Uploads by outcome: created, completed, refused (by reason), cancelled, expired.",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            patches_in_flight: IntGauge::new(
                "xiaowo_media_upload_requests_in_flight",
                "Upload requests (tus PATCH) receiving data now.",
            )
            .expect("valid metric"),
            probe_seconds: Histogram::with_opts(
                HistogramOpts::new("xiaowo_media_probe_duration_seconds", "Time ffprobe took per file.")
                    .buckets(vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]),
            )
            .expect("valid metric"),
            http_requests: IntCounterVec::new(
                Opts::new("xiaowo_media_http_requests_total", "Plain HTTP requests to media-svc by route and status."),
                &["route", "code"],
            )
            .expect("valid metric"),
            url_refusals: IntCounterVec::new(
                Opts::new(
                    "xiaowo_media_url_refusals_total",
                    "Playback URLs refused: missing, forged, expired, other user, no session.",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            scans: IntCounter::new("xiaowo_media_scans_total", "Completed scans of the media directory.")
                .expect("valid metric"),
        };
        svc_kit::metrics::register(registry, &metrics.items);
        svc_kit::metrics::register(registry, &metrics.library_bytes);
        svc_kit::metrics::register(registry, &metrics.upload_bytes);
        svc_kit::metrics::register(registry, &metrics.uploads);
        svc_kit::metrics::register(registry, &metrics.patches_in_flight);
        svc_kit::metrics::register(registry, &metrics.probe_seconds);
        svc_kit::metrics::register(registry, &metrics.http_requests);
        svc_kit::metrics::register(registry, &metrics.url_refusals);
        svc_kit::metrics::register(registry, &metrics.scans);
        metrics
    }
}

/// A playback URL for one user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlaybackUrl {
    pub url: String,
    /// Unix milliseconds.
    pub expires_at: i64,
    pub content_type: String,
}

/// What an operator sees of the whole library.
#[derive(Debug, Clone)]
pub struct LibraryOverview {
    pub items: Vec<MediaItem>,
    pub next_page_token: Option<String>,
    pub total_items: u64,
    pub total_bytes: u64,
    pub uploads: Vec<Upload>,
}

/// The library and everything that changes it.
#[derive(Debug)]
pub struct Library {
    pub(crate) store: Store,
    pub(crate) clock: SharedClock,
    pub(crate) dirs: Dirs,
    pub(crate) prober: Prober,
    pub(crate) limits: Limits,
    pub(crate) signer: UrlSigner,
    pub(crate) access: Arc<RoomAccessClient>,
    pub(crate) queue: Arc<dyn RoomQueue>,
    pub(crate) metrics: MediaMetrics,
    /// Held while an item's file and row come or go together (placing an upload, the scan's
    /// inserts and removals), so that neither sees the other's half-done change.
    pub(crate) placing: tokio::sync::Mutex<()>,
    /// Uploads receiving data in this process: a second PATCH of the same one waits its turn.
    pub(crate) receiving: Mutex<std::collections::HashSet<String>>,
    /// Directory files that are not media, with the size and time they were probed at, so the
    /// scan does not probe them again until they change.
    pub(crate) not_media: Mutex<HashMap<String, (i64, i64)>>,
    /// Files recently served, by item: a player asks for range after range of one file, and each
    /// would otherwise cost a database read and a path resolution.
    pub(crate) served: Mutex<HashMap<String, ServedFile>>,
    /// The conversion queue (`convert.rs`).
    pub(crate) conversions: crate::convert::Conversions,
}

/// Where an item's file is and how it is served, as found a moment ago.
#[derive(Debug, Clone)]
pub(crate) struct ServedFile {
    pub path: PathBuf,
    pub content_type: String,
    found_at: std::time::Instant,
}

/// How long a found file is reused without looking again.
const SERVED_FILE_TTL: Duration = Duration::from_secs(5);
/// Entries above which stale ones are swept.
const SERVED_FILE_SWEEP_AT: usize = 1024;

fn page_size(requested: i32, max: u64) -> u64 {
    match u64::try_from(requested) {
        Ok(0) | Err(_) => DEFAULT_PAGE_SIZE.min(max),
        Ok(size) => size.min(max),
    }
}

fn parse_token(token: &str) -> Result<Option<(i64, String)>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    let invalid = || Error::from(Violation::new("page_token", "is not a token this server gave"));
    let (created_at, media_item_id) = token.split_once(':').ok_or_else(invalid)?;
    let created_at = created_at.parse().map_err(|_| invalid())?;
    Ok(Some((created_at, media_item_id.to_owned())))
}

fn query_words(query: &str) -> Result<Vec<String>, Error> {
    if query.chars().count() > QUERY_MAX_CHARS {
        return Err(Violation::new("query", format!("must have at most {QUERY_MAX_CHARS} characters")).into());
    }
    if query.chars().any(char::is_control) {
        return Err(Violation::new("query", "must not contain control characters").into());
    }
    Ok(query.split_whitespace().map(str::to_lowercase).collect())
}

/// Checks that `id` looks like an id this service gives (a UUID), naming `field` otherwise.
pub(crate) fn check_id(field: &str, id: &str) -> Result<(), Error> {
    uuid::Uuid::try_parse(id).map(|_| ()).map_err(|_| Violation::new(field, "must be a media item id").into())
}

impl Library {
    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Refreshes the library gauges.
    pub(crate) async fn update_gauges(&self) {
        if let Ok((items, bytes)) = self.store.library_totals().await {
            self.metrics.items.set(i64::try_from(items).unwrap_or(i64::MAX));
            self.metrics.library_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
    }

    /// The viewer a person is, having checked with room-svc that they belong to `room_id`
    /// when they name one.
    pub(crate) async fn viewer(&self, caller: &Caller, room_id: Option<&RoomId>) -> Result<Viewer, Error> {
        let Some(room_id) = room_id else {
            return Ok(Viewer::Person { user_id: caller.user_id.clone(), member_of: None });
        };
        let access = self.access.check(room_id, &caller.user_id).await?;
        if !access.is_member() {
            return Err(Error::NotMember);
        }
        Ok(Viewer::Person { user_id: caller.user_id.clone(), member_of: Some(room_id.clone()) })
    }

    pub(crate) fn may_see(viewer: &Viewer, item: &MediaItem) -> bool {
        match viewer {
            Viewer::Admin => true,
            Viewer::Person { user_id, member_of } => {
                item.source == Source::Directory
                    || item.added_by_user_id == user_id.as_str()
                    || member_of.as_ref().is_some_and(|room| item.room_id == room.as_str())
            }
        }
    }

    /// Items `caller` may see, newest first.
    ///
    /// # Errors
    /// Invalid arguments, access errors, database failures.
    pub async fn list(
        &self,
        caller: &Caller,
        room_id: Option<&RoomId>,
        query: &str,
        requested_page_size: i32,
        page_token: &str,
    ) -> Result<(Vec<MediaItem>, Option<String>), Error> {
        let words = query_words(query)?;
        let before = parse_token(page_token)?;
        let viewer = self.viewer(caller, room_id).await?;
        self.page(viewer, words, before, page_size(requested_page_size, MAX_PAGE_SIZE)).await
    }

    async fn page(
        &self,
        viewer: Viewer,
        words: Vec<String>,
        before: Option<(i64, String)>,
        limit: u64,
    ) -> Result<(Vec<MediaItem>, Option<String>), Error> {
        let items = self.store.list_items(&ItemQuery { viewer, words, before, limit: limit + 1 }).await?;
        let mut items = items;
        let next = if items.len() > usize::try_from(limit).unwrap_or(usize::MAX) {
            items.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            items.last().map(|last| format!("{}:{}", last.created_at, last.media_item_id))
        } else {
            None
        };
        Ok((items, next))
    }

    /// One item `caller` may see.
    ///
    /// # Errors
    /// `NotFound` for an unknown item or one the caller may not see; access errors.
    pub async fn get(
        &self,
        caller: &Caller,
        room_id: Option<&RoomId>,
        media_item_id: &str,
    ) -> Result<MediaItem, Error> {
        check_id("media_item_id", media_item_id)?;
        let viewer = self.viewer(caller, room_id).await?;
        let item = self.store.find_item(media_item_id).await?.ok_or(Error::NotFound)?;
        if Self::may_see(&viewer, &item) { Ok(item) } else { Err(Error::NotFound) }
    }

    /// The item `viewer` may change: their own upload, or any item for an operator.
    async fn changeable(&self, viewer: &Viewer, media_item_id: &str) -> Result<MediaItem, Error> {
        check_id("media_item_id", media_item_id)?;
        let item = self.store.find_item(media_item_id).await?.ok_or(Error::NotFound)?;
        if !Self::may_see(viewer, &item) {
            return Err(Error::NotFound);
        }
        match viewer {
            Viewer::Admin => Ok(item),
            Viewer::Person { user_id, .. }
                if item.source == Source::Upload && item.added_by_user_id == user_id.as_str() =>
            {
                Ok(item)
            }
            Viewer::Person { .. } => Err(Error::NotOwner),
        }
    }

    /// Renames an item.
    ///
    /// # Errors
    /// An invalid title, `NotFound`, `NotOwner`, database failures.
    pub async fn rename(&self, viewer: &Viewer, media_item_id: &str, title: &str) -> Result<MediaItem, Error> {
        let title = TITLE.check(title)?;
        self.changeable(viewer, media_item_id).await?;
        if !self.store.rename(media_item_id, &title, self.now_ms()).await? {
            return Err(Error::NotFound);
        }
        tracing::info!(%media_item_id, "media item renamed");
        self.store.find_item(media_item_id).await?.ok_or(Error::NotFound)
    }

    /// Deletes an item: its row, then its file and thumbnail.
    ///
    /// # Errors
    /// `NotFound`, `NotOwner`, database failures.
    pub async fn delete(&self, viewer: &Viewer, media_item_id: &str) -> Result<(), Error> {
        let item = self.changeable(viewer, media_item_id).await?;
        let _placing = self.placing.lock().await;
        self.remove_item(&item).await?;
        tracing::info!(%media_item_id, path = %item.relative_path, "media item deleted");
        Ok(())
    }

    /// The file of an item to serve: from the database, resolved inside the media directory,
    /// reused for a few seconds.
    ///
    /// # Errors
    /// `NotFound` for an unknown item or a file that is missing or leads out of the directory.
    pub(crate) async fn served_file(&self, media_item_id: &str) -> Result<ServedFile, Error> {
        let now = std::time::Instant::now();
        if let Ok(served) = self.served.lock()
            && let Some(file) = served.get(media_item_id)
            && now.saturating_duration_since(file.found_at) < SERVED_FILE_TTL
        {
            return Ok(file.clone());
        }
        let item = self.store.find_item(media_item_id).await?.ok_or(Error::NotFound)?;
        let path = self.dirs.resolve_inside(&item.relative_path).ok_or_else(|| {
            tracing::warn!(%media_item_id, path = %item.relative_path, "file missing or leads out of the media directory");
            Error::NotFound
        })?;
        let file = ServedFile { path, content_type: item.info.content_type, found_at: now };
        if let Ok(mut served) = self.served.lock() {
            if served.len() >= SERVED_FILE_SWEEP_AT {
                served.retain(|_, file| now.saturating_duration_since(file.found_at) < SERVED_FILE_TTL);
            }
            served.insert(media_item_id.to_owned(), file.clone());
        }
        Ok(file)
    }

    /// Forgets where an item's file was (it changed or went).
    pub(crate) fn forget_served(&self, media_item_id: &str) {
        if let Ok(mut served) = self.served.lock() {
            served.remove(media_item_id);
        }
    }

    /// Removes an item's row, file and thumbnail (the caller holds `placing`).
    pub(crate) async fn remove_item(&self, item: &MediaItem) -> Result<(), Error> {
        self.forget_served(&item.media_item_id);
        if !self.store.delete_item(&item.media_item_id).await? {
            return Err(Error::NotFound);
        }
        // Only a file that resolves inside the media directory is removed, never what a link
        // points to elsewhere.
        if let Some(path) = self.dirs.resolve_inside(&item.relative_path) {
            remove_quietly(&path).await;
        }
        remove_quietly(&self.dirs.thumbnail_path(&item.media_item_id)).await;
        // Its conversion row went with the item's; its ffmpeg and files go now.
        self.stop_conversion(&item.media_item_id).await;
        self.update_gauges().await;
        Ok(())
    }

    /// A URL that plays the item for `caller` in `room_id`, after room-svc confirms membership
    /// and sync-svc that the room plays or queues the item.
    ///
    /// # Errors
    /// `NotMember`, `NotInRoom`, `NotFound`, `NeedsConversion` (not playable yet),
    /// `ConversionFailed`, peer and database failures.
    pub async fn playback_url(
        &self,
        caller: &Caller,
        token: &str,
        room_id: &RoomId,
        media_item_id: &str,
    ) -> Result<PlaybackUrl, Error> {
        check_id("media_item_id", media_item_id)?;
        let access = self.access.check(room_id, &caller.user_id).await?;
        if !access.is_member() {
            return Err(Error::NotMember);
        }
        if !self.queue.holds(room_id, media_item_id, token).await? {
            return Err(Error::NotInRoom);
        }
        let item = self.store.find_item(media_item_id).await?.ok_or(Error::NotFound)?;
        let expires_at = self.now_ms().saturating_add(millis(self.limits.url_ttl));
        let expires_s = expires_at.div_euclid(1000);
        let user_id = caller.user_id.as_str();
        let (url, content_type) = if item.info.playability == Playability::Browser {
            (self.signer.url(media_item_id, expires_s, user_id), item.info.content_type)
        } else {
            // Its HLS conversion plays from the moment the start is ready.
            match self.store.find_conversion(media_item_id).await? {
                Some(conversion) if conversion.state.is_playable() => {
                    (self.signer.hls_url(media_item_id, expires_s, user_id), HLS_CONTENT_TYPE.to_owned())
                }
                Some(conversion) if conversion.state == ConversionState::Failed => {
                    return Err(Error::ConversionFailed(conversion.error));
                }
                _ => return Err(Error::NeedsConversion),
            }
        };
        Ok(PlaybackUrl { url, expires_at: expires_s.saturating_mul(1000), content_type })
    }

    /// Bytes the user keeps and their unfinished uploads.
    ///
    /// # Errors
    /// Database failures.
    pub async fn usage(&self, user_id: &UserId) -> Result<(u64, u64), Error> {
        let user_id = user_id.as_str();
        Ok((self.store.bytes_of_user(user_id).await?, self.store.count_uploads(user_id).await?))
    }

    /// The limits uploads are held to.
    #[must_use]
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Every item for an operator, with totals and unfinished uploads.
    ///
    /// # Errors
    /// Invalid arguments, database failures.
    pub async fn overview(
        &self,
        query: &str,
        requested_page_size: i32,
        page_token: &str,
    ) -> Result<LibraryOverview, Error> {
        let words = query_words(query)?;
        let before = parse_token(page_token)?;
        let (items, next_page_token) =
            self.page(Viewer::Admin, words, before, page_size(requested_page_size, MAX_ADMIN_PAGE_SIZE)).await?;
        let (total_items, total_bytes) = self.store.library_totals().await?;
        let uploads = self.store.list_uploads(MAX_ADMIN_PAGE_SIZE).await?;
        Ok(LibraryOverview { items, next_page_token, total_items, total_bytes, uploads })
    }

    /// Makes the item's thumbnail and records it; failures are logged (an item without one
    /// still plays).
    pub(crate) async fn make_thumbnail(&self, media_item_id: &str, path: &Path, duration_ms: i64, has_video: bool) {
        if !has_video {
            return;
        }
        let out = self.dirs.thumbnail_path(media_item_id);
        match self.prober.thumbnail(path, duration_ms, &out).await {
            Ok(()) => {
                if let Err(error) = self.store.set_thumbnail(media_item_id, true, self.now_ms()).await {
                    tracing::warn!(%media_item_id, %error, "recording the thumbnail failed");
                }
            }
            Err(error) => tracing::warn!(%media_item_id, %error, "no thumbnail"),
        }
    }

    /// Probes `path`, timing it.
    pub(crate) async fn probe(&self, path: &Path) -> Result<crate::model::MediaInfo, Error> {
        let timer = self.metrics.probe_seconds.start_timer();
        let result = self.prober.probe(path).await;
        timer.observe_duration();
        result
    }
}

/// Removes a file, logging anything but "already gone".
pub(crate) async fn remove_quietly(path: &Path) {
    if let Err(error) = tokio::fs::remove_file(path).await
        && error.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), %error, "cannot remove file");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_outside_the_media_directory_are_refused() {
        let temp = tempfile::tempdir().unwrap();
        let dirs = Dirs::prepare(&temp.path().join("media")).unwrap();
        std::fs::write(dirs.root.join("inside.mp4"), b"x").unwrap();
        std::fs::write(temp.path().join("outside.mp4"), b"x").unwrap();
        std::os::unix::fs::symlink(temp.path().join("outside.mp4"), dirs.root.join("link.mp4")).unwrap();
        std::os::unix::fs::symlink(dirs.root.join("inside.mp4"), dirs.root.join("good-link.mp4")).unwrap();
        assert!(dirs.resolve_inside("inside.mp4").is_some());
        assert!(dirs.resolve_inside("good-link.mp4").is_some());
        assert!(dirs.resolve_inside("link.mp4").is_none());
        assert!(dirs.resolve_inside("../outside.mp4").is_none());
        assert!(dirs.resolve_inside("/etc/passwd").is_none());
        assert!(dirs.resolve_inside("uploads").is_none(), "a directory is not a file");
    }
}
