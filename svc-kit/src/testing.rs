//! The parts of the integration-test harness that need no service (the `testing` feature;
//! `xiaowo::testing::Stack` starts services on top of them): a real server on a free loopback
//! port through the production [`Assembly`] path, the database a test's service keeps its data
//! in (a fresh SQLite file, or a fresh PostgreSQL database), the real binary as a child
//! process, one way to wait for a condition, and small helpers for calls and answers.
//!
//! A harness that cannot set up has nothing to test: it panics with what went wrong.
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a harness that cannot set up stops the test there")]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::server::{Assembly, ServeError, ServerConfig};

/// How long [`eventually`] and the other waits here give a condition: generous, because two
/// cores may be shared with other builds and test binaries.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// Waits (at most [`PATIENCE`]) until `check` holds, asking every 20 ms.
///
/// # Panics
/// When it does not hold in time, naming `what`.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A crate's configuration from its defaults and `XIAOWO_*` environment variables alone, the
/// way the binary would build it with no flags. Tests start from this and change fields.
///
/// # Panics
/// When a default or an environment variable does not parse.
#[must_use]
pub fn from_env<T: clap::Args + clap::FromArgMatches>() -> T {
    let command = T::augment_args(clap::Command::new("xiaowo"));
    let matches = command.get_matches_from(["xiaowo"]);
    T::from_arg_matches(&matches).expect("configuration defaults parse")
}

/// An assembly bound to `127.0.0.1:0` with default settings and a short grace period.
///
/// # Panics
/// When no loopback port can be bound.
pub async fn bind() -> Assembly {
    let mut config: ServerConfig = from_env();
    config.shutdown_grace = std::time::Duration::from_secs(2);
    Assembly::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config, CancellationToken::new())
        .await
        .expect("bind a loopback port")
}

/// A server running in the background; stopped when dropped or by [`TestServer::stop`].
#[derive(Debug)]
pub struct TestServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// `http://<addr>`.
    pub url: String,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<Result<(), ServeError>>>,
}

impl TestServer {
    /// Runs `assembly` until stopped.
    #[must_use]
    pub fn spawn(assembly: Assembly) -> Self {
        let addr = assembly.local_addr();
        let shutdown = assembly.stop_token();
        let handle = tokio::spawn(assembly.run());
        Self { addr, url: format!("http://{addr}"), shutdown, handle: Some(handle) }
    }

    /// Stops the server and waits for it to finish draining.
    ///
    /// # Panics
    /// When the server task failed.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task").expect("server stopped cleanly");
        }
    }

    /// A channel to this server.
    ///
    /// # Panics
    /// Never for the URL this server builds.
    #[must_use]
    pub fn channel(&self) -> tonic::transport::Channel {
        crate::peer::channel(&self.url, std::time::Duration::from_secs(5)).expect("valid url")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `message` as a call carrying `authorization: Bearer <token>`.
///
/// # Panics
/// When `token` is not a valid header value.
#[must_use]
pub fn with_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header value"));
    request
}

/// The fields named by an `INVALID_ARGUMENT` status's `BadRequest` details, sorted.
///
/// # Panics
/// When the status is not `INVALID_ARGUMENT`.
#[must_use]
pub fn violations(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let mut fields: Vec<String> = status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|violation| violation.field).collect())
        .unwrap_or_default();
    fields.sort();
    fields
}

/// The status code of a call's outcome (`OK` for a success).
#[must_use]
pub fn code<T>(result: Result<T, tonic::Status>) -> tonic::Code {
    result.map_or_else(|status| status.code(), |_| tonic::Code::Ok)
}

/// The environment variable that points the integration tests at a PostgreSQL server: a base
/// URL such as `postgres://xiaowo@127.0.0.1:5432/xiaowo` whose role may create databases.
pub const TEST_POSTGRES_ENV: &str = "XIAOWO_TEST_POSTGRES";

/// Whether the integration tests run against PostgreSQL (see [`TEST_POSTGRES_ENV`]).
#[must_use]
pub fn on_postgres() -> bool {
    std::env::var_os(TEST_POSTGRES_ENV).is_some_and(|value| !value.is_empty())
}

/// For a test that exercises something only SQLite has (files, backups, encryption, locks):
/// `true`, after saying why, when the tests run against PostgreSQL, so that the test returns
/// early instead of failing.
#[must_use]
pub fn skip_on_postgres(why: &str) -> bool {
    let skip = on_postgres();
    if skip {
        println!("skipped on PostgreSQL: {why}");
    }
    skip
}

