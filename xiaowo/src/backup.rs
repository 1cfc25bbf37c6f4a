//! Backups of every service's SQLite database and restores from them.
//!
//! A backup is a directory `<backup dir>/<id>/` holding one file per service and a
//! `manifest.json` written last (a directory without a manifest is an unfinished backup and is
//! ignored). Snapshots are taken with SQLite's online backup API in a single step, so each is a
//! consistent image of the database at one instant while the service keeps serving — never a
//! raw copy of a live WAL database.
//!
//! * A **full** backup stores the snapshot itself (`<service>.db`).
//! * An **incremental** backup stores only the pages that differ from the previous backup of
//!   the chain (`<service>.delta`), found by comparing per-page SHA-256 hashes; the backup API
//!   keeps page numbers, so an increment is as small as the change. A restore replays the full
//!   backup and then every increment up to the chosen point, in order.
//!
//! Every file's SHA-256 is in the manifest, as is the SHA-256 of the whole database image the
//! backup stands for, so a restore checks both what it read and what it rebuilt, then runs
//! `PRAGMA integrity_check` before anything is moved into the data directory.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use rusqlite::{Connection, OpenFlags};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The file name of a backup's manifest.
pub const MANIFEST: &str = "manifest.json";
const DELTA_MAGIC: &[u8; 8] = b"XWDELTA1";

/// Full or incremental.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The whole database.
    Full,
    /// The pages changed since the previous backup.
    Incremental,
}

/// What a backup holds; `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    /// The backup's directory name, sortable by time (`20261126T043500123Z-full`).
    pub id: String,
    pub kind: Kind,
    /// Unix milliseconds when the snapshots were taken.
    pub created_at_ms: i64,
    /// The backup this one is an increment of (`None` for a full backup).
    pub parent: Option<String>,
    pub services: Vec<ServiceBackup>,
}

/// One service's database in a backup.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ServiceBackup {
    /// `session`, `room`, …: the database file is `<service>.db`.
    pub service: String,
    /// The last migration applied, e.g. `m0003_add_mutes`.
    pub schema_version: String,
    /// The file in the backup directory (`<service>.db` or `<service>.delta`).
    pub file: String,
    /// SHA-256 of that file.
    pub file_sha256: String,
    /// SHA-256 of the database image this backup restores to.
    pub image_sha256: String,
    pub page_size: u32,
    pub page_count: u32,
    /// Pages stored (all of them for a full backup).
    pub pages_stored: u32,
}

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {source}")]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("{path}: manifest unreadable: {source}")]
    Manifest { path: PathBuf, source: serde_json::Error },
    #[error("no database files in {0}")]
    NothingToBackUp(PathBuf),
    #[error("no complete backup {0}")]
    NoSuchBackup(String),
    #[error("{file}: checksum mismatch (expected {expected}, found {found}): the backup is corrupt or truncated")]
    Checksum { file: PathBuf, expected: String, found: String },
    #[error("{file}: not a valid page delta: {reason}")]
    Delta { file: PathBuf, reason: &'static str },
    #[error("{service}: integrity check failed: {report}")]
    Integrity { service: String, report: String },
    #[error("{0}: a database file is already there; restore into an empty data directory")]
    TargetNotEmpty(PathBuf),
    #[error("{0}: the database is in use by a running Xiaowo; stop it before restoring")]
    TargetInUse(PathBuf),
    #[error("backup chain of {0} is broken: {1}")]
    BrokenChain(String, String),
    #[error(
        "the {} database(s) are on PostgreSQL, and backups here are snapshots of SQLite files: back \
         PostgreSQL up with its own tools (pg_dump, or base backups with WAL archiving)",
        .0.join(", ")
    )]
    OnPostgres(Vec<String>),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_path_buf(), source }
}

