//! One tonic server per process, whatever services it runs: native gRPC (HTTP/2) and gRPC-web
//! (HTTP/1.1) on one port, gRPC health with a status per service, reflection v1 and v1alpha,
//! `/metrics`, and optionally the web client's static files.
//!
//! The life of a server: [`Assembly::bind`] takes the port (port 0 allowed; the real address is
//! known at once, so peers in the same process can be pointed at it), services register
//! themselves and their background workers, then [`Assembly::run`] serves until the shutdown
//! token is cancelled: health flips to `NOT_SERVING`, the listener closes, open calls drain for
//! at most the grace period, and workers stop.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::{Routes, RoutesBuilder};
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;
use tower::ServiceBuilder;
use tower_http::services::{ServeDir, ServeFile};

use crate::metrics::Metrics;

/// Server settings shared by every service in the process.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerConfig {
    /// Largest request or response message in bytes.
    #[arg(long = "max-message-bytes", env = "XIAOWO_MAX_MESSAGE_BYTES", default_value_t = 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Most concurrent HTTP/2 streams (calls) on one connection.
    #[arg(long = "max-concurrent-streams", env = "XIAOWO_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    pub max_concurrent_streams: u32,
    /// Most connections one client address may hold open (0: no limit). Behind a proxy all
    /// connections come from the proxy: raise this or set 0 there, and let the proxy limit.
    #[arg(long = "max-connections-per-ip", env = "XIAOWO_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: u32,
    /// How long open calls may drain after a shutdown request (e.g. `10s`).
    #[arg(long = "shutdown-grace", env = "XIAOWO_SHUTDOWN_GRACE", default_value = "10s", value_parser = humantime_duration)]
    pub shutdown_grace: Duration,
}

fn humantime_duration(value: &str) -> Result<Duration, String> {
    parse_duration(value)
}

/// Parses `90s`, `15m`, `1h30m`, `7d`, `250ms` (the units people use in config files).
///
/// # Errors
/// A message naming the expected form.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    let value = value.trim();
    let mut total = Duration::ZERO;
    let mut rest = value;
    if rest.is_empty() {
        return Err("empty duration".to_owned());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("invalid duration {value:?}: expected e.g. 30s, 15m, 2h, 7d, 250ms"));
        }
        let number: u64 = rest[..digits].parse().map_err(|_| format!("invalid duration {value:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let seconds_per_unit = match unit {
            "ms" => None,
            "s" | "" => Some(1),
            "m" => Some(60),
            "h" => Some(3600),
            "d" => Some(86_400),
            _ => {
                return Err(format!("invalid duration unit {unit:?} in {value:?}: use ms, s, m, h or d"));
            }
        };
        // Checked: a huge number must be an error, not a wrapped value or a panic.
        let too_long = || format!("duration {value:?} is too long");
        let part = match seconds_per_unit {
            None => Duration::from_millis(number),
            Some(scale) => Duration::from_secs(number.checked_mul(scale).ok_or_else(too_long)?),
        };
        total = total.checked_add(part).ok_or_else(too_long)?;
    }
    Ok(total)
}

/// What the served web client may load and do: the same policy as its `<meta>` tag (which
/// cannot say `frame-ancestors`) and as nginx sends in split mode, so that injected markup in
/// room names or chat can run nothing even if the client ever rendered it as HTML.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; media-src 'self' http: https: blob:; connect-src 'self' https:; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

fn with_page_security_headers<B>(mut response: http::Response<B>) -> http::Response<B> {
    let headers = response.headers_mut();
    let policy = http::HeaderValue::from_static(CONTENT_SECURITY_POLICY);
    headers.insert(http::header::CONTENT_SECURITY_POLICY, policy);
    headers.insert(http::header::X_CONTENT_TYPE_OPTIONS, http::HeaderValue::from_static("nosniff"));
    headers.insert(http::header::REFERRER_POLICY, http::HeaderValue::from_static("no-referrer"));
    headers.insert(http::header::X_FRAME_OPTIONS, http::HeaderValue::from_static("DENY"));
    response
}

/// tonic's codec answers requests it cannot read with statuses that blame the server or name
/// the wrong limit: undecodable protobuf (above all a string that is not UTF-8) is `INTERNAL`,
/// a message over the size limit is `OUT_OF_RANGE`. Both are the caller's fault; this turns
/// exactly those answers into `INVALID_ARGUMENT` (with a `BadRequest`) and `RESOURCE_EXHAUSTED`
/// (as gRPC specifies for messages over the limit), and passes every other answer through.
pub fn caller_fault_status<B: Default>(response: http::Response<B>) -> http::Response<B> {
    let header = |name: &str| response.headers().get(name).map(http::HeaderValue::as_bytes);
    // The message is percent-encoded in `grpc-message`; these words survive that unchanged.
    let message = header("grpc-message").unwrap_or_default();
    let contains = |needle: &[u8]| message.windows(needle.len()).any(|window| window == needle);
    match header("grpc-status") {
        Some(b"13") if contains(b"decode") && contains(b"Protobuf") => {
            let violation =
                crate::status::Violation::new("request", "is not valid protobuf (a string that is not UTF-8?)");
            crate::status::invalid_argument(&[violation]).into_http()
        }
        Some(b"11") if contains(b"message") && contains(b"length") && contains(b"too") && contains(b"large") => {
            tonic::Status::resource_exhausted("the request message is larger than this server accepts").into_http()
        }
        _ => response,
    }
}

