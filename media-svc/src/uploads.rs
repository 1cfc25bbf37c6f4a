//! Resumable uploads (the tus protocol's model, without its HTTP, which is in `http.rs`): an
//! upload is created with its length after every limit is checked, receives bytes at the
//! offset stored so far (synced to disk before the offset is recorded, so a crash or a cut
//! connection loses nothing acknowledged), and once complete is probed: media is placed in the
//! library, anything else is deleted. Unfinished uploads expire.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use svc_kit::auth::Caller;
use svc_kit::clock::millis;
use svc_kit::id::RoomId;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::library::{Library, UPLOADED_DIR, check_id, free_bytes, remove_quietly};
use crate::model::{MediaItem, Source, Upload};

/// Bytes received between syncs of the file and records of the offset, within one request.
const SYNC_EVERY_BYTES: u64 = 16 << 20;
/// Received bytes collected before one write to the file (and the start of its writeback).
const WRITE_BATCH_BYTES: usize = 2 << 20;
/// Longest file name kept from the browser.
const MAX_FILE_NAME_CHARS: usize = 200;
/// Expired uploads removed per janitor round.
const EXPIRE_BATCH: u64 = 100;

/// What a new upload declares.
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub length_bytes: u64,
    /// The browser's name for the file (tus metadata `filename`).
    pub file_name: String,
    /// The room it is uploaded in, if any.
    pub room_id: Option<RoomId>,
}

/// The state after a request's bytes were stored.
#[derive(Debug, Clone)]
pub struct Appended {
    pub offset_bytes: u64,
    pub expires_at: i64,
    /// The library item, once the upload is complete and was accepted.
    pub item: Option<MediaItem>,
}

/// An upload's part file, written in batches on the blocking pool: the received buffers go to
/// the file as they are (no copy into a write buffer first), one batch is written while the
/// next is received (receiving waits only when a second batch is ready before the first is
/// written, so at most two are held), and each batch written is handed to the disk at once
/// (`POSIX_FADV_DONTNEED` starts its writeback), so that the sync that ends a request waits for
/// the last batch rather than for all of them, and uploads do not crowd the page cache.
struct PartWriter {
    /// The file, here between writes.
    file: Option<std::fs::File>,
    /// The write under way, which has the file until it ends.
    writing: Option<tokio::task::JoinHandle<std::io::Result<std::fs::File>>>,
    pending: Vec<Bytes>,
    pending_bytes: usize,
}

fn blocking_failed(error: tokio::task::JoinError) -> Error {
    Error::Io(std::io::Error::other(error))
}

impl PartWriter {
    /// Opens the part file at `offset`, dropping whatever lies past it: bytes a crash left
    /// there were never acknowledged.
    async fn open(path: std::path::PathBuf, offset: u64) -> Result<Self, Error> {
        let file = tokio::task::spawn_blocking(move || {
            use std::io::Seek;
            let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(false).open(path)?;
            file.set_len(offset)?;
            file.seek(std::io::SeekFrom::Start(offset))?;
            Ok::<_, std::io::Error>(file)
        })
        .await
        .map_err(blocking_failed)??;
        Ok(Self { file: Some(file), writing: None, pending: Vec::new(), pending_bytes: 0 })
    }

    async fn push(&mut self, chunk: Bytes) -> Result<(), Error> {
        self.pending_bytes += chunk.len();
        self.pending.push(chunk);
        if self.pending_bytes >= WRITE_BATCH_BYTES {
            self.written().await?;
            self.start_write(false)?;
        }
        Ok(())
    }

    /// Writes what is pending and syncs the file's data: everything pushed is on the disk.
    async fn sync(&mut self) -> Result<(), Error> {
        self.written().await?;
        self.start_write(true)?;
        self.written().await
    }

    /// Waits for the write under way, if any.
    async fn written(&mut self) -> Result<(), Error> {
        if let Some(writing) = self.writing.take() {
            self.file = Some(writing.await.map_err(blocking_failed)??);
        }
        Ok(())
    }

