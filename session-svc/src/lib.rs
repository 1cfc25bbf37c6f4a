//! session-svc: anonymous sessions (the seed's `user_sessions`). Issues bearer tokens and the
//! session cookie, validates tokens for the other services (sliding idle expiry capped by an
//! absolute lifetime), looks up display names in batches, lets operators list and revoke
//! sessions, and deletes expired rows on a schedule. Streams session ends and renames to the
//! services that cache validations. Owns its database; calls no other service.

pub mod config;
mod entity;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod grpc;
mod migration;
pub mod sessions;
mod store;

use std::sync::Arc;

use proto::session::v1::session_admin_service_server::SessionAdminServiceServer;
use proto::session::v1::session_internal_service_server::SessionInternalServiceServer;
use proto::session::v1::session_service_server::SessionServiceServer;
use svc_kit::ratelimit::KeyedLimiter;
use svc_kit::server::Assembly;
use svc_kit::service::{BuildError, Deps};

pub use config::Config;
pub use error::Error;
pub use migration::Migrator;

use crate::sessions::{SessionMetrics, Sessions};

/// Connects session-svc's database, registers its three gRPC services and its janitor. Its
/// public API needs no guard: it is where sessions are made, and each call that takes a token
/// acts on that very session.
///
/// # Errors
/// When the database cannot be opened or migrated.
pub async fn build(config: &Config, deps: Deps, assembly: &mut Assembly) -> Result<(), BuildError> {
    let db = deps.database::<Migrator>().await?;
    let metrics = SessionMetrics::new(assembly.metrics().registry());
    let sessions = Arc::new(Sessions::new(store::Store::new(db), Arc::clone(&deps.clock), config, metrics));
    // Counted before the first call, so that every start and end after it moves a true figure.
    sessions.count_live().await?;
    let max_message = assembly.config().max_message_bytes;
    let per_second = f64::from(config.create_per_minute) / 60.0;

    assembly.add_service(
        SessionServiceServer::new(grpc::PublicApi {
            sessions: Arc::clone(&sessions),
            cookie_security: config.cookie_security,
            create_limiter: Arc::new(KeyedLimiter::new(config.create_burst, per_second)),
        })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message),
    );
    let internal = SessionInternalServiceServer::new(grpc::InternalApi {
        sessions: Arc::clone(&sessions),
        clock: Arc::clone(&deps.clock),
        heartbeat: config.heartbeat_interval,
        shutdown: assembly.shutdown_token(),
    })
    .max_decoding_message_size(max_message)
    .max_encoding_message_size(max_message);
    assembly.add_service(deps.internal_guard(assembly, "session").wrap(internal));
    let admin = SessionAdminServiceServer::new(grpc::AdminApi { sessions: Arc::clone(&sessions) })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    assembly.add_service(deps.admin_guard(assembly, "session").wrap(admin));
    let shutdown = assembly.shutdown_token();
    assembly.spawn_worker("session-janitor", sessions.run_janitor(config.janitor_interval, shutdown));
    Ok(())
}
