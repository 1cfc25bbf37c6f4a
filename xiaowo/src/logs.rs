//! Where the process's logs go: service logs to the console, the access log (one line per
//! call, target `xiaowo::access`) to `<data-dir>/logs/access.log`, rotated by size, unless the
//! operator asks for it on the console.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The tracing target of access-log lines.
pub const ACCESS_TARGET: &str = "xiaowo::access";

/// Where the access log goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccessLogTo {
    /// `<data-dir>/logs/access.log`, rotated by size.
    File,
    /// The console, with the other logs.
    #[value(alias = "stderr", alias = "stdout")]
    Console,
    /// Nowhere.
    Off,
}

/// The access log's settings.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Logs")]
pub struct AccessLogArgs {
    /// Where the log of every call goes: `file` (`<data-dir>/logs/access.log`), `console`
    /// (alias `stderr`) or `off`. Other logs always go to the console; `XIAOWO_LOG` filters
    /// them (e.g. `warn`, `info,xiaowo::access=off`).
    #[arg(long, env = "XIAOWO_ACCESS_LOG", value_enum, default_value = "file")]
    pub access_log: AccessLogTo,
    /// Size at which `access.log` is rotated to `access.log.1` (older ones shift up).
    #[arg(long, env = "XIAOWO_ACCESS_LOG_MAX_BYTES", default_value_t = 10 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(4096..))]
    pub access_log_max_bytes: u64,
    /// How many rotated access logs are kept beside the current one.
    #[arg(long, env = "XIAOWO_ACCESS_LOG_KEEP", default_value_t = 5)]
    pub access_log_keep: u32,
}

/// Where the access log of a process with this data directory is written.
#[must_use]
pub fn access_log_path(data_dir: &Path) -> PathBuf {
    data_dir.join("logs").join("access.log")
}

/// Installs the process's logging: the console with `XIAOWO_LOG` (default `info`), and the
/// access log per `access` (`None`: the commands that serve nothing log only to the console).
///
/// # Errors
/// When the access log's file cannot be opened.
pub fn init(access: Option<(&AccessLogArgs, &Path)>) -> std::io::Result<()> {
    let console_filter = || EnvFilter::try_from_env("XIAOWO_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    // Serving commands log to standard output, as services do; one-off commands (backup,
    // restore) keep it for their result and log to standard error.
    let console =
        tracing_subscriber::fmt::layer().with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())).with_writer(
            if access.is_some() { BoxMakeWriter::new(std::io::stdout) } else { BoxMakeWriter::new(std::io::stderr) },
        );
    let to = access.map_or(AccessLogTo::Console, |(args, _)| args.access_log);
    let file = match access {
        Some((args, data_dir)) if to == AccessLogTo::File => {
            let path = access_log_path(data_dir);
            Some(RotatingFile::open(path, args.access_log_max_bytes, args.access_log_keep)?)
        }
        _ => None,
    };
    let console = console.with_filter(
        console_filter()
            .and(filter_fn(move |metadata| to == AccessLogTo::Console || metadata.target() != ACCESS_TARGET)),
    );
    let file = file.map(|file| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(file)
            .with_filter(Targets::new().with_target(ACCESS_TARGET, tracing::Level::INFO))
    });
    tracing_subscriber::registry().with(console).with(file).init();
    Ok(())
}

/// A log file that is renamed to `<name>.1` (shifting older ones up to `<name>.<keep>`, the
/// oldest dropped) once it would grow past `max_bytes`. Each line is written whole, under a
/// lock: lines of concurrent calls never interleave.
#[derive(Debug, Clone)]
pub struct RotatingFile {
    inner: Arc<Mutex<Current>>,
}

#[derive(Debug)]
struct Current {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
    keep: u32,
}

impl RotatingFile {
    /// Opens (appending) or creates `path` and its directory.
    ///
    /// # Errors
    /// When the directory or the file cannot be created.
    pub fn open(path: PathBuf, max_bytes: u64, keep: u32) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = append(&path)?;
        let written = file.metadata()?.len();
        Ok(Self { inner: Arc::new(Mutex::new(Current { path, file, written, max_bytes, keep })) })
    }
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

impl Current {
    fn rotate(&mut self) -> std::io::Result<()> {
        let numbered = |n: u32| {
            let mut name = self.path.clone().into_os_string();
            name.push(format!(".{n}"));
            PathBuf::from(name)
        };
        if self.keep == 0 {
            std::fs::remove_file(&self.path)?;
        } else {
            for n in (1..self.keep).rev() {
                let from = numbered(n);
                if from.exists() {
                    std::fs::rename(&from, numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, numbered(1))?;
        }
        self.file = append(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

/// One log line on its way to the file; written when the formatter is done with it.
pub struct Line {
    inner: Arc<Mutex<Current>>,
    buffer: Vec<u8>,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.buffer.is_empty() {
            return;
        }
        let mut current = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let length = u64::try_from(self.buffer.len()).unwrap_or(u64::MAX);
        if current.written > 0 && current.written.saturating_add(length) > current.max_bytes {
            // A log that cannot rotate (a full disk, a removed directory) keeps appending
            // where it is rather than losing lines or failing the call it records.
            if let Err(error) = current.rotate() {
                eprintln!("access log: cannot rotate {}: {error}", current.path.display());
            }
        }
        if current.file.write_all(&self.buffer).is_ok() {
            current.written = current.written.saturating_add(length);
        }
    }
}

impl<'a> MakeWriter<'a> for RotatingFile {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line { inner: Arc::clone(&self.inner), buffer: Vec::with_capacity(256) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_line(file: &RotatingFile, text: &str) {
        let mut line = file.make_writer();
        line.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn rotates_by_size_and_keeps_the_newest_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs").join("access.log");
        let file = RotatingFile::open(path.clone(), 100, 2).unwrap();
        for n in 0..12 {
            // 30 bytes per line: three lines fit in 100 bytes, the fourth rotates.
            write_line(&file, &format!("{n:02} {}\n", "x".repeat(26)));
        }
        let read = |suffix: &str| std::fs::read_to_string(format!("{}{suffix}", path.display())).unwrap();
        assert_eq!(read("").lines().map(|line| &line[..2]).collect::<Vec<_>>(), ["09", "10", "11"]);
        assert_eq!(read(".1").lines().map(|line| &line[..2]).collect::<Vec<_>>(), ["06", "07", "08"]);
        assert_eq!(read(".2").lines().map(|line| &line[..2]).collect::<Vec<_>>(), ["03", "04", "05"]);
        assert!(!dir.path().join("logs").join("access.log.3").exists(), "only two rotated files are kept");
    }

    #[test]
    fn reopening_appends_and_counts_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        write_line(&RotatingFile::open(path.clone(), 100, 1).unwrap(), &format!("{}\n", "a".repeat(79)));
        let file = RotatingFile::open(path.clone(), 100, 1).unwrap();
        write_line(&file, &format!("{}\n", "b".repeat(29)));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{}\n", "b".repeat(29)));
        assert_eq!(std::fs::read_to_string(dir.path().join("access.log.1")).unwrap(), format!("{}\n", "a".repeat(79)));
    }
}
