//! media-svc: the library of files a room can play. Indexes the media directory (at start and
//! when it changes), takes resumable browser uploads over plain HTTP (tus 1.0) within limits,
//! probes every file with ffprobe (refusing what is not media, marking what browsers cannot
//! play), makes thumbnails with ffmpeg, and serves files with HTTP Range only through
//! short-lived signed URLs to members of a room that plays or queues them. Calls session-svc to
//! identify callers, room-svc for membership and sync-svc for a room's queue; owns its database
//! and the files under the media directory.
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

pub mod config;
mod entity;
mod error;
mod grpc;
mod http;
pub mod library;
mod migration;
pub mod model;
pub mod probe;
pub mod scan;
pub mod signing;
mod store;
pub mod uploads;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use proto::media::v1::media_admin_service_server::MediaAdminServiceServer;
use proto::media::v1::media_service_server::MediaServiceServer;
use svc_kit::auth::{AdminToken, SessionValidator};
use svc_kit::clock::SharedClock;
use svc_kit::db::DbOptions;
use svc_kit::rooms::RoomAccessClient;
use svc_kit::server::Assembly;
use tonic::transport::Channel;

pub use config::Config;
pub use error::Error;
pub use migration::Migrator;

use crate::library::{Dirs, Library, Limits, MediaMetrics};
use crate::probe::Prober;
use crate::signing::UrlSigner;

/// Channels to the services media-svc calls.
#[derive(Debug, Clone)]
pub struct Peers {
    /// session-svc, to identify callers.
    pub session: Channel,
    /// room-svc, for membership.
    pub room: Channel,
    /// sync-svc, for what a room plays and queues.
    pub sync: Channel,
}

/// Why media-svc could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// No media directory was configured.
    #[error("no media directory configured (--media-dir)")]
    NoMediaDir,
    /// The media directory could not be created or resolved.
    #[error("media directory {path}: {source}")]
    MediaDir { path: PathBuf, source: std::io::Error },
}

/// Connects media-svc's database, prepares the media directory, registers its gRPC services,
/// its HTTP routes (uploads, files, thumbnails) and its workers (directory scan, upload
/// janitor, session and room event followers).
///
/// # Errors
/// When the database or the media directory cannot be opened.
pub async fn build(
    config: &Config,
    database_url: &str,
    db_options: &DbOptions,
    peers: Peers,
    admin: AdminToken,
    clock: SharedClock,
    assembly: &mut Assembly,
) -> Result<(), BuildError> {
    let media_dir = config.media_dir.clone().ok_or(BuildError::NoMediaDir)?;
    let dirs = Dirs::prepare(&media_dir).map_err(|source| BuildError::MediaDir { path: media_dir.clone(), source })?;
    let db = svc_kit::db::connect::<Migrator>(database_url, db_options).await?;
    let internal_token = assembly.internal_token().cloned();
    let signer = internal_token.as_ref().map_or_else(UrlSigner::random, |token| UrlSigner::from_secret(token.expose()));
    let access = Arc::new(
        RoomAccessClient::new(peers.room, config.access_cache_ttl, config.access_cache_ttl)
            .with_internal_token(internal_token.clone()),
    );
    let sessions =
        Arc::new(SessionValidator::new(peers.session, config.session_cache_ttl).with_internal_token(internal_token));
    let library = Arc::new(Library {
        store: store::Store::new(db),
        clock,
        dirs,
        prober: Prober::new(config.ffprobe.clone(), config.ffmpeg.clone(), config.probe_timeout),
        limits: Limits::from_config(config),
        signer,
        access: Arc::clone(&access),
        queue: Arc::new(grpc::SyncQueue::new(peers.sync)),
        metrics: MediaMetrics::new(assembly.metrics().registry()),
        placing: tokio::sync::Mutex::new(()),
        receiving: Mutex::new(HashSet::new()),
        not_media: Mutex::new(HashMap::new()),
        served: Mutex::new(HashMap::new()),
    });
    library.update_gauges().await;
    let max_message = assembly.config().max_message_bytes;
    assembly.add_service(
        MediaServiceServer::new(grpc::PublicApi { library: Arc::clone(&library), sessions: Arc::clone(&sessions) })
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message),
    );
    assembly.add_service(
        MediaAdminServiceServer::new(grpc::AdminApi { library: Arc::clone(&library), admin })
            .max_decoding_message_size(max_message)
            .max_encoding_message_size(max_message),
    );
    assembly.add_http_routes(http::router(Arc::new(http::HttpState {
        library: Arc::clone(&library),
        sessions: Arc::clone(&sessions),
    })));

    let shutdown = assembly.shutdown_token();
    let (session_follower, follower_shutdown) = (Arc::clone(&sessions), shutdown.clone());
    assembly.spawn_worker("media-session-changes", async move {
        session_follower.follow_session_changes(follower_shutdown).await;
    });
    let events_shutdown = shutdown.clone();
    assembly.spawn_worker("media-room-events", async move {
        // Only to keep cached membership current; media-svc acts on no room event itself.
        access.follow_events(|_change| {}, |_connected| {}, events_shutdown).await;
    });
    assembly.spawn_worker("media-scan", Arc::clone(&library).run_scanner(config.scan_interval, shutdown.clone()));
    assembly.spawn_worker("media-upload-janitor", library.run_janitor(config.janitor_interval, shutdown));
    Ok(())
}
