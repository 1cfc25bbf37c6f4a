//! room-svc: rooms, their members and roles, password rooms, control modes and the audit log
//! (the seed's `rooms`, `room_members` and `audit_logs`). Answers sync-svc and chat-svc's
//! access checks, records the activity they report, streams every membership and room change
//! to them, and closes rooms that went idle. Calls session-svc (over gRPC) to identify callers
//! and to look up display names; owns its database.

pub mod config;
mod entity;
mod error;
pub mod events;
#[doc(hidden)]
pub mod fuzzing;
mod grpc;
mod migration;
pub mod model;
pub mod permissions;
mod retention;
pub mod rooms;
mod store;

use std::sync::Arc;

use proto::room::v1::room_admin_service_server::RoomAdminServiceServer;
use proto::room::v1::room_internal_service_server::RoomInternalServiceServer;
use proto::room::v1::room_service_server::RoomServiceServer;
use svc_kit::auth::{AdminToken, SessionValidator};
use svc_kit::clock::SharedClock;
use svc_kit::db::DbOptions;
use svc_kit::retention::RetentionConfig;
use svc_kit::server::Assembly;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub use config::Config;
pub use error::Error;
pub use migration::Migrator;

use crate::events::LocalBus;
use crate::rooms::{RoomMetrics, Rooms};

/// [`build_with_retention`] with a policy that keeps everything, for embedders that prune on
/// their own and tests that are not about retention.
///
/// # Errors
/// When the database cannot be opened or migrated.
pub async fn build(
    config: &Config,
    database_url: &str,
    db_options: &DbOptions,
    session: Channel,
    admin: AdminToken,
    clock: SharedClock,
    assembly: &mut Assembly,
) -> Result<(), sea_orm::DbErr> {
    let retention = RetentionConfig::keep_everything();
    build_with_retention(config, &retention, database_url, db_options, session, admin, clock, assembly).await
}

/// Connects room-svc's database, registers its three gRPC services, its idle janitor and its
/// retention janitor (closed rooms and audit rows past their periods). `session` is a channel
/// to session-svc (validation and display names).
///
/// # Errors
/// When the database cannot be opened or migrated.
#[allow(clippy::too_many_arguments)]
pub async fn build_with_retention(
    config: &Config,
    retention: &RetentionConfig,
    database_url: &str,
    db_options: &DbOptions,
    session: Channel,
    admin: AdminToken,
    clock: SharedClock,
    assembly: &mut Assembly,
) -> Result<(), sea_orm::DbErr> {
    let db = svc_kit::db::connect::<Migrator>(database_url, db_options).await?;
    let metrics = RoomMetrics::new(assembly.metrics().registry());
    let store = store::Store::new(db);
    let janitor =
        retention::RoomRetention::new(store.clone(), Arc::clone(&clock), retention, assembly.metrics().registry());
    let rooms = Arc::new(Rooms::new(
        store,
        Arc::clone(&clock),
        Arc::new(LocalBus::new(config.events_buffer)),
        Arc::new(grpc::SessionNames::new(session.clone(), assembly.internal_token().cloned())),
        config,
        metrics,
    ));
    let sessions = Arc::new(
        SessionValidator::new(session, config.session_cache_ttl)
            .with_internal_token(assembly.internal_token().cloned()),
    );
    // Session ends drop cached validations at once, so they can be kept much longer.
    let (session_follower, follower_shutdown) = (Arc::clone(&sessions), assembly.shutdown_token());
    assembly.spawn_worker("room-session-changes", async move {
        session_follower.follow_session_changes(follower_shutdown).await;
    });
    let max_message = assembly.config().max_message_bytes;

    assembly.add_service(
        RoomServiceServer::new(grpc::PublicApi { rooms: Arc::clone(&rooms), sessions })
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message),
    );
    let internal_guard = assembly.internal_guard("room");
    assembly.add_service(InterceptedService::new(
        RoomInternalServiceServer::new(grpc::InternalApi {
            rooms: Arc::clone(&rooms),
            clock,
            heartbeat: config.events_heartbeat,
            shutdown: assembly.shutdown_token(),
        })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message),
        internal_guard,
    ));
    assembly.add_service(
        RoomAdminServiceServer::new(grpc::AdminApi { rooms: Arc::clone(&rooms), admin })
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message),
    );
    let shutdown = assembly.shutdown_token();
    assembly.spawn_worker("room-janitor", rooms.run_janitor(config.janitor_interval, shutdown.clone()));
    assembly.spawn_worker("room-retention", janitor.run(retention.interval, shutdown));
    Ok(())
}