fn sqlite(path: &Path) -> impl FnOnce(rusqlite::Error) -> BackupError + '_ {
    move |source| BackupError::Sqlite { path: path.to_path_buf(), source }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn sha256_file(path: &Path) -> Result<String, BackupError> {
    let mut file = fs::File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let read = file.read(&mut buffer).map_err(io(path))?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// The service databases in `data_dir` (`*.db`), by service name.
fn databases(data_dir: &Path) -> Result<BTreeMap<String, PathBuf>, BackupError> {
    let mut found = BTreeMap::new();
    for entry in fs::read_dir(data_dir).map_err(io(data_dir))? {
        let path = entry.map_err(io(data_dir))?.path();
        if path.extension().is_some_and(|ext| ext == "db")
            && let Some(stem) = path.file_stem().and_then(|stem| stem.to_str())
        {
            found.insert(stem.to_owned(), path);
        }
    }
    Ok(found)
}

/// Opens a database, unlocking it with the SQLCipher passphrase when there is one.
fn open(path: &Path, flags: OpenFlags, key: Option<&str>) -> Result<Connection, BackupError> {
    let connection = Connection::open_with_flags(path, flags).map_err(sqlite(path))?;
    if let Some(key) = key {
        connection.pragma_update(None, "key", key).map_err(sqlite(path))?;
    }
    Ok(connection)
}

const READ_ONLY: OpenFlags = OpenFlags::SQLITE_OPEN_READ_ONLY.union(OpenFlags::SQLITE_OPEN_NO_MUTEX);
const READ_WRITE: OpenFlags =
    OpenFlags::SQLITE_OPEN_READ_WRITE.union(OpenFlags::SQLITE_OPEN_CREATE).union(OpenFlags::SQLITE_OPEN_NO_MUTEX);

/// A consistent snapshot of the live database at `source` into `target`, in one backup step
/// (one read transaction), so concurrent writers cannot make it restart or tear.
/// An encrypted database stays encrypted: the copy is keyed with the same passphrase.
fn snapshot(source: &Path, target: &Path, key: Option<&str>) -> Result<(), BackupError> {
    let from = open(source, READ_ONLY, key)?;
    from.busy_timeout(std::time::Duration::from_secs(10)).map_err(sqlite(source))?;
    let mut to = open(target, READ_WRITE, key)?;
    let backup = rusqlite::backup::Backup::new(&from, &mut to).map_err(sqlite(target))?;
    // All pages in one step: one read transaction, so the copy is of a single instant. Busy or
    // locked means a writer is checkpointing; wait a moment and take the step again.
    let mut attempts = 0;
    loop {
        match backup.step(-1).map_err(sqlite(source))? {
            rusqlite::backup::StepResult::Done => break,
            rusqlite::backup::StepResult::More
            | rusqlite::backup::StepResult::Busy
            | rusqlite::backup::StepResult::Locked
                if attempts < 200 =>
            {
                attempts += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            _ => {
                return Err(BackupError::Sqlite {
                    path: source.to_path_buf(),
                    source: rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some("database stayed busy".to_owned()),
                    ),
                });
            }
        }
    }
    drop(backup);
    // A snapshot is a plain rollback-journal file: nothing may live in a side WAL.
    to.pragma_update(None, "journal_mode", "DELETE").map_err(sqlite(target))?;
    Ok(())
}

fn schema_version(path: &Path, key: Option<&str>) -> Result<String, BackupError> {
    let connection = open(path, READ_ONLY, key)?;
    let tables: Vec<String> = connection
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%migrations'")
        .and_then(|mut statement| statement.query_map([], |row| row.get(0))?.collect())
        .map_err(sqlite(path))?;
    let Some(table) = tables.first() else {
        return Ok(String::new());
    };
    let query = format!("SELECT version FROM \"{}\" ORDER BY version DESC LIMIT 1", table.replace('"', ""));
    connection
        .query_row(&query, [], |row| row.get::<_, String>(0))
        .or_else(|error| match error {
            rusqlite::Error::QueryReturnedNoRows => Ok(String::new()),
            other => Err(other),
        })
        .map_err(sqlite(path))
}

fn page_size(path: &Path, key: Option<&str>) -> Result<u32, BackupError> {
    let connection = open(path, READ_ONLY, key)?;
    // SQLCipher answers with text when the database is keyed, SQLite with an integer.
    let value: rusqlite::types::Value =
        connection.query_row("PRAGMA page_size", [], |row| row.get(0)).map_err(sqlite(path))?;
    let size = match value {
        rusqlite::types::Value::Integer(size) => u32::try_from(size).ok(),
        rusqlite::types::Value::Text(text) => text.trim().parse().ok(),
        _ => None,
    };
    size.filter(|size| *size > 0).ok_or_else(|| BackupError::Sqlite {
        path: path.to_path_buf(),
        source: rusqlite::Error::InvalidColumnType(0, "page_size".to_owned(), rusqlite::types::Type::Null),
    })
}

/// SHA-256 of each page of the image at `path`.
fn page_hashes(image: &[u8], page_size: usize) -> Vec<[u8; 32]> {
    image.chunks(page_size).map(|page| Sha256::digest(page).into()).collect()
}

fn hashes_path(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}.pagehashes"))
}