/// The database a test's service keeps its data in: by default the SQLite file `file_name` in
/// `dir` (the test's temporary directory); with [`TEST_POSTGRES_ENV`] set, a PostgreSQL
/// database of this test's own, named after `dir` and created on first use. Every service of
/// one test shares that database (each in its own schema), two instances of one service see
/// the same tables, and a service restarted on the same `dir` finds its data again, as with
/// files; other tests, having other directories, never see it.
///
/// # Panics
/// When the PostgreSQL server cannot be reached or refuses to create the database.
pub async fn database_url(dir: &std::path::Path, file_name: &str) -> String {
    let Some(base) = std::env::var(TEST_POSTGRES_ENV).ok().filter(|value| !value.is_empty()) else {
        return crate::db::sqlite_url(dir, file_name);
    };
    use sea_orm::ConnectionTrait;
    use sha2::Digest;
    let digest = sha2::Sha256::digest(dir.as_os_str().as_encoded_bytes());
    let name = format!("xiaowo_test_{}", &hex::encode(digest)[..20]);
    let admin = sea_orm::Database::connect(base.as_str()).await.expect("connect to the test PostgreSQL server");
    if !database_exists(&admin, &name).await
        && let Err(error) = admin.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await
    {
        // Services of one test may ask at once: losing that race still leaves the database.
        assert!(database_exists(&admin, &name).await, "create test database {name}: {error}");
    }
    admin.close().await.expect("close the admin connection");
    replace_database(&base, &name)
}

async fn database_exists(admin: &sea_orm::DatabaseConnection, name: &str) -> bool {
    use sea_orm::ConnectionTrait;
    let lookup = sea_orm::Statement::from_sql_and_values(
        admin.get_database_backend(),
        "SELECT 1 FROM pg_database WHERE datname = $1",
        [name.into()],
    );
    admin.query_one_raw(lookup).await.expect("look the test database up").is_some()
}

/// `base` with its database (the URL's path) replaced by `name`, query string kept.
fn replace_database(base: &str, name: &str) -> String {
    let (without_query, query) = base.split_once('?').map_or((base, None), |(url, query)| (url, Some(query)));
    let authority_end = without_query.find("://").map_or(0, |scheme| scheme + 3);
    let server =
        without_query[authority_end..].find('/').map_or(without_query, |slash| &without_query[..authority_end + slash]);
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// `GET /metrics` of the server at `addr`, over plain HTTP/1.1 (on a blocking thread: the
/// server may share the test's runtime).
///
/// # Panics
/// When the server does not answer.
pub async fn metrics_page(addr: SocketAddr) -> String {
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).expect("connect for /metrics");
        write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").expect("ask /metrics");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read /metrics");
        response
    })
    .await
    .expect("the /metrics reader")
}

/// The value of `name`'s first series in a `/metrics` page (labelled or not), if it is there.
#[must_use]
pub fn metric(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .filter_map(|line| line.strip_prefix(name))
        .find_map(|rest| match rest.strip_prefix('{') {
            Some(labelled) => labelled.split_once("} ").map(|(_, value)| value),
            None => rest.strip_prefix(' '),
        })
        .and_then(|value| value.trim().parse().ok())
}

/// `xiaowo_retention_pruned_total` of `service`'s `table` on a `/metrics` page; 0 before its
/// first prune.
#[must_use]
pub fn pruned(page: &str, service: &str, table: &str) -> u64 {
    let (service, table) = (format!("service=\"{service}\""), format!("table=\"{table}\""));
    page.lines()
        .filter(|line| line.starts_with(&format!("{}{{", crate::retention::PRUNED_METRIC)))
        .filter(|line| line.contains(&service) && line.contains(&table))
        .find_map(|line| line.rsplit_once(' ').and_then(|(_, value)| value.parse().ok()))
        .unwrap_or(0)
}

/// The clock time (Unix milliseconds) as of which `service`'s last retention pass finished, as
/// a `/metrics` page says (in seconds with millisecond digits); `None` before the first.
#[must_use]
pub fn last_retention_pass_ms(page: &str, service: &str) -> Option<i64> {
    let service = format!("service=\"{service}\"");
    let value = page
        .lines()
        .filter(|line| line.starts_with(&format!("{}{{", crate::retention::LAST_PASS_METRIC)))
        .filter(|line| line.contains(&service))
        .find_map(|line| line.rsplit_once(' ').map(|(_, value)| value.trim().to_owned()))?;
    // Read as decimal digits rather than through a float, so that no millisecond is lost.
    let (seconds, fraction) = value.split_once('.').unwrap_or((&value, ""));
    let millis: String = fraction.chars().chain(std::iter::repeat('0')).take(3).collect();
    Some(seconds.parse::<i64>().ok()? * 1000 + millis.parse::<i64>().ok()?)
}

