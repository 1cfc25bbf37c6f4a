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
use svc_kit::server::Assembly;
use svc_kit::service::{BuildError, Deps};

pub use config::Config;
pub use error::Error;
pub use migration::Migrator;

use crate::events::LocalBus;
use crate::rooms::{RoomMetrics, Rooms};

/// Connects room-svc's database, registers its three gRPC services, its idle janitor and its
/// retention janitor (closed rooms and audit rows past their periods). Calls session-svc
/// (`deps.peers.session`) to identify callers and for display names.
///
/// # Errors
/// When the database cannot be opened or migrated.
pub async fn build(config: &Config, deps: Deps, assembly: &mut Assembly) -> Result<(), BuildError> {
    let db = deps.database::<Migrator>().await?;
    let registry = assembly.metrics().registry().clone();
    let store = store::Store::new(db);
    let janitor = retention::RoomRetention::new(store.clone(), Arc::clone(&deps.clock), &deps.retention, &registry);
    let names = grpc::SessionNames::new(deps.peers.session.clone(), deps.internal_token.clone());
    let rooms = Arc::new(Rooms::new(
        store,
        Arc::clone(&deps.clock),
        Arc::new(LocalBus::new(config.events_buffer)),
        Arc::new(names),
        config,
        RoomMetrics::new(&registry),
    ));
    let max_message = assembly.config().max_message_bytes;

    let public = RoomServiceServer::new(grpc::PublicApi { rooms: Arc::clone(&rooms) })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let guard = deps.session_guard(config.session_cache_ttl, assembly, "room");
    assembly.add_service(guard.wrap(public));
    let internal = RoomInternalServiceServer::new(grpc::InternalApi {
        rooms: Arc::clone(&rooms),
        clock: Arc::clone(&deps.clock),
        heartbeat: config.heartbeat_interval,
        shutdown: assembly.shutdown_token(),
    })
    .max_decoding_message_size(max_message)
    .max_encoding_message_size(max_message);
    assembly.add_service(deps.internal_guard(assembly, "room").wrap(internal));
    let admin = RoomAdminServiceServer::new(grpc::AdminApi { rooms: Arc::clone(&rooms) })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    assembly.add_service(deps.admin_guard(assembly, "room").wrap(admin));
    let shutdown = assembly.shutdown_token();
    assembly.spawn_worker("room-janitor", rooms.run_janitor(config.janitor_interval, shutdown.clone()));
    assembly.spawn_worker("room-retention", janitor.run(deps.retention.interval, shutdown));
    Ok(())
}