fn write_hashes(path: &Path, hashes: &[[u8; 32]]) -> Result<(), BackupError> {
    fs::write(path, hashes.concat()).map_err(io(path))
}

fn read_hashes(path: &Path) -> Result<Vec<[u8; 32]>, BackupError> {
    let bytes = fs::read(path).map_err(io(path))?;
    Ok(bytes.chunks_exact(32).filter_map(|chunk| chunk.try_into().ok()).collect())
}

/// Where backups go and how many to keep.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The live databases.
    pub data_dir: PathBuf,
    /// The primary backup location.
    pub backup_dir: PathBuf,
    /// A second location (e.g. a mounted remote disk) that receives a verified copy of each.
    pub offsite_dir: Option<PathBuf>,
    /// Full backups (each with its increments) kept in each location; older ones are deleted.
    pub keep_full: usize,
    /// The SQLCipher passphrase of encrypted databases; their backups stay encrypted with it.
    pub encryption_key: Option<String>,
}

/// Complete backups in `dir`, oldest first.
///
/// # Errors
/// When the directory or a manifest cannot be read.
pub fn list(dir: &Path) -> Result<Vec<Manifest>, BackupError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut manifests = Vec::new();
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        // A backup being written lives in a hidden staging directory until it is renamed into
        // place; its manifest may be half-written, and it is not a backup yet.
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path().join(MANIFEST);
        if path.is_file() {
            manifests.push(read_manifest(&path)?);
        }
    }
    manifests.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(manifests)
}

/// One line about a backup just written to `backup_dir`: its kind, id, databases, size, place.
#[must_use]
pub fn summary(manifest: &Manifest, backup_dir: &Path) -> String {
    let dir = backup_dir.join(&manifest.id);
    let bytes: u64 = manifest
        .services
        .iter()
        .filter_map(|service| fs::metadata(dir.join(&service.file)).ok())
        .map(|m| m.len())
        .sum();
    let kind = match manifest.kind {
        Kind::Full => "full backup".to_owned(),
        Kind::Incremental => format!("incremental backup (after {})", manifest.parent.as_deref().unwrap_or("?")),
    };
    let names: Vec<&str> = manifest.services.iter().map(|service| service.service.as_str()).collect();
    #[expect(clippy::cast_precision_loss, reason = "a size shown to one decimal")]
    let megabytes = bytes as f64 / 1_048_576.0;
    format!("{kind} {} of {} ({megabytes:.1} MiB) in {}", manifest.id, names.join(", "), dir.display())
}

fn read_manifest(path: &Path) -> Result<Manifest, BackupError> {
    let text = fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|source| BackupError::Manifest { path: path.to_path_buf(), source })
}

fn backup_id(now_ms: i64, kind: Kind) -> String {
    let seconds = now_ms.div_euclid(1000);
    let millis = now_ms.rem_euclid(1000);
    let (year, month, day, hour, minute, second) = civil(seconds);
    let suffix = match kind {
        Kind::Full => "full",
        Kind::Incremental => "incr",
    };
    format!("{year:04}{month:02}{day:02}T{hour:02}{minute:02}{second:02}{millis:03}Z-{suffix}")
}

/// UTC calendar fields of a Unix time (Howard Hinnant's days-from-civil, inverted).
fn civil(seconds: i64) -> (i64, i64, i64, i64, i64, i64) {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, secs / 3600, secs % 3600 / 60, secs % 60)
}

/// Of `databases` (service name, database URL), the services whose database is PostgreSQL,
/// which backups here (SQLite snapshots) cannot cover.
#[must_use]
pub fn postgres_services<'a>(databases: impl IntoIterator<Item = (&'a str, String)>) -> Vec<String> {
    databases
        .into_iter()
        .filter(|(_, url)| svc_kit::db::Backend::of(url) == svc_kit::db::Backend::Postgres)
        .map(|(service, _)| service.to_owned())
        .collect()
}