    /// Starts writing what is pending (and then syncing the data, with `sync`).
    fn start_write(&mut self, sync: bool) -> Result<(), Error> {
        let mut file = self.file.take().ok_or_else(|| Error::Io(std::io::Error::other("part file lost")))?;
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        self.writing = Some(tokio::task::spawn_blocking(move || {
            use std::io::{Seek, Write};
            let start = file.stream_position()?;
            for chunk in &pending {
                file.write_all(chunk)?;
            }
            if sync {
                file.sync_data()?;
            } else {
                // Advice only: a file system that ignores it still gets the sync.
                let written = std::num::NonZeroU64::new(file.stream_position()? - start);
                let _ = rustix::fs::fadvise(&file, start, written, rustix::fs::Advice::DontNeed);
            }
            Ok(file)
        }));
        Ok(())
    }
}

/// Marks an upload as receiving in this process until dropped.
struct Receiving<'a> {
    set: &'a std::sync::Mutex<HashSet<String>>,
    upload_id: String,
}

impl<'a> Receiving<'a> {
    fn take(set: &'a std::sync::Mutex<HashSet<String>>, upload_id: &str) -> Result<Self, Error> {
        let Ok(mut receiving) = set.lock() else { return Err(Error::UploadBusy) };
        if !receiving.insert(upload_id.to_owned()) {
            return Err(Error::UploadBusy);
        }
        Ok(Self { set, upload_id: upload_id.to_owned() })
    }
}

impl Drop for Receiving<'_> {
    fn drop(&mut self) {
        if let Ok(mut receiving) = self.set.lock() {
            receiving.remove(&self.upload_id);
        }
    }
}

/// The last path component of `name`, without control characters, bounded.
pub(crate) fn clean_file_name(name: &str) -> String {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base.chars().filter(|c| !c.is_control()).take(MAX_FILE_NAME_CHARS).collect();
    cleaned.trim().to_owned()
}

/// A title from a file name: the name without its extension.
fn title_from_file_name(file_name: &str) -> String {
    let stem = match file_name.rsplit_once('.') {
        Some((stem, _)) if !stem.trim().is_empty() => stem,
        _ => file_name,
    };
    let title = stem.trim();
    if title.is_empty() { "Untitled".to_owned() } else { title.to_owned() }
}

/// Letters, digits, `-` and `_` of `title` (at most 60), for a file name people can read.
fn slug(title: &str) -> String {
    let slug: String =
        title.chars().map(|c| if c.is_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).take(60).collect();
    let slug = slug.trim_matches('-');
    if slug.is_empty() { "upload".to_owned() } else { slug.to_owned() }
}

fn refusal_reason(error: &Error) -> &'static str {
    match error {
        Error::EmptyFile => "refused_empty",
        Error::TooLarge { .. } => "refused_too_large",
        Error::QuotaExceeded { .. } => "refused_quota",
        Error::TooManyUploads { .. } => "refused_too_many",
        Error::DiskFull => "refused_disk_full",
        Error::NotMedia => "refused_not_media",
        Error::Damaged(_) => "refused_damaged",
        Error::ProbeTimeout => "refused_probe_timeout",
        _ => "refused_other",
    }
}

impl Library {
    /// Starts an upload for `caller`, after checking every limit.
    ///
    /// # Errors
    /// `EmptyFile`, `TooLarge`, `NotMember` (of the named room), `TooManyUploads`,
    /// `QuotaExceeded`, `DiskFull`; peer, file system and database failures.
    pub async fn create_upload(&self, caller: &Caller, new: NewUpload) -> Result<Upload, Error> {
        let result = self.create_checked(caller, new).await;
        match &result {
            Ok(upload) => {
                self.metrics.uploads.with_label_values(&["created"]).inc();
                tracing::info!(upload_id = %upload.upload_id, length = upload.length_bytes, "upload created");
            }
            Err(error) => self.metrics.uploads.with_label_values(&[refusal_reason(error)]).inc(),
        }
        result
    }

