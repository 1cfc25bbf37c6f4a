//! The integration-test harness of every crate (the `testing` feature, enabled by the
//! dev-dependencies of the service crates and of this one; never in the binary).
//!
//! A [`Stack`] starts any set of services through the production path, [`node::start`], so
//! tests run the configuration an install runs: the internal token set (internal APIs refuse
//! callers without it), an admin token, one SQLite file per service in a fresh temporary
//! directory (or a fresh PostgreSQL database with `XIAOWO_TEST_POSTGRES`), and a manual clock
//! the test moves. Each [`Stack::start`] is one server (one `node::start` group) that can be
//! stopped and started again over the same databases; services started later find the ones
//! started earlier as their peers. Everything that needs no service is in `svc_kit::testing`.
#![allow(clippy::expect_used, clippy::unwrap_used, reason = "a harness that cannot set up stops the test there")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use proto::session::v1 as session_pb;
use proto::session::v1::session_service_client::SessionServiceClient;
use svc_kit::auth::InternalToken;
use svc_kit::clock::{ManualClock, SharedClock};
use svc_kit::retention::RetentionConfig;
use tokio_util::sync::CancellationToken;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::node::{self, Common, Peers, Plan, Running, Target};

/// The admin token every stack is started with.
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// Where a stack's manual clock starts (2027-01-15).
pub const START_MS: i64 = 1_800_000_000_000;

/// Services under test, over one temporary directory and one clock.
pub struct Stack {
    /// The configuration every [`Self::start`] uses: the flags' defaults (and `XIAOWO_*`
    /// variables), with the harness's settings on top; tests change it between starts.
    pub common: Common,
    /// The clock every service reads, standing at [`START_MS`] until the test moves it.
    pub clock: Arc<ManualClock>,
    /// Where the services that do not run in the server being started are: filled in by
    /// every start (a test may point one at a stand-in first, [`Self::set_peer`]).
    peers: Mutex<Peers>,
    internal_token: InternalToken,
    /// Each service's database, in the order of `Target::ALL`.
    databases: Vec<String>,
    system_clock: bool,
    starts: AtomicUsize,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Stack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack").field("dir", &self.dir.path()).finish_non_exhaustive()
    }
}

/// A session: its token and public id.
#[derive(Debug, Clone)]
pub struct User {
    pub token: String,
    pub user_id: String,
}

