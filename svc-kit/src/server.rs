//! One tonic server per process, whatever services it runs: native gRPC (HTTP/2) and gRPC-web
//! (HTTP/1.1) on one port, gRPC health with a status per service, reflection v1 and v1alpha,
//! `/metrics`, and optionally the web client's static files.
//!
//! The life of a server: [`Assembly::bind`] takes the port (port 0 allowed; the real address is
//! known at once, so peers in the same process can be pointed at it), services register
//! themselves and their background workers, then [`Assembly::run`] serves until the shutdown
//! token is cancelled: health flips to `NOT_SERVING`, the listener closes, and open calls and
//! workers (which hear the same token) drain together under one deadline, the grace period:
//! whatever is still running then is dropped, so a stop never takes longer than the grace.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
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
    /// Reverse proxies whose `X-Forwarded-For` names the real client, comma-separated (by
    /// default loopback, where nginx runs in split mode). Limits per client address use it.
    #[arg(
        long = "trusted-proxies",
        env = "XIAOWO_TRUSTED_PROXIES",
        value_delimiter = ',',
        default_value = "127.0.0.1,::1"
    )]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// How long open calls and background workers may drain, together, after a shutdown
    /// request (e.g. `10s`); a stop takes at most this long.
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

/// What a request that does not decode is told, wherever it was decoded.
pub(crate) const NOT_PROTOBUF: &str = "is not valid protobuf (a string that is not UTF-8?)";
/// What a request message over `--max-message-bytes` is told, wherever it was read.
pub(crate) const TOO_LARGE: &str = "the request message is larger than this server accepts";

/// tonic's codec answers requests it cannot read with statuses that blame the server or name
/// the wrong limit: undecodable protobuf (above all a string that is not UTF-8) and broken
/// framing (a body that ends inside a message or its 5-byte prefix, a compressed flag without a
/// `grpc-encoding`, an unknown flag, gRPC-web text that is not base64) are `INTERNAL`, a message
/// over the size limit is `OUT_OF_RANGE`. All are the caller's fault; this turns exactly those
/// answers into `INVALID_ARGUMENT` (with a `BadRequest`) and `RESOURCE_EXHAUSTED` (as gRPC
/// specifies for messages over the limit), and passes every other answer through. (The gRPC
/// spec asks for `INTERNAL` on a compressed flag without an encoding; a server that tells a
/// client its own request is malformed serves operators better, whose alerts count `INTERNAL`
/// as the server's fault.)
pub fn caller_fault_status<B: Default>(response: http::Response<B>) -> http::Response<B> {
    let header = |name: &str| response.headers().get(name).map(http::HeaderValue::as_bytes);
    let message = percent_decoded(header("grpc-message").unwrap_or_default());
    let request_fault = |description: &str| {
        let violation = crate::status::Violation::new("request", description);
        crate::status::invalid_argument(&[violation]).into_http()
    };
    match header("grpc-status") {
        Some(b"13") if message.contains("decode") && message.contains("Protobuf") => request_fault(NOT_PROTOBUF),
        Some(b"13")
            if message.starts_with("protocol error: received message with")
                || message == "Unexpected EOF decoding stream."
                || message.starts_with("tonic-web: ") =>
        {
            request_fault(
                "is not a well-formed gRPC message (a cut-short body, an unknown or compressed frame flag without grpc-encoding, or gRPC-web text that is not base64)",
            )
        }
        Some(b"11") if message.contains("message length too large") => {
            tonic::Status::resource_exhausted(TOO_LARGE).into_http()
        }
        _ => response,
    }
}