/// [`run`] for a system whose `on_postgres` services keep their data in PostgreSQL: the
/// SQLite files there are are backed up as usual, and when there are none the answer says
/// where the data is instead of reporting an empty data directory.
///
/// # Errors
/// As [`run`]; [`BackupError::OnPostgres`] when no SQLite database is left to back up.
pub fn run_beside_postgres(
    settings: &Settings,
    kind: Kind,
    now_ms: i64,
    on_postgres: &[String],
) -> Result<Manifest, BackupError> {
    if on_postgres.is_empty() {
        return run(settings, kind, now_ms);
    }
    tracing::warn!(services = ?on_postgres, "not in this backup: their databases are on PostgreSQL");
    if !settings.data_dir.is_dir() {
        return Err(BackupError::OnPostgres(on_postgres.to_vec()));
    }
    match run(settings, kind, now_ms) {
        Err(BackupError::NothingToBackUp(_)) => Err(BackupError::OnPostgres(on_postgres.to_vec())),
        outcome => outcome,
    }
}

/// Takes a backup of every database in `settings.data_dir`, copies it off-site, and applies
/// retention. An incremental backup with no earlier full backup becomes a full one.
///
/// # Errors
/// On any I/O or SQLite failure; a failed backup leaves no manifest, so it is never used.
pub fn run(settings: &Settings, kind: Kind, now_ms: i64) -> Result<Manifest, BackupError> {
    let sources = databases(&settings.data_dir)?;
    if sources.is_empty() {
        return Err(BackupError::NothingToBackUp(settings.data_dir.clone()));
    }
    fs::create_dir_all(&settings.backup_dir).map_err(io(&settings.backup_dir))?;
    let previous = list(&settings.backup_dir)?.pop();
    let kind = if previous.is_none() { Kind::Full } else { kind };
    let id = backup_id(now_ms, kind);
    let staging = settings.backup_dir.join(format!(".{id}.partial"));
    let target = settings.backup_dir.join(&id);
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    fs::create_dir_all(&staging).map_err(io(&staging))?;

    let mut services = Vec::new();
    for (service, source) in &sources {
        let image_path = staging.join(format!("{service}.snapshot"));
        let key = settings.encryption_key.as_deref();
        snapshot(source, &image_path, key)?;
        let page_size = page_size(&image_path, key)?;
        let schema_version = schema_version(&image_path, key)?;
        let image = fs::read(&image_path).map_err(io(&image_path))?;
        let hashes = page_hashes(&image, page_size as usize);
        let page_count = u32::try_from(hashes.len()).unwrap_or(u32::MAX);
        let previous_hashes = match (&previous, kind) {
            (Some(previous), Kind::Incremental) => {
                let path = hashes_path(&settings.backup_dir.join(&previous.id), service);
                path.exists().then(|| read_hashes(&path)).transpose()?
            }
            _ => None,
        };
        let (file, pages_stored) = match previous_hashes {
            // A service new since the last backup gets its whole image, even in an increment.
            None => {
                let file = format!("{service}.db");
                fs::rename(&image_path, staging.join(&file)).map_err(io(&image_path))?;
                (file, page_count)
            }
            Some(previous_hashes) => {
                let file = format!("{service}.delta");
                let stored = write_delta(&staging.join(&file), &image, page_size, &hashes, &previous_hashes)?;
                fs::remove_file(&image_path).map_err(io(&image_path))?;
                (file, stored)
            }
        };
        write_hashes(&hashes_path(&staging, service), &hashes)?;
        services.push(ServiceBackup {
            service: service.clone(),
            schema_version,
            file_sha256: sha256_file(&staging.join(&file))?,
            file,
            image_sha256: sha256_hex(&image),
            page_size,
            page_count,
            pages_stored,
        });
    }
    let parent = match kind {
        Kind::Full => None,
        Kind::Incremental => previous.map(|previous| previous.id),
    };
    let manifest = Manifest { id: id.clone(), kind, created_at_ms: now_ms, parent, services };
    write_manifest(&staging, &manifest)?;
    fs::rename(&staging, &target).map_err(io(&target))?;
    tracing::info!(backup = %id, ?kind, "backup written");

    if let Some(offsite) = &settings.offsite_dir {
        copy_offsite(&target, offsite, &manifest)?;
    }
    apply_retention(&settings.backup_dir, settings.keep_full)?;
    if let Some(offsite) = &settings.offsite_dir {
        apply_retention(offsite, settings.keep_full)?;
    }
    Ok(manifest)
}

fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    let path = dir.join(MANIFEST);
    let text = serde_json::to_string_pretty(manifest)
        .map_err(|source| BackupError::Manifest { path: path.clone(), source })?;
    let mut file = fs::File::create(&path).map_err(io(&path))?;
    file.write_all(text.as_bytes()).map_err(io(&path))?;
    file.sync_all().map_err(io(&path))
}

/// Writes the pages of `image` whose hash differs from `previous`; how many.
fn write_delta(
    path: &Path,
    image: &[u8],
    page_size: u32,
    hashes: &[[u8; 32]],
    previous: &[[u8; 32]],
) -> Result<u32, BackupError> {
    let changed: Vec<u32> = hashes
        .iter()
        .enumerate()
        .filter(|(index, hash)| previous.get(*index) != Some(hash))
        .filter_map(|(index, _)| u32::try_from(index).ok())
        .collect();
    let mut out = Vec::with_capacity(24 + changed.len() * (4 + page_size as usize));
    out.extend_from_slice(DELTA_MAGIC);
    out.extend_from_slice(&page_size.to_le_bytes());
    out.extend_from_slice(&u32::try_from(hashes.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&u32::try_from(changed.len()).unwrap_or(u32::MAX).to_le_bytes());
    for index in &changed {
        let start = *index as usize * page_size as usize;
        let end = (start + page_size as usize).min(image.len());
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&image[start..end]);
    }
    fs::write(path, out).map_err(io(path))?;
    Ok(u32::try_from(changed.len()).unwrap_or(u32::MAX))
}

/// Applies the delta at `path` to `image`.
fn apply_delta(path: &Path, image: &mut Vec<u8>) -> Result<(), BackupError> {
    let bytes = fs::read(path).map_err(io(path))?;
    let invalid = |reason| BackupError::Delta { file: path.to_path_buf(), reason };
    let header = bytes.get(..20).ok_or_else(|| invalid("truncated header"))?;
    if &header[..8] != DELTA_MAGIC {
        return Err(invalid("wrong magic"));
    }
    let word = |at: usize| u32::from_le_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]]) as usize;
    let (page_size, page_count, changed) = (word(8), word(12), word(16));
    if page_size == 0 {
        return Err(invalid("zero page size"));
    }
    image.resize(page_count * page_size, 0);
    let mut at = 20;
    for _ in 0..changed {
        let record = bytes.get(at..at + 4 + page_size).ok_or_else(|| invalid("truncated page"))?;
        let index = u32::from_le_bytes([record[0], record[1], record[2], record[3]]) as usize;
        if index >= page_count {
            return Err(invalid("page beyond the end"));
        }
        image[index * page_size..(index + 1) * page_size].copy_from_slice(&record[4..]);
        at += 4 + page_size;
    }
    if at != bytes.len() {
        return Err(invalid("trailing bytes"));
    }
    Ok(())
}

fn copy_offsite(source: &Path, offsite: &Path, manifest: &Manifest) -> Result<(), BackupError> {
    fs::create_dir_all(offsite).map_err(io(offsite))?;
    let staging = offsite.join(format!(".{}.partial", manifest.id));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    fs::create_dir_all(&staging).map_err(io(&staging))?;
    for entry in fs::read_dir(source).map_err(io(source))? {
        let path = entry.map_err(io(source))?.path();
        if let Some(name) = path.file_name()
            && name != MANIFEST
        {
            fs::copy(&path, staging.join(name)).map_err(io(&path))?;
        }
    }
    for service in &manifest.services {
        verify_file(&staging.join(&service.file), &service.file_sha256)?;
    }
    write_manifest(&staging, manifest)?;
    let target = offsite.join(&manifest.id);
    fs::rename(&staging, &target).map_err(io(&target))?;
    tracing::info!(backup = %manifest.id, offsite = %offsite.display(), "backup copied off-site");
    Ok(())
}

/// Deletes all but the newest `keep_full` full backups and their increments.
fn apply_retention(dir: &Path, keep_full: usize) -> Result<(), BackupError> {
    let manifests = list(dir)?;
    let fulls: Vec<&Manifest> = manifests.iter().filter(|manifest| manifest.kind == Kind::Full).collect();
    let Some(oldest_kept) = fulls.len().checked_sub(keep_full.max(1)).and_then(|index| fulls.get(index)) else {
        return Ok(());
    };
    for manifest in manifests.iter().filter(|manifest| manifest.id < oldest_kept.id) {
        let path = dir.join(&manifest.id);
        fs::remove_dir_all(&path).map_err(io(&path))?;
        tracing::info!(backup = %manifest.id, dir = %dir.display(), "old backup deleted");
    }
    Ok(())
}

