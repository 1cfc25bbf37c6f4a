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
use svc_kit::server::Assembly;
use svc_kit::service::{BuildError, Deps};

pub use config::{Config, ScrapeTarget};
pub use error::Error;
pub use migration::Migrator;
pub use monitor::Monitor;

use crate::aggregate::Figures;
use crate::monitor::Setup;
use crate::notify::{Channel, Delivering, Notifier, Retry};
use crate::rules::RuleContext;

/// Validates monitor-svc's rules and notification settings, connects its database, and
/// registers its gRPC service (admin only), collector, janitor and one worker per notification
/// channel. It scrapes `config.targets` (the node fills in the defaults). The [`Monitor`] is
/// exposed on the assembly (`Arc<Monitor>`), so that an embedder can run a collection round at
/// a moment of its choosing.
///
/// # Errors
/// A refused rules file or notification setting ([`BuildError::Config`] holding a
/// [`rules::RulesError`] or a [`notify::ChannelError`]), or a database that cannot be opened.
pub async fn build(config: &Config, deps: Deps, assembly: &mut Assembly) -> Result<(), BuildError> {
    let targets = config.targets.clone();
    let services = targets.iter().map(|target| target.name.clone()).chain(aggregate::proto_domains());
    let context = RuleContext::new(&config.counters, &config.gauges, services);
    let rules = rules::load(config.rules_file.as_deref(), &context).map_err(BuildError::config)?;
    let channels = Channel::from_config(config).map_err(BuildError::config)?;
    let db = deps.database::<Migrator>().await?;
    let store = store::Store::new(db);
    let http = http::HttpClient::new();
    let shutdown = assembly.shutdown_token();
    let registry = assembly.metrics().registry().clone();
    let clock = Arc::clone(&deps.clock);

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
    let api = MonitorServiceServer::new(grpc::MonitorApi { monitor: Arc::clone(&monitor), shutdown: shutdown.clone() })
        .max_decoding_message_size(max_message)
        .max_encoding_message_size(max_message);
    assembly.add_service(deps.admin_guard(assembly, "monitor").wrap(api));
    assembly.spawn_worker(
        "monitor-collector",
        Arc::clone(&monitor).run_collector(config.scrape_interval, shutdown.clone()),
    );
    assembly.spawn_worker(
        "monitor-janitor",
        Arc::clone(&monitor).run_janitor(config.retention, config.janitor_interval, shutdown),
    );
    assembly.expose(monitor);
    Ok(())
}