    async fn create_checked(&self, caller: &Caller, new: NewUpload) -> Result<Upload, Error> {
        let NewUpload { length_bytes, file_name, room_id } = new;
        if length_bytes == 0 {
            return Err(Error::EmptyFile);
        }
        if length_bytes > self.limits.max_file_bytes {
            return Err(Error::TooLarge { max_bytes: self.limits.max_file_bytes });
        }
        if let Some(room_id) = &room_id
            && !self.access.check(room_id, &caller.user_id).await?.is_member()
        {
            return Err(Error::NotMember);
        }
        // The checks and the insert together: two uploads started at once cannot both fit in
        // what is left of a quota.
        let _placing = self.placing.lock().await;
        let (used_bytes, active) = self.usage(&caller.user_id).await?;
        if active >= u64::from(self.limits.max_concurrent_uploads) {
            return Err(Error::TooManyUploads { max: self.limits.max_concurrent_uploads });
        }
        if used_bytes.saturating_add(length_bytes) > self.limits.quota_bytes {
            return Err(Error::QuotaExceeded { quota_bytes: self.limits.quota_bytes, used_bytes });
        }
        self.check_free_disk(length_bytes)?;
        let now = self.now_ms();
        let upload = Upload {
            upload_id: hex::encode(rand::random::<[u8; 16]>()),
            user_id: caller.user_id.to_string(),
            room_id: room_id.map(String::from).unwrap_or_default(),
            file_name: clean_file_name(&file_name),
            length_bytes,
            offset_bytes: 0,
            created_at: now,
            expires_at: now.saturating_add(millis(self.limits.upload_expiry)),
        };
        // Row first: a part file without a row is an orphan the janitor removes.
        self.store.insert_upload(&upload).await?;
        tokio::fs::File::create(self.dirs.part_path(&upload.upload_id)).await?;
        Ok(upload)
    }

    fn check_free_disk(&self, incoming_bytes: u64) -> Result<(), Error> {
        let free = free_bytes(&self.dirs.partial)?;
        if free < incoming_bytes.saturating_add(self.limits.min_free_disk_bytes) {
            tracing::warn!(free, incoming_bytes, floor = self.limits.min_free_disk_bytes, "upload refused: disk floor");
            return Err(Error::DiskFull);
        }
        Ok(())
    }