impl Stack {
    /// A stack over a fresh directory: every service's database named, the admin token and a
    /// fresh internal token set, retention off (a test about it sets it), the cheapest bcrypt
    /// cost and a short shutdown grace.
    pub async fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut common: Common = svc_kit::testing::from_env();
        common.data_dir = dir.path().join("data");
        common.admin_token = Some(ADMIN_TOKEN.to_owned());
        let internal_token = InternalToken::generate();
        common.internal_token = Some(internal_token.expose().to_owned());
        common.server.shutdown_grace = std::time::Duration::from_secs(2);
        common.retention = RetentionConfig::keep_everything();
        common.room.bcrypt_cost = 4;
        // One media directory for every start (each start has its own data directory), so that
        // a restarted media-svc finds its files.
        common.media.media_dir = Some(dir.path().join("media"));
        let mut databases = Vec::new();
        for target in Target::ALL {
            databases.push(svc_kit::testing::database_url(dir.path(), &format!("{}.db", target.name())).await);
        }
        name_databases(&mut common, &databases);
        Self {
            common,
            clock: ManualClock::new(START_MS),
            peers: Mutex::new(Peers::default()),
            internal_token,
            databases,
            system_clock: false,
            starts: AtomicUsize::new(0),
            dir,
        }
    }

    /// Changes the configuration of the starts that follow.
    #[must_use]
    pub fn with(mut self, configure: impl FnOnce(&mut Common)) -> Self {
        configure(&mut self.common);
        self
    }

    /// Starts that follow run on the system's clock instead of the manual one.
    #[must_use]
    pub fn on_system_clock(mut self) -> Self {
        self.system_clock = true;
        self
    }

    /// The test's temporary directory (the SQLite files are in it).
    #[must_use]
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The database `target` keeps its data in.
    #[must_use]
    pub fn database_url(&self, target: Target) -> String {
        self.common.database_url(target)
    }

    /// The install's internal token.
    #[must_use]
    pub fn internal_token(&self) -> &InternalToken {
        &self.internal_token
    }

    /// `message` as a call to an internal API, carrying the internal token.
    #[must_use]
    pub fn internal<T>(&self, message: T) -> tonic::Request<T> {
        InternalToken::request(Some(&self.internal_token), message)
    }

    /// Points the services started from now on at `url` for `target` (a stand-in, or a
    /// service of another stack).
    pub fn set_peer(&self, target: Target, url: &str) {
        let mut peers = self.peers.lock().expect("the peers");
        match target {
            Target::Session => peers.session_url = Some(url.to_owned()),
            Target::Room => peers.room_url = Some(url.to_owned()),
            Target::Sync => peers.sync_url = Some(url.to_owned()),
            Target::Chat | Target::Monitor | Target::Media => {}
        }
    }

    /// Starts `targets` in one server on a free loopback port.
    pub async fn start(&self, targets: &[Target]) -> Node {
        self.start_with(targets, |_| {}).await
    }

    /// Starts `targets` in one server with `configure` applied to this start's configuration
    /// only (e.g. a different internal token).
    ///
    /// # Panics
    /// When the services do not start.
    pub async fn start_with(&self, targets: &[Target], configure: impl FnOnce(&mut Common)) -> Node {
        self.try_start(any_port(), targets, None, configure).await.expect("the services start")
    }

    /// Starts `targets` in one server on `addr` (e.g. where a stopped server was).
    ///
    /// # Panics
    /// When the services do not start.
    pub async fn start_at(&self, addr: SocketAddr, targets: &[Target]) -> Node {
        self.try_start(addr, targets, None, |_| {}).await.expect("the services start")
    }

    /// Starts `targets` in one server on `addr` (port 0: any), on `clock` (default: the
    /// stack's), with `configure` applied to this start's configuration only; says why the
    /// services did not start.
    ///
    /// # Errors
    /// Whatever stopped `node::start`.
    pub async fn try_start(
        &self,
        addr: SocketAddr,
        targets: &[Target],
        clock: Option<SharedClock>,
        configure: impl FnOnce(&mut Common),
    ) -> Result<Node, node::StartError> {
        let mut common = self.common.clone();
        // Each server its own data directory (its lock files), so that a service can run twice
        // over the same databases, as instances on two hosts would.
        let start = self.starts.fetch_add(1, Ordering::SeqCst) + 1;
        common.data_dir = self.dir.path().join(format!("node-{start}"));
        configure(&mut common);
        // A test that replaced a service's whole config block keeps the stack's database.
        name_databases(&mut common, &self.databases);
        let clock = clock.unwrap_or_else(|| {
            if self.system_clock { svc_kit::clock::system() } else { Arc::clone(&self.clock) as SharedClock }
        });
        let shutdown = CancellationToken::new();
        let plan = Plan {
            groups: vec![(addr, targets.to_vec())],
            peers: self.peers.lock().expect("the peers").clone(),
            ..Plan::default()
        };
        let mut running = node::start(plan, &common, clock, &shutdown).await?;
        let server = running.servers.remove(0);
        let url = server.url();
        for target in targets {
            self.set_peer(*target, &url);
        }
        let internal_token = self.internal_token.clone();
        Ok(Node { addr: server.addr, url, exposed: server.exposed, internal_token, shutdown, running: Some(running) })
    }

    /// A channel to session-svc, wherever it was started.
    ///
    /// # Panics
    /// When no session-svc was started.
    #[must_use]
    pub fn session_channel(&self) -> Channel {
        let url = self.peers.lock().expect("the peers").session_url.clone().expect("session-svc started");
        svc_kit::peer::channel(&url, svc_kit::testing::PATIENCE).expect("a valid URL")
    }

    /// A new session named `name`.
    pub async fn user(&self, name: &str) -> User {
        let created = SessionServiceClient::new(self.session_channel())
            .create_session(session_pb::CreateSessionRequest { display_name: name.to_owned() })
            .await
            .expect("a session")
            .into_inner();
        User { token: created.token, user_id: created.session.expect("the session").user_id }
    }

    /// Where the databases of files-only tests are (SQLite).
    #[must_use]
    pub fn sqlite_file(&self, target: Target) -> PathBuf {
        self.dir.path().join(format!("{}.db", target.name()))
    }
}