/// `grpc-message` is percent-encoded; invalid escapes are kept as they are.
fn percent_decoded(encoded: &[u8]) -> String {
    let mut decoded = Vec::with_capacity(encoded.len());
    let mut index = 0;
    while index < encoded.len() {
        let escape = encoded.get(index + 1..index + 3).and_then(|hex| std::str::from_utf8(hex).ok());
        match (encoded[index], escape.and_then(|hex| u8::from_str_radix(hex, 16).ok())) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                index += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// Records on the request which client it came from ([`crate::address::ClientAddress`]).
pub(crate) fn with_client_address<B>(mut request: http::Request<B>, trusted: &[std::net::IpAddr]) -> http::Request<B> {
    if let Some((client, _)) = client_and_peer(&request, trusted) {
        request.extensions_mut().insert(crate::address::ClientAddress(client));
    }
    request
}

/// The client a request is from (the TCP peer, or whom a trusted proxy names in
/// `X-Forwarded-For`) and the TCP connection it came on.
fn client_and_peer<'a, B>(
    request: &'a http::Request<B>,
    trusted: &[std::net::IpAddr],
) -> Option<(std::net::IpAddr, &'a tonic::transport::server::TcpConnectInfo)> {
    let info = &request.extensions().get::<crate::connections::ConnectionInfo>()?.tcp;
    let peer = info.remote_addr()?;
    let forwarded_for = request.headers().get("x-forwarded-for").and_then(|value| value.to_str().ok());
    Some((crate::address::resolve(peer.ip(), forwarded_for, trusted), info))
}

/// The answer to a `/metrics` request from elsewhere on a guarded port.
const METRICS_REFUSED: &str = "/metrics is served to this host and to callers presenting the admin token \
     (Authorization: Bearer <token>); start with --metrics-public to serve it to everyone\n";

/// Whether the caller runs on this host: a loopback client, or one that connected to this
/// host's own address from that same address (a scraper using the machine's LAN address) and
/// was not forwarded by a proxy for someone else.
fn from_this_host<B>(request: &http::Request<B>, trusted: &[std::net::IpAddr]) -> bool {
    let Some((client, info)) = client_and_peer(request, trusted) else {
        return false;
    };
    let (Some(peer), Some(local)) = (info.remote_addr(), info.local_addr()) else {
        return false;
    };
    let client = client.to_canonical();
    client.is_loopback() || (client == peer.ip().to_canonical() && client == local.ip().to_canonical())
}

/// HTTP/2 requests name their host in the `:authority` pseudo-header, which gRPC metadata does
/// not carry; HTTP/1.1 requests send `Host`. Services that decide by host (the session cookie's
/// `Secure` and `__Host-` prefix on loopback) read `host`, so it is filled in from the
/// authority when missing.
pub(crate) fn with_host<B>(mut request: http::Request<B>) -> http::Request<B> {
    if !request.headers().contains_key(http::header::HOST)
        && let Some(authority) = request.uri().authority()
        && let Ok(value) = http::HeaderValue::from_str(authority.as_str())
    {
        request.headers_mut().insert(http::header::HOST, value);
    }
    request
}

/// A generated gRPC server, or anything served like one.
pub trait GrpcService:
    tower::Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<tonic::body::Body>,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> GrpcService for S where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

/// The gRPC services of a server: routed by path for hyper, and by name for the front that
/// serves browsers' calls on their connections ([`crate::web_stream`]).
struct GrpcRoutes {
    /// Each service under `/<name>/`, through [`GrpcEntry`].
    router: axum::Router,
    /// Each service's stack by its name.
    stacks: HashMap<&'static str, crate::web_stream::ServiceStack>,
}

impl GrpcRoutes {
    /// Adds `service` through [`grpc_stack`].
    fn add<S: GrpcService>(&mut self, service: S, metrics: &Metrics, trusted: &[std::net::IpAddr]) {
        let stack = grpc_stack(service, metrics, trusted.to_vec());
        let web = tower::Layer::layer(&tonic_web::GrpcWebLayer::new(), stack.clone());
        let entry = GrpcEntry { web, native: stack.clone() };
        let router = std::mem::take(&mut self.router);
        self.router = router.route_service(&format!("/{}/{{*method}}", S::NAME), entry);
        let boxed = tower::ServiceExt::map_response(stack, |response| response.map(tonic::body::Body::new));
        self.stacks.insert(S::NAME, crate::web_stream::ServiceStack::new(boxed));
    }
}

/// What every gRPC call passes through after the gRPC-web translation, outermost first:
/// metrics and the access log, the caller's address and host, and request faults reported as
/// `INVALID_ARGUMENT`. One stack per service rather than one router of all of them: a router
/// between them would wrap every response body twice more, and each wrapper is paid on every
/// frame of every stream.
fn grpc_stack<S: GrpcService>(
    service: S,
    metrics: &Metrics,
    trusted: Vec<std::net::IpAddr>,
) -> impl tower::Service<
    http::Request<tonic::body::Body>,
    Response = http::Response<crate::metrics::MetricsBody<tonic::body::Body>>,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    ServiceBuilder::new()
        .layer(metrics.layer())
        .layer(tower::util::MapRequestLayer::new(move |request| with_host(with_client_address(request, &trusted))))
        .layer(tower::util::MapResponseLayer::new(caller_fault_status))
        .service(service)
}