fn verify_file(path: &Path, expected: &str) -> Result<(), BackupError> {
    let found = sha256_file(path)?;
    if found == expected {
        Ok(())
    } else {
        Err(BackupError::Checksum { file: path.to_path_buf(), expected: expected.to_owned(), found })
    }
}

/// The chain from the full backup to `id` (or the newest backup), oldest first.
fn chain(dir: &Path, id: Option<&str>) -> Result<Vec<Manifest>, BackupError> {
    let manifests = list(dir)?;
    let by_id: BTreeMap<&str, &Manifest> = manifests.iter().map(|manifest| (manifest.id.as_str(), manifest)).collect();
    let last = match id {
        Some(id) => by_id.get(id).copied().ok_or_else(|| BackupError::NoSuchBackup(id.to_owned()))?,
        None => manifests.last().ok_or_else(|| BackupError::NoSuchBackup(dir.display().to_string()))?,
    };
    let mut chain = vec![last.clone()];
    while let Some(parent) = chain.last().and_then(|manifest| manifest.parent.clone()) {
        let manifest = by_id
            .get(parent.as_str())
            .ok_or_else(|| BackupError::BrokenChain(last.id.clone(), format!("missing {parent}")))?;
        chain.push((*manifest).clone());
    }
    chain.reverse();
    Ok(chain)
}

/// Rebuilds each service's database image as of `id` (default: the newest backup), checking
/// every file's checksum, every image's checksum and SQLite's integrity check. Returns the
/// images by service, each as a file under `work_dir`.
fn rebuild(
    dir: &Path,
    id: Option<&str>,
    work_dir: &Path,
    key: Option<&str>,
) -> Result<Vec<(String, PathBuf)>, BackupError> {
    let chain = chain(dir, id)?;
    let Some(last) = chain.last() else {
        return Err(BackupError::NoSuchBackup(dir.display().to_string()));
    };
    let mut rebuilt = Vec::new();
    for wanted in &last.services {
        let mut image: Option<Vec<u8>> = None;
        for manifest in &chain {
            let Some(part) = manifest.services.iter().find(|part| part.service == wanted.service) else {
                continue;
            };
            let path = dir.join(&manifest.id).join(&part.file);
            verify_file(&path, &part.file_sha256)?;
            if part.file.ends_with(".delta") {
                let base = image.as_mut().ok_or_else(|| {
                    BackupError::BrokenChain(last.id.clone(), format!("{} has a delta but no base", part.service))
                })?;
                apply_delta(&path, base)?;
            } else {
                image = Some(fs::read(&path).map_err(io(&path))?);
            }
        }
        let image = image.ok_or_else(|| BackupError::BrokenChain(last.id.clone(), wanted.service.clone()))?;
        let found = sha256_hex(&image);
        if found != wanted.image_sha256 {
            return Err(BackupError::Checksum {
                file: dir.join(&last.id).join(&wanted.file),
                expected: wanted.image_sha256.clone(),
                found,
            });
        }
        let path = work_dir.join(format!("{}.db", wanted.service));
        fs::write(&path, &image).map_err(io(&path))?;
        integrity_check(&wanted.service, &path, key)?;
        rebuilt.push((wanted.service.clone(), path));
    }
    Ok(rebuilt)
}

fn integrity_check(service: &str, path: &Path, key: Option<&str>) -> Result<(), BackupError> {
    let connection = open(path, READ_ONLY, key)?;
    let report: String = connection.query_row("PRAGMA integrity_check", [], |row| row.get(0)).map_err(sqlite(path))?;
    if report == "ok" { Ok(()) } else { Err(BackupError::Integrity { service: service.to_owned(), report }) }
}

/// Checks every backup in `dir` as a restore would, without restoring; the ids checked.
///
/// # Errors
/// The first problem found.
pub fn verify(dir: &Path, key: Option<&str>) -> Result<Vec<String>, BackupError> {
    let mut checked = Vec::new();
    for manifest in list(dir)? {
        let work = tempfile::tempdir().map_err(io(dir))?;
        rebuild(dir, Some(&manifest.id), work.path(), key)?;
        checked.push(manifest.id);
    }
    Ok(checked)
}