/// Gives every service without a database URL in `common` its one from `databases` (in the
/// order of `Target::ALL`).
fn name_databases(common: &mut Common, databases: &[String]) {
    for (target, url) in Target::ALL.into_iter().zip(databases) {
        let configured = match target {
            Target::Session => &mut common.session.database_url,
            Target::Room => &mut common.room.database_url,
            Target::Sync => &mut common.sync.database_url,
            Target::Chat => &mut common.chat.database_url,
            Target::Monitor => &mut common.monitor.database_url,
            Target::Media => &mut common.media.database_url,
        };
        configured.get_or_insert_with(|| url.clone());
    }
}

/// `127.0.0.1:0`: a free loopback port.
#[must_use]
pub fn any_port() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

/// One running server of a [`Stack`]; stopped when dropped or by [`Node::stop`].
#[derive(Debug)]
pub struct Node {
    /// The address it listens on.
    pub addr: SocketAddr,
    /// `http://<addr>`.
    pub url: String,
    exposed: http::Extensions,
    internal_token: InternalToken,
    shutdown: CancellationToken,
    running: Option<Running>,
}

/// Adds the install's internal token to every call, as another service would.
#[derive(Debug, Clone)]
pub struct WithInternalToken(InternalToken);

impl Interceptor for WithInternalToken {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        self.0.attach(&mut request);
        Ok(request)
    }
}

/// A channel whose calls carry the internal token: for clients of internal APIs.
pub type InternalChannel = InterceptedService<Channel, WithInternalToken>;

impl Node {
    /// A channel to this server.
    #[must_use]
    pub fn channel(&self) -> Channel {
        svc_kit::peer::channel(&self.url, svc_kit::testing::PATIENCE).expect("a valid URL")
    }

    /// A channel to this server whose calls carry the internal token, as another service's.
    #[must_use]
    pub fn internal_channel(&self) -> InternalChannel {
        InterceptedService::new(self.channel(), WithInternalToken(self.internal_token.clone()))
    }

    /// What a service of this server exposed (e.g. monitor-svc's `Arc<Monitor>`).
    ///
    /// # Panics
    /// When none of its services exposed a `T`.
    #[must_use]
    pub fn exposed<T: Clone + Send + Sync + 'static>(&self) -> T {
        self.exposed.get::<T>().cloned().expect("a service of this server exposes it")
    }

    /// This server's `/metrics` page.
    pub async fn metrics(&self) -> String {
        svc_kit::testing::metrics_page(self.addr).await
    }

    /// Stops the server and waits until it has drained.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(running) = self.running.take() {
            running.wait().await.expect("the server stopped cleanly");
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `message` as a call by `user` (its bearer token).
#[must_use]
pub fn as_user<T>(message: T, user: &User) -> tonic::Request<T> {
    svc_kit::testing::with_bearer(message, &user.token)
}

/// `message` as a call by the operator (the admin token).
#[must_use]
pub fn as_admin<T>(message: T) -> tonic::Request<T> {
    svc_kit::testing::with_bearer(message, ADMIN_TOKEN)
}
