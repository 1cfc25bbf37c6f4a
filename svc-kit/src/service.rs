//! The one shape every service has: a library whose entry point is
//!
//! ```text
//! pub async fn build(config: &Config, deps: Deps, assembly: &mut Assembly) -> Result<(), BuildError>
//! ```
//!
//! `config` is the service's own clap block; [`Deps`] is everything the process decides for it
//! (database, clock, credentials, the retention policy, peers, the broker); the service connects
//! its database, registers its gRPC services behind their [`Guard`]s and spawns its workers
//! into the [`Assembly`], which serves them on one port beside whatever else the process runs.
//! The binary (`xiaowo`'s `node`) and the test harness start every service this way.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;

use crate::auth::{AdminToken, Guard, InternalToken};
use crate::bus::Broker;
use crate::clock::SharedClock;
use crate::db::DbOptions;
use crate::peer::Peers;
use crate::peer::room::RoomAccessClient;
use crate::peer::session::SessionValidator;
use crate::retention::RetentionConfig;
use crate::server::Assembly;

/// What the process hands every service it builds.
#[derive(Debug, Clone)]
pub struct Deps {
    /// The service's database (`sqlite://…` or `postgres://…`).
    pub database_url: String,
    /// How SQLite connections are opened (busy timeout, durability, encryption key).
    pub db_options: DbOptions,
    /// The clock every rule that involves time reads (tests move it by hand).
    pub clock: SharedClock,
    /// The operator's token for admin RPCs.
    pub admin: AdminToken,
    /// The secret services present to each other's internal APIs; `None` leaves those open.
    pub internal_token: Option<InternalToken>,
    /// How long each service keeps what it no longer needs.
    pub retention: RetentionConfig,
    /// Channels to the other services.
    pub peers: Peers,
    /// The broker between instances, when several run.
    pub broker: Option<Broker>,
}

/// Why a service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// A setting (or a file it names) is unusable; the source says which and why.
    #[error(transparent)]
    Config(Box<dyn std::error::Error + Send + Sync>),
}

impl BuildError {
    /// A refused setting.
    pub fn config(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Config(Box::new(error))
    }
}

impl Deps {
    /// Connects the service's database and brings its schema up to date.
    ///
    /// # Errors
    /// When the database cannot be opened or migrated.
    pub async fn database<M: MigratorTrait>(&self) -> Result<DatabaseConnection, BuildError> {
        Ok(crate::db::connect::<M>(&self.database_url, &self.db_options).await?)
    }

    /// A connection to the service's database that runs single statements on the calling
    /// thread ([`crate::db::HeldConnection`]), `fallback` running what finds it locked; `None`
    /// where there is none. Open it after [`Self::database`].
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn held_connection(
        &self,
        fallback: &DatabaseConnection,
    ) -> Result<Option<crate::db::HeldConnection>, BuildError> {
        Ok(crate::db::HeldConnection::open(&self.db_options, fallback.clone())?)
    }

    /// The guard of `service`'s admin API.
    #[must_use]
    pub fn admin_guard(&self, assembly: &Assembly, service: &str) -> Guard {
        Guard::admin(self.admin.clone(), assembly.metrics().registry(), service)
    }

    /// The guard of `service`'s internal API.
    #[must_use]
    pub fn internal_guard(&self, assembly: &Assembly, service: &str) -> Guard {
        Guard::internal(self.internal_token.clone(), assembly.metrics().registry(), service)
    }

    /// The guard of `service`'s public API: callers need a session, validated by session-svc
    /// and cached for `cache_ttl`. Registers the worker that follows session-svc's changes, so
    /// that an ended session drops out of the cache at once and answers can be kept longer.
    #[must_use]
    pub fn session_guard(&self, cache_ttl: Duration, assembly: &mut Assembly, service: &str) -> Guard {
        let sessions = Arc::new(
            SessionValidator::new(self.peers.session.clone(), cache_ttl)
                .with_internal_token(self.internal_token.clone()),
        );
        let (follower, shutdown) = (Arc::clone(&sessions), assembly.shutdown_token());
        assembly.spawn_worker(format!("{service}-session-changes"), async move {
            follower.follow_session_changes(shutdown).await;
        });
        Guard::sessions(sessions, assembly.metrics().registry(), service)
    }

    /// A client of room-svc's internal API keeping access answers for `cache_ttl` and reporting
    /// each room's activity at most once per `activity_interval`. Following room-svc's events
    /// is left to the service, which decides what they mean to it.
    #[must_use]
    pub fn room_access(&self, cache_ttl: Duration, activity_interval: Duration) -> Arc<RoomAccessClient> {
        Arc::new(
            RoomAccessClient::new(self.peers.room.clone(), cache_ttl, activity_interval)
                .with_internal_token(self.internal_token.clone()),
        )
    }
}