/// The way into a service's stack: hands native gRPC over HTTP/2 straight to the service and
/// everything else to tonic-web (which translates gRPC-web and refuses the rest); native calls
/// skip tonic-web's wrapping of their response body, which every frame of a stream would
/// otherwise pass through. A request that is neither gRPC nor gRPC-web gets HTTP 415, as the
/// gRPC protocol asks, instead of being read as gRPC frames (HTTP/2) or refused as a bad
/// request (HTTP/1.1).
#[derive(Clone)]
struct GrpcEntry<S> {
    native: S,
    web: tonic_web::GrpcWebService<S>,
}

impl<S, B> tower::Service<http::Request<axum::body::Body>> for GrpcEntry<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<B>, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + std::fmt::Display,
{
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), Self::Error>> {
        // Each call below readies its own clone.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<axum::body::Body>) -> Self::Future {
        use tower::ServiceExt;
        let content_type = request.headers().get(http::header::CONTENT_TYPE).map(http::HeaderValue::as_bytes);
        let grpc = content_type.is_some_and(|value| value.starts_with(b"application/grpc"));
        let web = content_type.is_some_and(|value| value.starts_with(b"application/grpc-web"));
        if !grpc {
            return Box::pin(std::future::ready(Ok(http::StatusCode::UNSUPPORTED_MEDIA_TYPE.into_response())));
        }
        if !web && request.version() == http::Version::HTTP_2 {
            let call = self.native.clone().oneshot(request.map(tonic::body::Body::new));
            Box::pin(async move { Ok(call.await?.map(axum::body::Body::new)) })
        } else {
            let call = self.web.clone().oneshot(request);
            Box::pin(async move { Ok(call.await?.map(axum::body::Body::new)) })
        }
    }
}

type Worker = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A bound server that services register into before it runs.
pub struct Assembly {
    config: ServerConfig,
    listener: TcpListener,
    local_addr: SocketAddr,
    grpc: GrpcRoutes,
    service_names: Vec<&'static str>,
    health: HealthReporter,
    health_service: tonic_health::pb::health_server::HealthServer<tonic_health::server::HealthService>,
    metrics: Metrics,
    workers: Vec<(String, Worker)>,
    static_dir: Option<PathBuf>,
    http_routes: Vec<axum::Router>,
    web_streams: Vec<crate::web_stream::WebStream>,
    metrics_admin: Option<crate::auth::AdminToken>,
    shutdown: CancellationToken,
    exposed: http::Extensions,
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
            grpc: GrpcRoutes { router: axum::Router::new(), stacks: HashMap::new() },
            service_names: Vec::new(),
            health,
            health_service,
            metrics: Metrics::new(),
            workers: Vec::new(),
            static_dir: None,
            http_routes: Vec::new(),
            web_streams: Vec::new(),
            metrics_admin: None,
            shutdown,
            exposed: http::Extensions::new(),
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