/// A request to a gRPC path that is neither gRPC nor gRPC-web gets HTTP 415, as the gRPC
/// protocol asks, instead of being read as gRPC frames (HTTP/2) or refused as a bad request
/// (HTTP/1.1).
async fn only_grpc_content(request: axum::extract::Request, next: axum::middleware::Next) -> axum::response::Response {
    let content_type = request.headers().get(http::header::CONTENT_TYPE).map(http::HeaderValue::as_bytes);
    if content_type.is_some_and(|value| value.starts_with(b"application/grpc")) {
        next.run(request).await
    } else {
        axum::response::IntoResponse::into_response(http::StatusCode::UNSUPPORTED_MEDIA_TYPE)
    }
}

type Worker = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A bound server that services register into before it runs.
pub struct Assembly {
    config: ServerConfig,
    listener: TcpListener,
    local_addr: SocketAddr,
    routes: RoutesBuilder,
    service_names: Vec<&'static str>,
    health: HealthReporter,
    health_service: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    metrics: Metrics,
    workers: Vec<(&'static str, Worker)>,
    static_dir: Option<PathBuf>,
    http_routes: Vec<axum::Router>,
    shutdown: CancellationToken,
    broker: Option<crate::bus::Broker>,
    internal_token: Option<crate::auth::InternalToken>,
}

impl std::fmt::Debug for Assembly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembly")
            .field("local_addr", &self.local_addr)
            .field("services", &self.service_names)
            .finish_non_exhaustive()
    }
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Binding or serving failed.
    #[error("server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The reflection descriptors did not load.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