/// Restores the backup `id` (default: the newest) from `backup_dir` into `data_dir`, which must
/// hold no database of the services being restored, and must not be in use.
///
/// # Errors
/// When a check fails or the target is not free; nothing is written to `data_dir` then.
pub fn restore(
    backup_dir: &Path,
    id: Option<&str>,
    data_dir: &Path,
    key: Option<&str>,
) -> Result<Manifest, BackupError> {
    fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let chain = chain(backup_dir, id)?;
    let Some(last) = chain.last().cloned() else {
        return Err(BackupError::NoSuchBackup(backup_dir.display().to_string()));
    };
    for service in &last.services {
        let target = data_dir.join(format!("{}.db", service.service));
        if in_use(&crate::node::lock_path(data_dir, &service.service)) {
            return Err(BackupError::TargetInUse(target));
        }
        if target.exists() {
            return Err(BackupError::TargetNotEmpty(target));
        }
    }
    let work = tempfile::Builder::new().prefix(".restore").tempdir_in(data_dir).map_err(io(data_dir))?;
    let rebuilt = rebuild(backup_dir, id, work.path(), key)?;
    for (service, image) in rebuilt {
        let target = data_dir.join(format!("{service}.db"));
        fs::rename(&image, &target).map_err(io(&target))?;
    }
    tracing::info!(backup = %last.id, data_dir = %data_dir.display(), "restored");
    Ok(last)
}

/// Whether a running service holds the lock file next to its database.
fn in_use(lock: &Path) -> bool {
    let Ok(file) = fs::File::open(lock) else {
        return false;
    };
    matches!(file.try_lock_shared(), Err(fs::TryLockError::WouldBlock))
}

/// Where backups go and how many are kept: for `xiaowo backup` and the running system's schedule.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Backups")]
pub struct BackupConfig {
    /// Where backups are written; default `<data dir>/backups`.
    #[arg(long, env = "XIAOWO_BACKUP_DIR")]
    pub backup_dir: Option<PathBuf>,
    /// A second location (e.g. a mounted remote disk) that receives a verified copy of every backup.
    #[arg(long, env = "XIAOWO_BACKUP_OFFSITE_DIR")]
    pub backup_offsite_dir: Option<PathBuf>,
    /// Full backups kept in each location, each with its increments.
    #[arg(long, env = "XIAOWO_BACKUP_KEEP_FULL", default_value_t = 7)]
    pub backup_keep_full: usize,
}

/// When `xiaowo up` backs itself up.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Backups")]
pub struct BackupSchedule {
    /// How often the running system takes a full backup (`0s` turns scheduled backups off).
    /// The first is taken right after start unless a recent one exists.
    #[arg(long, env = "XIAOWO_BACKUP_FULL_INTERVAL", default_value = "24h", value_parser = svc_kit::server::parse_duration)]
    pub backup_full_interval: std::time::Duration,
    /// How often it takes an incremental backup between full ones (`0s`: none).
    #[arg(long, env = "XIAOWO_BACKUP_INCREMENTAL_INTERVAL", default_value = "1h", value_parser = svc_kit::server::parse_duration)]
    pub backup_incremental_interval: std::time::Duration,
}

impl BackupConfig {
    /// The settings for the databases in `data_dir`, encrypted with `encryption_key` if any.
    #[must_use]
    pub fn settings(&self, data_dir: &Path, encryption_key: Option<String>) -> Settings {
        Settings {
            encryption_key,
            data_dir: data_dir.to_path_buf(),
            backup_dir: self.backup_dir.clone().unwrap_or_else(|| data_dir.join("backups")),
            offsite_dir: self.backup_offsite_dir.clone(),
            keep_full: self.backup_keep_full,
        }
    }
}