/// Waits (at most [`PATIENCE`]) until `service`'s retention janitor has finished a pass as of
/// `now_ms`; the `/metrics` page of `addr` then.
///
/// # Panics
/// When no such pass finishes in time.
pub async fn retention_pass_done(addr: SocketAddr, service: &str, now_ms: i64) -> String {
    let mut page = String::new();
    eventually("a retention pass as of the clock's time", async || {
        page = metrics_page(addr).await;
        last_retention_pass_ms(&page, service).is_some_and(|done| done >= now_ms)
    })
    .await;
    page
}

/// A child process of the test, usually the real `xiaowo` binary, whose stdout is echoed and
/// kept; killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct Spawned {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    addrs: std::sync::mpsc::Receiver<SocketAddr>,
}

impl Spawned {
    /// Starts `command` with its stdout captured. Each line is echoed as `<name>: <line>`
    /// (so that the test's output shows it) and kept for [`Self::wait_for_log`].
    ///
    /// # Panics
    /// When the program cannot be started.
    #[must_use]
    pub fn start(name: &str, mut command: Command) -> Self {
        let mut child = command.stdout(Stdio::piped()).spawn().expect("start the program");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, addrs) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (lines, name) = (Arc::clone(&log), name.to_owned());
        std::thread::spawn(move || {
            // Keeps draining the pipe for the process's whole life, so that it never blocks.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("listening")
                    && let Some(addr) = line.split(" addr=").nth(1).and_then(|rest| rest.split_whitespace().next())
                    && let Ok(addr) = addr.parse()
                {
                    let _ = sender.send(addr);
                }
                println!("{name}: {line}");
                lines.lock().expect("the log").push(line);
            }
        });
        Self { child, log, addrs }
    }

    /// The address of the next server the process says it listens on (`xiaowo` logs one
    /// `listening addr=…` line per server), within [`PATIENCE`].
    ///
    /// # Panics
    /// When it says none in time (it failed to start: its output is above).
    #[must_use]
    pub fn next_addr(&self) -> SocketAddr {
        self.addrs.recv_timeout(PATIENCE * 3).expect("the process said where it listens")
    }

    /// The first line logged so far that contains every one of `parts`.
    #[must_use]
    pub fn logged(&self, parts: &[&str]) -> Option<String> {
        self.log.lock().expect("the log").iter().find(|line| parts.iter().all(|part| line.contains(part))).cloned()
    }

    /// The first line logged so far, or within [`PATIENCE`], that contains every one of `parts`.
    #[must_use]
    pub fn wait_for_log(&self, parts: &[&str]) -> Option<String> {
        let deadline = std::time::Instant::now() + PATIENCE;
        loop {
            let found = self.logged(parts);
            if found.is_some() || std::time::Instant::now() >= deadline {
                return found;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process, e.g. to signal it or wait for it.
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// SIGKILL: no drain, no flush, no goodbye.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::{last_retention_pass_ms, pruned, replace_database};

    #[test]
    fn retention_figures_are_read_from_a_metrics_page() {
        let page = "xiaowo_retention_pruned_total{service=\"room\",table=\"rooms\"} 1001\n\
                    xiaowo_retention_last_pass_timestamp_seconds{service=\"room\"} 1800000000.001\n\
                    xiaowo_retention_last_pass_timestamp_seconds{service=\"sync\"} 1800000001\n";
        assert_eq!(pruned(page, "room", "rooms"), 1001);
        assert_eq!(pruned(page, "room", "audit_logs"), 0);
        assert_eq!(last_retention_pass_ms(page, "room"), Some(1_800_000_000_001));
        assert_eq!(last_retention_pass_ms(page, "sync"), Some(1_800_000_001_000));
        assert_eq!(last_retention_pass_ms(page, "chat"), None);
    }

    #[test]
    fn database_is_replaced_and_query_kept() {
        assert_eq!(replace_database("postgres://u@h:1/base", "t"), "postgres://u@h:1/t");
        assert_eq!(replace_database("postgres://u@h:1", "t"), "postgres://u@h:1/t");
        assert_eq!(
            replace_database("postgres://u@h:1/base?sslmode=disable", "t"),
            "postgres://u@h:1/t?sslmode=disable"
        );
    }
}
