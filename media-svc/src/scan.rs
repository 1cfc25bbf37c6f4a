//! Indexing the media directory: at start and every scan interval, files with a media file
//! name are compared with the library by size and modification time. New ones are probed and
//! added, changed ones probed again, removed ones dropped. Hidden entries (media-svc's own
//! `.xiaowo/` among them) are skipped, and a symbolic link is followed only when it leads to a
//! file inside the media directory. Polling, not inotify: it works the same on network mounts,
//! and a library changes rarely.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::library::{Library, remove_quietly};
use crate::model::{MediaItem, Source};
use crate::store::IndexedFile;

/// File name extensions worth probing.
const MEDIA_EXTENSIONS: &[&str] = &[
    "mp4", "m4v", "mov", "webm", "mkv", "avi", "mp3", "m4a", "aac", "ogg", "ogv", "oga", "opus", "wav", "flac", "ts",
    "m2ts", "mts", "mpg", "mpeg", "wmv", "flv", "3gp",
];
/// Deepest folder nesting followed.
const MAX_DEPTH: usize = 16;

/// A media file found on disk.
#[derive(Debug, Clone)]
struct Found {
    relative_path: String,
    absolute: PathBuf,
    size_bytes: i64,
    modified_ms: i64,
}

/// What one scan changed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ScanReport {
    pub added: usize,
    pub updated: usize,
    pub removed: usize,
}

/// A file's modification time in Unix milliseconds (0 when unknown).
pub(crate) fn modified_ms(meta: &std::fs::Metadata) -> i64 {
    meta.modified()
        .ok()
        .and_then(|modified| modified.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}

fn is_media_name(path: &Path) -> bool {
    path.extension()
        .and_then(|ext| ext.to_str())
        .is_some_and(|ext| MEDIA_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()))
}

/// Every media file under `root` (canonical).
fn walk(root: &Path) -> std::io::Result<Vec<Found>> {
    let mut found = Vec::new();
    let mut pending = vec![(root.to_path_buf(), 0_usize)];
    // The root itself must be readable: an unmounted or vanished directory is an error, not an
    // empty library (which would remove every item).
    std::fs::read_dir(root)?;
    while let Some((dir, depth)) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() {
                if depth < MAX_DEPTH {
                    pending.push((path, depth + 1));
                }
                continue;
            }
            if !is_media_name(&path) {
                continue;
            }
            let meta = if meta.file_type().is_symlink() {
                // Followed only into the media directory, and only to files (no loops).
                match path.canonicalize() {
                    Ok(target) if target.starts_with(root) => match std::fs::metadata(&target) {
                        Ok(meta) if meta.is_file() => meta,
                        _ => continue,
                    },
                    _ => {
                        tracing::warn!(path = %path.display(), "symbolic link out of the media directory ignored");
                        continue;
                    }
                }
            } else if meta.is_file() {
                meta
            } else {
                continue;
            };
            let Ok(relative) = path.strip_prefix(root) else { continue };
            let Some(relative_path) = relative.to_str().map(str::to_owned) else {
                tracing::warn!(path = %path.display(), "file name is not UTF-8; ignored");
                continue;
            };
            found.push(Found {
                relative_path,
                absolute: path,
                size_bytes: i64::try_from(meta.len()).unwrap_or(i64::MAX),
                modified_ms: modified_ms(&meta),
            });
        }
    }
    Ok(found)
}

fn title_of(relative_path: &str) -> String {
    let name = relative_path.rsplit('/').next().unwrap_or(relative_path);
    let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
    let title: String = stem.trim().chars().filter(|c| !c.is_control()).take(200).collect();
    if title.is_empty() { name.to_owned() } else { title }
}

