//! sync-svc: the shared playback timeline of every room (media, paused, rate, position
//! anchored at a server time, and a version), its queue, NTP-style clock sync, and the live
//! room stream (snapshot, every change, presence with reported drift, heartbeats).
//!
//! Every accepted change is decided by a conditional update on the stored version and written
//! with its `sync_logs` row in one transaction, then published once per room through the
//! service's publish/subscribe boundary ([`bus`]). Calls room-svc for access (cached),
//! activity (debounced) and membership events, and session-svc to identify callers.

mod access;
pub mod bus;
pub mod config;
mod entity;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod grpc;
mod migration;
mod retention;
pub mod rooms;
mod store;
pub mod timeline;

use std::sync::Arc;

use proto::sync::v1::sync_admin_service_server::SyncAdminServiceServer;
use svc_kit::auth::{AdminToken, SessionValidator};
use svc_kit::clock::SharedClock;
use svc_kit::db::DbOptions;
use svc_kit::retention::RetentionConfig;
use svc_kit::rooms::{RoomAccessClient, RoomChange};
use svc_kit::server::Assembly;
use tonic::transport::Channel;

pub use config::Config;
pub use error::Error;
pub use migration::Migrator;

use crate::bus::{InProcessBus, NatsBus, RoomBus};
use crate::retention::ClosedRoom;
use crate::rooms::{Rooms, SyncMetrics};

/// Channels to the services sync-svc calls.
#[derive(Debug, Clone)]
pub struct Peers {
    /// session-svc, to identify callers.
    pub session: Channel,
    /// room-svc, for access, activity and membership events.
    pub room: Channel,
}

/// [`build_with_retention`] with a policy that keeps every sync log row.
///
/// # Errors
/// When the database cannot be opened or migrated.
pub async fn build(
    config: &Config,
    database_url: &str,
    db_options: &DbOptions,
    peers: Peers,
    admin: AdminToken,
    clock: SharedClock,
    assembly: &mut Assembly,
) -> Result<(), sea_orm::DbErr> {
    let retention = RetentionConfig::keep_everything();
    build_with_retention(config, &retention, database_url, db_options, peers, admin, clock, assembly).await
}

/// Connects sync-svc's database, registers its gRPC services and its background workers (the
/// room rules ticker, the room-svc event follower and the retention janitor of `sync_logs`).
///
/// # Errors
/// When the database cannot be opened or migrated.
#[allow(clippy::too_many_arguments)]
pub async fn build_with_retention(
    config: &Config,
    retention: &RetentionConfig,
    database_url: &str,
    db_options: &DbOptions,
    peers: Peers,
    admin: AdminToken,
    clock: SharedClock,
    assembly: &mut Assembly,
) -> Result<(), sea_orm::DbErr> {
    let db = svc_kit::db::connect::<Migrator>(database_url, db_options).await?;
    let metrics = SyncMetrics::new(assembly.metrics().registry());
    let store = store::Store::new(db);
    let (janitor, closed_rooms) =
        retention::SyncRetention::new(store.clone(), Arc::clone(&clock), retention, assembly.metrics().registry());
    let closing_clock = Arc::clone(&clock);
    let access = Arc::new(
        RoomAccessClient::new(peers.room, config.access_cache_ttl, config.activity_debounce)
            .with_internal_token(assembly.internal_token().cloned()),
    );
    let nats = assembly.broker().map(|broker| Arc::new(NatsBus::new(config.watcher_buffer, broker.clone())));
    let bus: Arc<dyn RoomBus> = match &nats {
        Some(nats) => Arc::clone(nats) as Arc<dyn RoomBus>,
        None => Arc::new(InProcessBus::new(config.watcher_buffer)),
    };
    let rooms = Arc::new(Rooms::new(store, bus, Arc::clone(&access), clock, config, metrics));
    let sessions = Arc::new(
        SessionValidator::new(peers.session, config.session_cache_ttl)
            .with_internal_token(assembly.internal_token().cloned()),
    );
    let max_message = assembly.config().max_message_bytes;
    let shutdown = assembly.shutdown_token();

    // Session ends drop cached validations at once, so they can be kept much longer.
    let (session_follower, follower_shutdown) = (Arc::clone(&sessions), shutdown.clone());
    assembly.spawn_worker("sync-session-changes", async move {
        session_follower.follow_session_changes(follower_shutdown).await;
    });
    let api = grpc::PublicApi { rooms: Arc::clone(&rooms), sessions, shutdown: shutdown.clone() };
    assembly.add_service(grpc::SyncServer::new(api, max_message));
    assembly.add_service(
        SyncAdminServiceServer::new(grpc::AdminApi { rooms: Arc::clone(&rooms), admin })
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message),
    );
    if let Some(nats) = nats {
        assembly.spawn_worker("sync-bus", nats.run(Arc::clone(&rooms), shutdown.clone()));
    }
    assembly.spawn_worker("sync-room-rules", Arc::clone(&rooms).run_ticker(config.tick_interval, shutdown.clone()));
    assembly.spawn_worker("sync-retention", janitor.run(retention.interval, shutdown.clone()));
    let follower_rooms = Arc::clone(&rooms);
    assembly.spawn_worker("sync-room-events", async move {
        let on_change = |change: RoomChange| {
            // Recorded before the room's streams hear of it; the janitor only stops at shutdown.
            if let RoomChange::Closed { room_id, closed_at_ms: _ } = &change {
                let closed = ClosedRoom { room_id: room_id.clone(), closed_at: closing_clock.now_ms() };
                let _ = closed_rooms.send(closed);
            }
            follower_rooms.on_room_change(change);
        };
        access.follow_events(on_change, |_connected| {}, shutdown).await;
    });
    Ok(())
}
