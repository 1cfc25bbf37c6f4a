//! chat-svc: room chat (the seed's `messages`). Members send plain-text messages that are
//! committed — in small batches through one writer (group commit) — before the sender hears
//! back, numbered per room without gaps by the database, and fanned out to the room's watch
//! streams through one publish/subscribe boundary. Watchers replay what they missed from the
//! database and then go live; clients report received/read cursors; moderators delete
//! messages and mute members. Asks session-svc who the caller is and room-svc whether they
//! belong in the room; follows room-svc's events to end the streams of removed members and
//! closed rooms.

mod access;
pub mod chat;
pub mod config;
mod entity;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod grpc;
mod migration;
pub mod model;
pub mod pubsub;
mod retention;
mod store;
mod writer;

use std::sync::Arc;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge};
use proto::chat::v1::chat_admin_service_server::ChatAdminServiceServer;
use proto::chat::v1::chat_service_server::ChatServiceServer;
use svc_kit::metrics::{Refusal, refusal_counter, registered};
use svc_kit::ratelimit::KeyedLimiter;
use svc_kit::server::Assembly;
use svc_kit::service::{BuildError, Deps};

pub use config::Config;
pub use error::Error;
pub use migration::Migrator;

use crate::chat::{Chat, ChatSettings};
use crate::pubsub::{InProcess, Nats, PubSub};
use crate::store::Store;

/// chat-svc's domain metrics.
#[derive(Debug, Clone)]
pub struct ChatMetrics {
    pub(crate) messages_stored: IntCounter,
    pub(crate) batch_size: Histogram,
    pub(crate) watchers: IntGauge,
    pub(crate) lag_catch_ups: IntCounter,
    pub(crate) room_events_connected: IntGauge,
    permission_denied: IntCounter,
    flood_limited: IntCounter,
}

impl ChatMetrics {
    /// Creates and registers the metrics.
    #[must_use]
    pub fn new(registry: &prometheus::Registry) -> Self {
        Self {
            messages_stored: registered(
                registry,
                IntCounter::new("xiaowo_chat_messages_stored_total", "Messages committed."),
            ),
            batch_size: registered(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new("xiaowo_chat_write_batch_size", "Messages committed per transaction.")
                        .buckets(vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0]),
                ),
            ),
            watchers: registered(registry, IntGauge::new("xiaowo_chat_watchers", "Open WatchMessages streams.")),
            lag_catch_ups: registered(
                registry,
                IntCounter::new(
                    "xiaowo_chat_watch_lag_catch_ups_total",
                    "Times a watcher fell behind the live buffer and caught up from the database.",
                ),
            ),
            room_events_connected: registered(
                registry,
                IntGauge::new(
                    "xiaowo_chat_room_events_connected",
                    "1 while room-svc's event stream is subscribed, else 0.",
                ),
            ),
            permission_denied: refusal_counter(registry, Refusal::PermissionDenied, "chat"),
            flood_limited: refusal_counter(registry, Refusal::FloodLimited, "chat"),
        }
    }

    /// Counts a refused request for monitor-svc's anomaly rules.
    pub(crate) fn note_refusal(&self, error: &Error) {
        match error {
            Error::NotMember | Error::Forbidden(_) | Error::Muted { .. } => self.permission_denied.inc(),
            Error::RateLimited(_) => self.flood_limited.inc(),
            _ => {}
        }
    }
}

/// Connects chat-svc's database, registers its gRPC services, its writer, its room-event
/// follower, the broker follower when there is a broker, and its retention janitor (chat of
/// rooms closed longer than the period). The SQLite `synchronous` level is chat's own
/// (`config.synchronous`), whatever `deps.db_options` says, because acknowledged messages are
/// promised to be durable.
///
/// # Errors
/// When the database cannot be opened or migrated.
pub async fn build(config: &Config, mut deps: Deps, assembly: &mut Assembly) -> Result<(), BuildError> {
    deps.db_options.synchronous = config.synchronous;
    if config.watch_buffer.is_some() {
        tracing::warn!("--chat-watch-buffer is ignored: a watcher waits in its room's buffer (--chat-room-buffer)");
    }
    let db = deps.database::<Migrator>().await?;
    let registry = assembly.metrics().registry().clone();
    let writer = svc_kit::db::writer(&db).await?;
    let store = Store::new(db, writer);
    let (janitor, closed_rooms) =
        retention::ChatRetention::new(store.clone(), Arc::clone(&deps.clock), &deps.retention, &registry);
    let metrics = ChatMetrics::new(&registry);
    let nats = deps.broker.clone().map(|broker| Arc::new(Nats::new(config.room_buffer, broker)));
    let pubsub: Arc<dyn PubSub> = match &nats {
        Some(nats) => Arc::clone(nats) as Arc<dyn PubSub>,
        None => Arc::new(InProcess::new(config.room_buffer)),
    };
    let shutdown = assembly.shutdown_token();

    let (writer, writer_task) = writer::channel(
        config.write_queue,
        writer::WriterTask {
            store: store.clone(),
            pubsub: Arc::clone(&pubsub),
            metrics: metrics.clone(),
            batch_max: config.write_batch,
            linger: config.write_linger,
        },
        shutdown.clone(),
    );
    assembly.spawn_worker("chat-writer", writer_task);
    if let Some(nats) = nats {
        assembly.spawn_worker("chat-bus", nats.run(shutdown.clone()));
    }

    let access = deps.room_access(config.access_cache_ttl, config.activity_interval);
    assembly.spawn_worker("chat-retention", janitor.run(deps.retention.interval, shutdown.clone()));
    assembly.spawn_worker(
        "chat-room-events",
        access::follow_room_events(
            Arc::clone(&access),
            Arc::clone(&pubsub),
            metrics.room_events_connected.clone(),
            closed_rooms,
            shutdown.clone(),
        ),
    );

    let chat = Arc::new(Chat {
        store,
        writer,
        pubsub,
        access,
        flood: KeyedLimiter::new(config.flood_burst, config.flood_per_second),
        clock: Arc::clone(&deps.clock),
        settings: ChatSettings {
            max_replay: i64::from(config.max_replay),
            heartbeat_interval: config.heartbeat_interval,
        },
        metrics,
        shutdown,
    });
    assembly.spawn_worker("chat-heartbeats", Arc::clone(&chat).run_heartbeats());
    let max_message = assembly.config().max_message_bytes;
    let public = ChatServiceServer::new(grpc::PublicApi { chat: Arc::clone(&chat) })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    let guard = deps.session_guard(config.session_cache_ttl, assembly, "chat");
    assembly.add_web_stream(grpc::watch_messages_for_browsers(grpc::PublicApi { chat: Arc::clone(&chat) }, &guard));
    assembly.add_service(guard.wrap(public));
    let admin = ChatAdminServiceServer::new(grpc::AdminApi { chat })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    assembly.add_service(deps.admin_guard(assembly, "chat").wrap(admin));
    Ok(())
}