/// Takes scheduled backups until `shutdown`: a full one every `full_interval`, increments in
/// between. Right after start it takes a full backup unless one younger than `full_interval`
/// exists, so that an instance restarted more often than the increment interval is still backed
/// up. A failed backup is logged and retried at the next tick; it never stops serving.
pub async fn run_schedule(
    settings: Settings,
    full_interval: std::time::Duration,
    incremental_interval: std::time::Duration,
    clock: svc_kit::clock::SharedClock,
    shutdown: tokio_util::sync::CancellationToken,
) {
    if full_interval.is_zero() {
        return;
    }
    let tick = if incremental_interval.is_zero() { full_interval } else { incremental_interval.min(full_interval) };
    let full_every_ms = svc_kit::clock::millis(full_interval);
    // The first tick is at once: the start-up backup.
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut starting = true;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let now = clock.now_ms();
        let settings = settings.clone();
        let at_start = std::mem::take(&mut starting);
        let result = tokio::task::spawn_blocking(move || {
            let last_full = list(&settings.backup_dir)?.into_iter().rev().find(|manifest| manifest.kind == Kind::Full);
            let full_is_recent = last_full.is_some_and(|full| now - full.created_at_ms < full_every_ms);
            match (full_is_recent, at_start) {
                // Restarted with a recent full backup: the next tick takes an increment.
                (true, true) => Ok(None),
                (true, false) => run(&settings, Kind::Incremental, now).map(Some),
                (false, _) => run(&settings, Kind::Full, now).map(Some),
            }
        })
        .await;
        match result {
            Ok(Ok(Some(manifest))) => tracing::info!(backup = %manifest.id, "scheduled backup done"),
            Ok(Ok(None)) => tracing::debug!("a recent full backup exists; the next scheduled backup is an increment"),
            Ok(Err(error)) => tracing::error!(%error, "scheduled backup failed"),
            Err(error) => tracing::error!(%error, "scheduled backup task failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time() {
        assert_eq!(backup_id(0, Kind::Full), "19700101T000000000Z-full");
        assert_eq!(backup_id(1_795_667_700_123, Kind::Incremental), "20261126T043500123Z-incr");
        assert!(backup_id(1_795_667_700_123, Kind::Full) < backup_id(1_795_667_700_124, Kind::Full));
    }

    #[test]
    fn delta_round_trip_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let old: Vec<u8> = (0..4096u32 * 3).map(|i| (i % 251) as u8).collect();
        let mut new = old.clone();
        new[5000] = 7;
        new.extend(std::iter::repeat_n(9u8, 4096));
        let path = dir.path().join("x.delta");
        let stored = write_delta(&path, &new, 4096, &page_hashes(&new, 4096), &page_hashes(&old, 4096)).unwrap();
        assert_eq!(stored, 2, "the changed page and the new one");

        let mut rebuilt = old.clone();
        apply_delta(&path, &mut rebuilt).unwrap();
        assert_eq!(rebuilt, new);

        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
        assert!(matches!(apply_delta(&path, &mut old.clone()), Err(BackupError::Delta { .. })));
    }

    fn settings_for(data_dir: &Path) -> Settings {
        Settings {
            data_dir: data_dir.to_path_buf(),
            backup_dir: data_dir.join("backups"),
            offsite_dir: None,
            keep_full: 1,
            encryption_key: None,
        }
    }

    #[test]
    fn postgres_databases_are_named_not_mistaken_for_missing_files() {
        let on_postgres = postgres_services([
            ("session", "sqlite:///var/lib/xiaowo/session.db".to_owned()),
            ("sync", "postgres://xiaowo@db/xiaowo".to_owned()),
            ("chat", "postgresql://xiaowo@db/xiaowo".to_owned()),
        ]);
        assert_eq!(on_postgres, ["sync", "chat"]);

        let empty = tempfile::tempdir().unwrap();
        let refused = run_beside_postgres(&settings_for(empty.path()), Kind::Full, 0, &on_postgres);
        assert!(matches!(refused, Err(BackupError::OnPostgres(services)) if services == on_postgres));
        let missing = empty.path().join("never-created");
        let refused = run_beside_postgres(&settings_for(&missing), Kind::Full, 0, &on_postgres);
        assert!(matches!(refused, Err(BackupError::OnPostgres(_))));
        assert!(matches!(run(&settings_for(empty.path()), Kind::Full, 0), Err(BackupError::NothingToBackUp(_))));

        // The SQLite databases beside them are backed up as usual.
        let mixed = tempfile::tempdir().unwrap();
        let session = Connection::open(mixed.path().join("session.db")).unwrap();
        session.execute_batch("CREATE TABLE user_sessions (session_id TEXT PRIMARY KEY)").unwrap();
        drop(session);
        let manifest = run_beside_postgres(&settings_for(mixed.path()), Kind::Full, 0, &on_postgres).unwrap();
        let backed_up: Vec<&str> = manifest.services.iter().map(|service| service.service.as_str()).collect();
        assert_eq!(backed_up, ["session"]);
    }
}
