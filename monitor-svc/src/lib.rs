//! monitor-svc: the seed's monitoring flow. Scrapes every service's `/metrics` on an interval,
//! aggregates requests/s, error ratio, latency percentiles, open calls, memory and the domain
//! counters and gauges named in its config, stores them in `metrics` (with retention),
//! evaluates threshold rules into alerts (pending → firing → resolved, in `alerts`), and
//! notifies by webhook, e-mail and SMS gateway. Owns its database; calls other services only
//! over plain HTTP for their `/metrics`.

pub mod aggregate;
pub mod alerts;
pub mod config;
mod entity;
mod error;
mod grpc;
pub mod http;
mod migration;
pub mod monitor;
pub mod notify;
pub mod rules;
mod store;

use std::sync::Arc;

use proto::monitor::v1::monitor_service_server::MonitorServiceServer;
use svc_kit::auth::AdminToken;
use svc_kit::clock::SharedClock;
use svc_kit::db::DbOptions;
use svc_kit::server::Assembly;

pub use config::{Config, ScrapeTarget};
pub use error::Error;
pub use migration::Migrator;
pub use monitor::Monitor;

use crate::aggregate::Figures;
use crate::monitor::Setup;
use crate::notify::{Channel, ChannelError, Delivering, Notifier, Retry};
use crate::rules::{RuleContext, RulesError};

/// Why monitor-svc could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// The rules file was refused.
    #[error(transparent)]
    Rules(#[from] RulesError),
    /// A notification setting is unusable.
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

/// Connects monitor-svc's database, validates its rules and notification settings, and
/// registers its gRPC service, collector, janitor and one worker per notification channel.
/// `targets` are the services to scrape (the node decides the defaults). The returned handle
/// lets the caller run a collection round at a moment of its choosing.
///
/// # Errors
/// See [`BuildError`].
pub async fn build(
    config: &Config,
    targets: Vec<ScrapeTarget>,
    database_url: &str,
    db_options: &DbOptions,
    admin: AdminToken,
    clock: SharedClock,
    assembly: &mut Assembly,
) -> Result<Arc<Monitor>, BuildError> {
    let services = targets.iter().map(|target| target.name.clone()).chain(aggregate::proto_domains());
    let context = RuleContext::new(&config.counters, &config.gauges, services);
    let rules = rules::load(config.rules_file.as_deref(), &context)?;
    let channels = Channel::from_config(config)?;
    let db = svc_kit::db::connect::<Migrator>(database_url, db_options).await?;
    let store = store::Store::new(db);
    let http = http::HttpClient::new();
    let shutdown = assembly.shutdown_token();
    let registry = assembly.metrics().registry().clone();

    let delivering = Delivering {
        http: http.clone(),
        store: store.clone(),
        clock: clock.clone(),
        retry: Retry {
            attempts: config.notify_attempts,
            backoff: config.notify_backoff,
            timeout: config.notify_timeout,
        },
    };
    let (notifier, channel_workers) = Notifier::start(channels, &delivering, &registry, &shutdown);
    for (name, worker) in channel_workers {
        assembly.spawn_worker(name, worker);
    }
    let setup = Setup {
        targets,
        scrape_timeout: config.scrape_timeout,
        figures: Figures {
            counters: config.counters.clone(),
            gauges: config.gauges.clone(),
            histograms: config.histograms.clone(),
        },
        rules,
        context,
        http,
        notifier,
    };
    let monitor = Arc::new(Monitor::new(store, clock, setup, &registry).await?);

    let max_message = assembly.config().max_message_bytes;
    assembly.add_service(
        MonitorServiceServer::new(grpc::MonitorApi {
            monitor: Arc::clone(&monitor),
            admin,
            shutdown: shutdown.clone(),
        })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message),
    );
    assembly.spawn_worker(
        "monitor-collector",
        Arc::clone(&monitor).run_collector(config.scrape_interval, shutdown.clone()),
    );
    assembly.spawn_worker(
        "monitor-janitor",
        Arc::clone(&monitor).run_janitor(config.retention, config.janitor_interval, shutdown),
    );
    Ok(monitor)
}
