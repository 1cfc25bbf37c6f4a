//! media-svc: the library of files a room can play. Indexes the media directory (at start and
//! when it changes), takes resumable browser uploads over plain HTTP (tus 1.0) within limits,
//! probes every file with ffprobe (refusing what is not media, marking what browsers cannot
//! play), makes thumbnails with ffmpeg, converts what browsers cannot play to HLS in a bounded
//! background queue, and serves files (and HLS) with HTTP Range only through short-lived signed
//! URLs to members of a room that plays or queues them. Calls session-svc to
//! identify callers, room-svc for membership and sync-svc for a room's queue; owns its database
//! and the files under the media directory.

pub mod config;
pub mod convert;
mod entity;
mod error;
#[doc(hidden)]
pub mod fuzzing;
mod grpc;
mod http;
pub mod library;
mod migration;
pub mod model;
pub mod probe;
pub mod scan;
pub mod signing;
mod store;
pub mod subtitles;
pub mod uploads;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use proto::media::v1::media_admin_service_server::MediaAdminServiceServer;
use proto::media::v1::media_service_server::MediaServiceServer;
use svc_kit::server::Assembly;
use svc_kit::service::{BuildError, Deps};

pub use config::Config;
pub use error::Error;
pub use migration::Migrator;

use crate::library::{Dirs, Library, Limits, MediaMetrics};
use crate::probe::Prober;
use crate::signing::UrlSigner;

/// Why media-svc refuses its settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// No media directory was configured.
    #[error("no media directory configured (--media-dir)")]
    NoMediaDir,
    /// The media directory could not be created or resolved.
    #[error("media directory {path}: {source}")]
    MediaDir { path: std::path::PathBuf, source: std::io::Error },
}

/// Connects media-svc's database, prepares the media directory, registers its gRPC services
/// behind their guards, its HTTP routes (uploads, files, thumbnails) and its workers
/// (directory scan, upload janitor, room event follower).
///
/// # Errors
/// When the database or the media directory cannot be opened.
pub async fn build(config: &Config, deps: Deps, assembly: &mut Assembly) -> Result<(), BuildError> {
    let media_dir = config.media_dir.clone().ok_or_else(|| BuildError::config(SettingsError::NoMediaDir))?;
    let dirs = Dirs::prepare(&media_dir)
        .map_err(|source| BuildError::config(SettingsError::MediaDir { path: media_dir.clone(), source }))?;
    let db = deps.database::<Migrator>().await?;
    // Every instance of one install signs and checks URLs with the same key, derived from the
    // secret they already share.
    let signer =
        deps.internal_token.as_ref().map_or_else(UrlSigner::random, |token| UrlSigner::from_secret(token.expose()));
    let access = deps.room_access(config.access_cache_ttl, config.access_cache_ttl);
    let library = Arc::new(Library {
        store: store::Store::new(db),
        clock: Arc::clone(&deps.clock),
        dirs,
        prober: Prober::new(config.ffprobe.clone(), config.ffmpeg.clone(), config.probe_timeout),
        limits: Limits::from_config(config),
        signer,
        access: Arc::clone(&access),
        queue: Arc::new(grpc::SyncQueue::new(deps.peers.sync.clone())),
        metrics: MediaMetrics::new(assembly.metrics().registry()),
        placing: tokio::sync::Mutex::new(()),
        receiving: Mutex::new(HashSet::new()),
        not_media: Mutex::new(HashMap::new()),
        served: Mutex::new(HashMap::new()),
        conversions: convert::Conversions::new(config, assembly.shutdown_token(), assembly.metrics().registry()),
    });
    library.update_gauges().await;
    let max_message = assembly.config().max_message_bytes;
    // A subtitle file travels in one message: room for the largest one accepted.
    let subtitle_message = usize::try_from(config.subtitle_max_bytes).unwrap_or(usize::MAX).saturating_add(64 << 10);
    let guard = deps.session_guard(config.session_cache_ttl, assembly, "media");
    assembly.add_service(
        guard.wrap(
            MediaServiceServer::new(grpc::PublicApi { library: Arc::clone(&library) })
                .max_decoding_message_size(max_message.max(subtitle_message))
                .max_encoding_message_size(max_message),
        ),
    );
    assembly.add_service(
        deps.admin_guard(assembly, "media").wrap(
            MediaAdminServiceServer::new(grpc::AdminApi { library: Arc::clone(&library) })
                .max_decoding_message_size(max_message.max(subtitle_message))
                .max_encoding_message_size(max_message),
        ),
    );
    assembly.add_http_routes(http::router(Arc::new(http::HttpState { library: Arc::clone(&library), guard })));

    let shutdown = assembly.shutdown_token();
    assembly.spawn_worker("media-room-events", {
        let shutdown = shutdown.clone();
        // Only to keep cached membership current; media-svc acts on no room event itself.
        async move { access.follow_events(|_change| {}, |_connected| {}, shutdown).await }
    });
    assembly.spawn_worker("media-scan", Arc::clone(&library).run_scanner(config.scan_interval, shutdown.clone()));
    assembly.spawn_worker("media-convert", Arc::clone(&library).run_converters(shutdown.clone()));
    assembly.spawn_worker("media-upload-janitor", library.run_janitor(config.janitor_interval, shutdown));
    Ok(())
}