impl Assembly {
    /// Binds `listen` (port 0 picks a free port). Cancelling `shutdown` stops the server.
    ///
    /// # Errors
    /// When the address cannot be bound.
    pub async fn bind(listen: SocketAddr, config: ServerConfig, shutdown: CancellationToken) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let health = HealthReporter::new();
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(health.clone()),
        );
        Ok(Self {
            config,
            listener,
            local_addr,
            routes: RoutesBuilder::default(),
            service_names: Vec::new(),
            health,
            health_service,
            metrics: Metrics::new(),
            workers: Vec::new(),
            static_dir: None,
            http_routes: Vec::new(),
            shutdown,
            broker: None,
            internal_token: None,
        })
    }

    /// The address actually bound.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// `http://<local address>`, for peers in the same process.
    #[must_use]
    pub fn local_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Server settings, e.g. the message size limit each service applies to its codec.
    #[must_use]
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The process's metrics registry.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// A token cancelled when the server shuts down, for workers and long-lived streams.
    #[must_use]
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.child_token()
    }

    /// The token that stops this server when cancelled (the one it was bound with).
    #[must_use]
    pub fn stop_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Carries room events between instances through `broker` (services built after this
    /// call publish and subscribe there as well as in-process).
    pub fn set_broker(&mut self, broker: crate::bus::Broker) {
        self.broker = Some(broker);
    }

    /// Guards the internal APIs of services built after this call with `token`, and makes
    /// their clients of other services' internal APIs present it.
    pub fn set_internal_token(&mut self, token: crate::auth::InternalToken) {
        self.internal_token = Some(token);
    }

    /// The service-to-service credential, when one is configured (without one, internal APIs
    /// answer anyone who reaches the port).
    #[must_use]
    pub fn internal_token(&self) -> Option<&crate::auth::InternalToken> {
        self.internal_token.as_ref()
    }

    /// An interceptor guarding `service`'s internal API with [`Self::internal_token`].
    #[must_use]
    pub fn internal_guard(&self, service: &str) -> crate::auth::InternalGuard {
        crate::auth::InternalGuard::new(self.internal_token.clone(), self.metrics.registry(), service)
    }

    /// The broker between instances, when one is configured.
    #[must_use]
    pub fn broker(&self) -> Option<&crate::bus::Broker> {
        self.broker.as_ref()
    }

    /// Serves a generated tonic service; its health status is `SERVING` while the server runs.
    pub fn add_service<S>(&mut self, service: S)
    where
        S: tower::Service<http::Request<tonic::body::Body>, Error = std::convert::Infallible>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Response: axum::response::IntoResponse,
        S::Future: Send + 'static,
    {
        self.service_names.push(S::NAME);
        self.routes.add_service(service);
    }

    /// Runs `worker` beside the server; it must return once the shutdown token is cancelled.
    pub fn spawn_worker(&mut self, name: &'static str, worker: impl Future<Output = ()> + Send + 'static) {
        self.workers.push((name, Box::pin(worker)));
    }

    /// Serves plain HTTP routes beside gRPC on the same port (e.g. uploads and file downloads,
    /// which gRPC-web cannot carry). They see requests as they arrive: no gRPC-web translation,
    /// no gRPC metrics; their paths must not overlap another service's.
    pub fn add_http_routes(&mut self, router: axum::Router) {
        self.http_routes.push(router);
    }

    /// Serves the files of `dir` for every path no service claims, `index.html` for unknown
    /// paths (the web client routes on its own).
    pub fn serve_static(&mut self, dir: PathBuf) {
        self.static_dir = Some(dir);
    }

    /// Serves until the shutdown token is cancelled, then drains.
    ///
    /// # Errors
    /// When reflection cannot be built or the transport fails.
    pub async fn run(self) -> Result<(), ServeError> {
        let Self {
            config,
            listener,
            local_addr,
            mut routes,
            service_names,
            health,
            health_service,
            metrics,
            workers,
            static_dir,
            http_routes,
            shutdown,
            broker: _,
            internal_token: _,
        } = self;

        let health_name =
            <tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService> as NamedService>::NAME;
        let mut reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name(health_name)
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection");
        for name in &service_names {
            reflection = reflection.with_service_name(*name);
        }
        let reflection_v1alpha = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET);
        let reflection_v1alpha = service_names
            .iter()
            .chain([&health_name, &"grpc.reflection.v1.ServerReflection", &"grpc.reflection.v1alpha.ServerReflection"])
            .fold(reflection_v1alpha, |builder, name| builder.with_service_name(*name));
        routes.add_service(reflection.build_v1()?);
        routes.add_service(reflection_v1alpha.build_v1alpha()?);
        routes.add_service(health_service);

        let grpc = routes
            .routes()
            .into_axum_router()
            .layer(tower::util::MapResponseLayer::new(caller_fault_status))
            .layer(metrics.layer());
        let grpc = ServiceBuilder::new()
            .layer(axum::middleware::from_fn(only_grpc_content))
            .layer(tonic_web::GrpcWebLayer::new())
            .service(grpc);
        let connection_limit =
            crate::connections::ConnectionLimit::new(config.max_connections_per_ip, metrics.registry());
        let mut app = axum::Router::new().route("/metrics", get(move || std::future::ready(metrics.render())));
        let all_names = service_names.iter().copied().chain([
            health_name,
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        ]);
        for name in all_names {
            app = app.route_service(&format!("/{name}/{{*method}}"), grpc.clone());
        }
        for router in http_routes {
            app = app.merge(router);
        }
        if let Some(dir) = static_dir {
            let index = dir.join("index.html");
            let files = ServeDir::new(dir).fallback(ServeFile::new(index));
            app = app.fallback_service(tower::util::MapResponse::new(files, with_page_security_headers));
        }

        for name in &service_names {
            health.set_service_status(*name, ServingStatus::Serving).await;
        }
        tracing::info!(%local_addr, services = ?service_names, "serving");

        let worker_handles: Vec<_> = workers.into_iter().map(|(name, worker)| (name, tokio::spawn(worker))).collect();

        let stop_accepting = {
            let shutdown = shutdown.clone();
            let health = health.clone();
            let service_names = service_names.clone();
            async move {
                shutdown.cancelled().await;
                // Health first, so that balancers stop sending before the listener closes.
                health.set_service_status("", ServingStatus::NotServing).await;
                for name in service_names {
                    health.set_service_status(name, ServingStatus::NotServing).await;
                }
                tracing::info!("not serving; draining");
            }
        };
        let incoming = connection_limit.apply(TcpIncoming::from(listener).with_nodelay(Some(true)));
        let server = Server::builder()
            .accept_http1(true)
            .max_concurrent_streams(config.max_concurrent_streams)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_routes(Routes::from(app))
            .serve_with_incoming_shutdown(incoming, stop_accepting);
        tokio::pin!(server);

        tokio::select! {
            result = &mut server => result?,
            () = shutdown.cancelled() => {
                match tokio::time::timeout(config.shutdown_grace, &mut server).await {
                    Ok(result) => result?,
                    Err(_) => tracing::warn!(grace = ?config.shutdown_grace, "grace period over; dropping open calls"),
                }
            }
        }

        for (name, handle) in worker_handles {
            match tokio::time::timeout(config.shutdown_grace, handle).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(worker = name, %error, "worker failed"),
                Err(_) => {
                    tracing::warn!(worker = name, "worker did not stop within the grace period")
                }
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("12"), Ok(Duration::from_secs(12)));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
    }

    /// These panicked on overflow (reproduced with fuzz/fuzz_targets/monitor_rules.rs).
    #[test]
    fn durations_too_long_for_a_duration_are_errors() {
        assert!(parse_duration("99999999999999999h").is_err());
        assert!(parse_duration("213503982334602d").is_err());
        assert!(parse_duration("18446744073709551615s1s").is_err());
        assert_eq!(parse_duration("18446744073709551615s"), Ok(Duration::from_secs(u64::MAX)));
    }
}