    /// The caller's unexpired upload.
    ///
    /// # Errors
    /// `NotFound` for an unknown, expired or someone else's upload.
    pub async fn upload_of(&self, caller: &Caller, upload_id: &str) -> Result<Upload, Error> {
        if upload_id.len() != 32 || !upload_id.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(Error::NotFound);
        }
        let upload = self.store.find_upload(upload_id).await?.ok_or(Error::NotFound)?;
        if upload.user_id != caller.user_id.as_str() || upload.expires_at <= self.now_ms() {
            return Err(Error::NotFound);
        }
        Ok(upload)
    }

    /// Stores `body` at `offset` of the caller's upload; completes the upload when its last
    /// byte arrives. Bytes received before a broken connection are kept.
    ///
    /// # Errors
    /// `NotFound`, `OffsetMismatch`, `UploadBusy`, `DiskFull`, `ExceedsLength`, a refusal of
    /// the finished file (`NotMedia`, `Damaged`, `ProbeTimeout`), a broken connection
    /// (`BadUploadRequest`), file system and database failures.
    pub async fn append<S, E>(
        self: &Arc<Self>,
        caller: &Caller,
        upload_id: &str,
        offset: u64,
        body: S,
    ) -> Result<Appended, Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let upload = self.upload_of(caller, upload_id).await?;
        if offset != upload.offset_bytes {
            return Err(Error::OffsetMismatch { expected: upload.offset_bytes });
        }
        let _receiving = Receiving::take(&self.receiving, upload_id)?;
        self.metrics.patches_in_flight.inc();
        let result = self.receive(&upload, body).await;
        self.metrics.patches_in_flight.dec();
        let (offset_bytes, expires_at) = result?;
        let item = if offset_bytes == upload.length_bytes {
            Some(self.finish(Upload { offset_bytes, ..upload }).await?)
        } else {
            None
        };
        Ok(Appended { offset_bytes, expires_at, item })
    }

    async fn receive<S, E>(&self, upload: &Upload, body: S) -> Result<(u64, i64), Error>
    where
        S: Stream<Item = Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let remaining = upload.length_bytes.saturating_sub(upload.offset_bytes);
        if remaining > 0 {
            self.check_free_disk(remaining)?;
        }
        let mut writer = PartWriter::open(self.dirs.part_path(&upload.upload_id), upload.offset_bytes).await?;
        let mut offset = upload.offset_bytes;
        let mut unsynced = 0_u64;
        let mut broken = None;
        let mut too_long = false;
        let body = std::pin::pin!(body);
        let mut body = body;
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    broken = Some(error.to_string());
                    break;
                }
            };
            let length = u64::try_from(chunk.len()).unwrap_or(u64::MAX);
            if offset.saturating_add(length) > upload.length_bytes {
                too_long = true;
                break;
            }
            writer.push(chunk).await?;
            offset += length;
            unsynced += length;
            self.metrics.upload_bytes.inc_by(length);
            if unsynced >= SYNC_EVERY_BYTES {
                writer.sync().await?;
                let expires_at = self.now_ms().saturating_add(millis(self.limits.upload_expiry));
                self.store.set_upload_offset(&upload.upload_id, offset, expires_at).await?;
                unsynced = 0;
            }
        }
        writer.sync().await?;
        let expires_at = self.now_ms().saturating_add(millis(self.limits.upload_expiry));
        self.store.set_upload_offset(&upload.upload_id, offset, expires_at).await?;
        if too_long {
            return Err(Error::ExceedsLength);
        }
        if let Some(reason) = broken {
            tracing::info!(upload_id = %upload.upload_id, offset, %reason, "upload interrupted; resumable");
            return Err(Error::BadUploadRequest("The connection broke; the upload resumes from the stored offset."));
        }
        Ok((offset, expires_at))
    }

    /// Probes a complete upload and places it in the library, or deletes it.
    async fn finish(self: &Arc<Self>, upload: Upload) -> Result<MediaItem, Error> {
        let part = self.dirs.part_path(&upload.upload_id);
        let info = match self.probe(&part).await {
            Ok(info) => info,
            Err(error @ (Error::NotMedia | Error::Damaged(_) | Error::ProbeTimeout)) => {
                self.discard_upload(&upload.upload_id).await?;
                self.metrics.uploads.with_label_values(&[refusal_reason(&error)]).inc();
                tracing::info!(upload_id = %upload.upload_id, %error, "finished upload refused and deleted");
                return Err(error);
            }
            // ffprobe missing or the disk failing: keep the upload; a retry finishes it.
            Err(error) => return Err(error),
        };
        let media_item_id = uuid::Uuid::new_v4().to_string();
        let title = title_from_file_name(&upload.file_name);
        let relative_path = format!("{UPLOADED_DIR}/{}-{}.{}", slug(&title), &media_item_id[..8], info.extension);
        // A rename keeps the size and modification time, which the scan compares.
        let meta = tokio::fs::metadata(&part).await?;
        let size_bytes = i64::try_from(meta.len()).unwrap_or(i64::MAX);
        let modified_ms = crate::scan::modified_ms(&meta);
        let now = self.now_ms();
        let has_video = !info.video_codec.is_empty();
        let item = MediaItem {
            media_item_id: media_item_id.clone(),
            title: title.chars().take(crate::library::TITLE.max_chars).collect(),
            relative_path: relative_path.clone(),
            size_bytes,
            modified_ms,
            info,
            source: Source::Upload,
            added_by_user_id: upload.user_id.clone(),
            room_id: upload.room_id.clone(),
            has_thumbnail: false,
            created_at: now,
            updated_at: now,
        };
        let destination = self.dirs.root.join(&relative_path);
        {
            let _placing = self.placing.lock().await;
            self.store.insert_item(&item).await?;
            if let Err(error) = tokio::fs::rename(&part, &destination).await {
                self.store.delete_item(&media_item_id).await?;
                return Err(error.into());
            }
            self.store.delete_upload(&upload.upload_id).await?;
        }
        self.metrics.uploads.with_label_values(&["completed"]).inc();
        self.update_gauges().await;
        tracing::info!(%media_item_id, path = %relative_path, "upload placed in the library");
        self.queue_conversion(&item).await;
        let library = Arc::clone(self);
        let duration_ms = item.info.duration_ms;
        tokio::spawn(async move {
            library.make_thumbnail(&media_item_id, &destination, duration_ms, has_video).await;
            library.extract_subtitles(&media_item_id, &destination).await;
        });
        Ok(item)
    }

    /// Cancels the caller's upload (tus termination): its bytes and row go.
    ///
    /// # Errors
    /// `NotFound`, `UploadBusy` while it receives, database failures.
    pub async fn cancel_upload(&self, caller: &Caller, upload_id: &str) -> Result<(), Error> {
        self.upload_of(caller, upload_id).await?;
        let _receiving = Receiving::take(&self.receiving, upload_id)?;
        self.discard_upload(upload_id).await?;
        self.metrics.uploads.with_label_values(&["cancelled"]).inc();
        tracing::info!(%upload_id, "upload cancelled");
        Ok(())
    }

    async fn discard_upload(&self, upload_id: &str) -> Result<(), Error> {
        self.store.delete_upload(upload_id).await?;
        remove_quietly(&self.dirs.part_path(upload_id)).await;
        Ok(())
    }

    /// Deletes uploads past their expiry and part files without an upload.
    ///
    /// # Errors
    /// File system and database failures.
    pub async fn expire_uploads(&self) -> Result<u64, Error> {
        let mut expired = 0;
        for upload_id in self.store.expired_uploads(self.now_ms(), EXPIRE_BATCH).await? {
            // One receiving right now is not abandoned; its next offset record extends it.
            let Ok(_receiving) = Receiving::take(&self.receiving, &upload_id) else { continue };
            self.discard_upload(&upload_id).await?;
            self.metrics.uploads.with_label_values(&["expired"]).inc();
            tracing::info!(%upload_id, "abandoned upload expired");
            expired += 1;
        }
        let known: HashSet<String> = self.store.upload_ids().await?.into_iter().collect();
        let mut entries = tokio::fs::read_dir(&self.dirs.partial).await?;
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            let orphan = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(".part"))
                .is_some_and(|upload_id| !known.contains(upload_id));
            if orphan {
                remove_quietly(&path).await;
            }
        }
        Ok(expired)
    }

    /// Expires uploads every `interval` until `shutdown`.
    pub async fn run_janitor(self: Arc<Self>, interval: Duration, shutdown: CancellationToken) {
        loop {
            if let Err(error) = self.expire_uploads().await {
                tracing::warn!(%error, "expiring uploads failed");
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Checks an item id from a path, for the HTTP routes.
    pub(crate) fn check_item_id(media_item_id: &str) -> Result<(), Error> {
        check_id("media_item_id", media_item_id).map_err(|_| Error::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_titles_and_slugs() {
        assert_eq!(clean_file_name("C:\\videos\\Trip\u{7}.mp4"), "Trip.mp4");
        assert_eq!(clean_file_name("../../etc/passwd"), "passwd");
        assert_eq!(title_from_file_name("Summer trip.2024.mp4"), "Summer trip.2024");
        assert_eq!(title_from_file_name(".mp4"), ".mp4");
        assert_eq!(title_from_file_name(""), "Untitled");
        assert_eq!(slug("夏天 / trip!"), "夏天---trip");
        assert_eq!(slug("///"), "upload");
    }
}