    /// Hands `handle` to whoever embeds this server (tests drive monitor-svc's collection
    /// rounds through the one it exposes); one handle per type.
    pub fn expose<T: Clone + Send + Sync + 'static>(&mut self, handle: T) {
        self.exposed.insert(handle);
    }

    /// Everything the services built into this assembly exposed, taken before it runs.
    #[must_use]
    pub fn take_exposed(&mut self) -> http::Extensions {
        std::mem::take(&mut self.exposed)
    }

    /// Serves a generated tonic service; its health status is `SERVING` while the server runs.
    pub fn add_service<S: GrpcService>(&mut self, service: S) {
        self.service_names.push(S::NAME);
        self.grpc.add(service, &self.metrics, &self.config.trusted_proxies);
    }

    /// Runs `worker` beside the server; it must return once the shutdown token is cancelled,
    /// and is dropped if it has not by the end of the grace period.
    pub fn spawn_worker(&mut self, name: impl Into<String>, worker: impl Future<Output = ()> + Send + 'static) {
        self.workers.push((name.into(), Box::pin(worker)));
    }

    /// Serves plain HTTP routes beside gRPC on the same port (e.g. uploads and file downloads,
    /// which gRPC-web cannot carry). They see requests as they arrive: no gRPC-web translation,
    /// no gRPC metrics; their paths must not overlap another service's.
    pub fn add_http_routes(&mut self, router: axum::Router) {
        self.http_routes.push(router);
    }

    /// Serves browsers' calls of a server-streaming method of a service added with
    /// [`Self::add_service`] from the encoded stream `method` opens ([`crate::web_stream`]),
    /// rather than through the service's encoder.
    pub fn add_web_stream(&mut self, method: crate::web_stream::WebStream) {
        self.web_streams.push(method);
    }

    /// Serves the files of `dir` for every path no service claims, `index.html` for unknown
    /// paths (the web client routes on its own).
    pub fn serve_static(&mut self, dir: PathBuf) {
        self.static_dir = Some(dir);
    }

    /// Serves `/metrics` only to callers on this host and to those presenting `admin`, for a
    /// port that faces browsers; others get 403.
    pub fn guard_metrics(&mut self, admin: crate::auth::AdminToken) {
        self.metrics_admin = Some(admin);
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
            mut grpc,
            service_names,
            health,
            health_service,
            metrics,
            workers,
            static_dir,
            http_routes,
            web_streams,
            metrics_admin,
            shutdown,
            exposed: _,
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
        let trusted = &config.trusted_proxies;
        grpc.add(reflection.build_v1()?, &metrics, trusted);
        grpc.add(reflection_v1alpha.build_v1alpha()?, &metrics, trusted);
        grpc.add(health_service, &metrics, trusted);
        let GrpcRoutes { router: grpc, stacks: grpc_stacks } = grpc;
        let connection_limit =
            crate::connections::ConnectionLimit::new(config.max_connections_per_ip, metrics.registry());
        let metrics_trusted = config.trusted_proxies.clone();
        let web_stream_metrics = metrics.clone();
        let metrics_page = move |request: axum::extract::Request| {
            let allowed = metrics_admin
                .as_ref()
                .is_none_or(|admin| admin.admits(request.headers()) || from_this_host(&request, &metrics_trusted));
            let response = if allowed {
                metrics.render().into_response()
            } else {
                (http::StatusCode::FORBIDDEN, METRICS_REFUSED).into_response()
            };
            std::future::ready(response)
        };
        let mut app = axum::Router::new().route("/metrics", get(metrics_page)).merge(grpc);
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
        let accepted = TcpIncoming::from(listener).with_nodelay(Some(true));
        // Cancelled once the grace period is over (or the server failed), for the front and
        // the connections it serves.
        let stopped = CancellationToken::new();
        let _stop_front = stopped.clone().drop_guard();
        let (front, handed, front_drained) = crate::web_stream::Front::new(
            web_streams,
            grpc_stacks,
            web_stream_metrics,
            &config.trusted_proxies,
            config.max_message_bytes,
            shutdown.clone(),
            stopped.clone(),
        );
        tokio::spawn(front.accept(accepted, connection_limit));
        let incoming = tokio_stream::wrappers::ReceiverStream::new(handed);
        let server = Server::builder()
            .accept_http1(true)
            .max_concurrent_streams(config.max_concurrent_streams)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            // The router itself, not wrapped in tonic's `Routes`, which would box each response
            // body once more: a layer every frame of every stream would pass through.
            .serve_with_incoming_shutdown(app, incoming, stop_accepting);
        tokio::pin!(server);

        // One deadline for the whole drain: the calls and every worker heard the same
        // cancellation and stop side by side, so waiting for them one after another still
        // ends by it.
        let deadline = tokio::select! {
            result = &mut server => {
                result?;
                tokio::time::Instant::now() + config.shutdown_grace
            }
            () = shutdown.cancelled() => {
                let deadline = tokio::time::Instant::now() + config.shutdown_grace;
                match tokio::time::timeout_at(deadline, &mut server).await {
                    Ok(result) => result?,
                    Err(_) => tracing::warn!(grace = ?config.shutdown_grace, "grace period over; dropping open calls"),
                }
                deadline
            }
        };

        if tokio::time::timeout_at(deadline, front_drained.wait()).await.is_err() {
            tracing::warn!(grace = ?config.shutdown_grace, "grace period over; dropping open streams");
        }
        stopped.cancel();

        for (name, mut handle) in worker_handles {
            match tokio::time::timeout_at(deadline, &mut handle).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::error!(worker = name, %error, "worker failed"),
                Err(_) => {
                    handle.abort();
                    tracing::warn!(worker = name, "worker did not stop within the grace period; dropped");
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