impl Library {
    /// Brings the library in line with the media directory.
    ///
    /// # Errors
    /// When the media directory cannot be read, or the database fails.
    pub async fn scan(self: &Arc<Self>) -> Result<ScanReport, Error> {
        let root = self.dirs.root.clone();
        let found = tokio::task::spawn_blocking(move || walk(&root))
            .await
            .map_err(|error| Error::Io(std::io::Error::other(error)))??;
        let indexed: HashMap<String, IndexedFile> =
            self.store.indexed_files().await?.into_iter().map(|file| (file.relative_path.clone(), file)).collect();
        let mut report = ScanReport::default();

        let present: std::collections::HashSet<&str> = found.iter().map(|file| file.relative_path.as_str()).collect();
        for file in indexed.values().filter(|file| !present.contains(file.relative_path.as_str())) {
            let _placing = self.placing.lock().await;
            // Looked at again under the lock: an upload may have just been placed there.
            if self.dirs.resolve_inside(&file.relative_path).is_some() {
                continue;
            }
            if let Some(item) = self.store.find_item(&file.media_item_id).await? {
                match self.remove_item(&item).await {
                    Ok(()) | Err(Error::NotFound) => {}
                    Err(error) => return Err(error),
                }
                tracing::info!(path = %file.relative_path, "file gone from the media directory; item removed");
                report.removed += 1;
            }
        }

        for file in &found {
            match indexed.get(&file.relative_path) {
                Some(known) if known.size_bytes == file.size_bytes && known.modified_ms == file.modified_ms => {}
                Some(known) => {
                    if self.reprobe(known, file).await? {
                        report.updated += 1;
                    }
                }
                None => {
                    if self.add_found(file).await? {
                        report.added += 1;
                    }
                }
            }
        }
        if let Ok(mut not_media) = self.not_media.lock() {
            not_media.retain(|path, _| present.contains(path.as_str()));
        }
        self.metrics.scans.inc();
        self.update_gauges().await;
        if report != ScanReport::default() {
            tracing::info!(
                added = report.added,
                updated = report.updated,
                removed = report.removed,
                "media directory scanned"
            );
        }
        Ok(report)
    }

    fn known_not_media(&self, file: &Found) -> bool {
        self.not_media
            .lock()
            .is_ok_and(|not_media| not_media.get(&file.relative_path) == Some(&(file.size_bytes, file.modified_ms)))
    }

    fn remember_not_media(&self, file: &Found) {
        if let Ok(mut not_media) = self.not_media.lock() {
            not_media.insert(file.relative_path.clone(), (file.size_bytes, file.modified_ms));
        }
    }

    async fn add_found(self: &Arc<Self>, file: &Found) -> Result<bool, Error> {
        if self.known_not_media(file) {
            return Ok(false);
        }
        let info = match self.probe(&file.absolute).await {
            Ok(info) => info,
            Err(error @ (Error::NotMedia | Error::Damaged(_) | Error::ProbeTimeout)) => {
                // The operator's file: never deleted, only left out until it changes.
                tracing::info!(path = %file.relative_path, %error, "not indexed");
                self.remember_not_media(file);
                return Ok(false);
            }
            Err(error) => return Err(error),
        };
        let now = self.now_ms();
        let has_video = !info.video_codec.is_empty();
        let item = MediaItem {
            media_item_id: uuid::Uuid::new_v4().to_string(),
            title: title_of(&file.relative_path),
            relative_path: file.relative_path.clone(),
            size_bytes: file.size_bytes,
            modified_ms: file.modified_ms,
            info,
            source: Source::Directory,
            added_by_user_id: String::new(),
            room_id: String::new(),
            has_thumbnail: false,
            created_at: now,
            updated_at: now,
        };
        {
            let _placing = self.placing.lock().await;
            if self.store.path_taken(&item.relative_path).await? {
                return Ok(false);
            }
            self.store.insert_item(&item).await?;
        }
        tracing::info!(path = %item.relative_path, media_item_id = %item.media_item_id, "indexed");
        self.queue_conversion(&item).await;
        self.make_thumbnail(&item.media_item_id, &file.absolute, item.info.duration_ms, has_video).await;
        self.extract_subtitles(&item.media_item_id, &file.absolute).await;
        Ok(true)
    }

    async fn reprobe(self: &Arc<Self>, known: &IndexedFile, file: &Found) -> Result<bool, Error> {
        match self.probe(&file.absolute).await {
            Ok(info) => {
                let has_video = !info.video_codec.is_empty();
                let now = self.now_ms();
                self.store.update_probe(&known.media_item_id, file.size_bytes, file.modified_ms, &info, now).await?;
                self.forget_served(&known.media_item_id);
                remove_quietly(&self.dirs.thumbnail_path(&known.media_item_id)).await;
                self.make_thumbnail(&known.media_item_id, &file.absolute, info.duration_ms, has_video).await;
                self.extract_subtitles(&known.media_item_id, &file.absolute).await;
                tracing::info!(path = %file.relative_path, "changed file probed again");
                if let Some(item) = self.store.find_item(&known.media_item_id).await? {
                    self.restart_conversion(&item).await;
                }
                Ok(true)
            }
            // A file that is still being written (or was replaced by something else) is left as
            // it was until the next scan sees it settled.
            Err(Error::NotMedia | Error::Damaged(_) | Error::ProbeTimeout) => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Scans every `interval` until `shutdown`; the first scan runs at once.
    pub async fn run_scanner(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                result = self.scan() => if let Err(error) = result {
                    tracing::warn!(%error, dir = %self.dirs.root.display(), "scanning the media directory failed");
                },
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }
}
