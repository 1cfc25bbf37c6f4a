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
use svc_kit::peer::room::RoomChange;
use svc_kit::server::Assembly;
use svc_kit::service::{BuildError, Deps};

pub use config::Config;
pub use error::Error;
pub use migration::Migrator;

use crate::bus::{InProcessBus, NatsBus, RoomBus};
use crate::retention::ClosedRoom;
use crate::rooms::{Rooms, SyncMetrics};

/// Connects sync-svc's database, registers its gRPC services and its background workers (the
/// room rules ticker, the room-svc event follower, the broker follower when there is a broker,
/// and the retention janitor of `sync_logs`).
///
/// # Errors
/// When the database cannot be opened or migrated.
pub async fn build(config: &Config, deps: Deps, assembly: &mut Assembly) -> Result<(), BuildError> {
    let db = deps.database::<Migrator>().await?;
    let registry = assembly.metrics().registry().clone();
    let writer = svc_kit::db::writer(&db).await?;
    let held = deps.held_connection(&writer)?;
    let store = store::Store::new(db, writer, held);
    let (janitor, closed_rooms) =
        retention::SyncRetention::new(store.clone(), Arc::clone(&deps.clock), &deps.retention, &registry);
    let access = deps.room_access(config.access_cache_ttl, config.activity_interval);
    let nats = deps.broker.clone().map(|broker| Arc::new(NatsBus::new(config.room_buffer, broker)));
    let bus: Arc<dyn RoomBus> = match &nats {
        Some(nats) => Arc::clone(nats) as Arc<dyn RoomBus>,
        None => Arc::new(InProcessBus::new(config.room_buffer)),
    };
    let metrics = SyncMetrics::new(&registry);
    let rooms = Arc::new(Rooms::new(store, bus, Arc::clone(&access), Arc::clone(&deps.clock), config, metrics));
    let max_message = assembly.config().max_message_bytes;
    let shutdown = assembly.shutdown_token();

    // Clock samples are taken before joining a room, so they need no session.
    let guard = deps.session_guard(config.session_cache_ttl, assembly, "sync").anonymous(&["GetClock"]);
    let api = grpc::PublicApi { rooms: Arc::clone(&rooms), shutdown: shutdown.clone() };
    assembly.add_web_stream(grpc::watch_room_for_browsers(api.clone(), &guard));
    assembly.add_service(guard.wrap(grpc::SyncServer::new(api, max_message)));
    let admin = SyncAdminServiceServer::new(grpc::AdminApi { rooms: Arc::clone(&rooms) })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    assembly.add_service(deps.admin_guard(assembly, "sync").wrap(admin));
    if let Some(nats) = nats {
        assembly.spawn_worker("sync-bus", nats.run(Arc::clone(&rooms), shutdown.clone()));
    }
    assembly.spawn_worker("sync-room-rules", Arc::clone(&rooms).run_ticker(config.tick_interval, shutdown.clone()));
    assembly.spawn_worker("sync-retention", janitor.run(deps.retention.interval, shutdown.clone()));
    let (follower_rooms, clock) = (Arc::clone(&rooms), Arc::clone(&deps.clock));
    assembly.spawn_worker("sync-room-events", async move {
        let on_change = |change: RoomChange| {
            // Recorded before the room's streams hear of it; the janitor only stops at shutdown.
            if let RoomChange::Closed { room_id, closed_at_ms: _ } = &change {
                let closed = ClosedRoom { room_id: room_id.clone(), closed_at: clock.now_ms() };
                let _ = closed_rooms.send(closed);
            }
            follower_rooms.on_room_change(change);
        };
        access.follow_events(on_change, |_connected| {}, shutdown).await;
    });
    Ok(())
}
