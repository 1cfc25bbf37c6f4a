//! Request metrics for every gRPC method and the process, in one Prometheus registry per
//! process that each service also registers its domain gauges in.
//!
//! The layer sits between gRPC-web translation and the services, so that it sees native gRPC
//! trailers: `grpc-status` comes either in the response headers (trailers-only responses,
//! errors before the first message) or in the trailers at the end of the body.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use tower::{Layer, Service};

/// The process's registry plus the request metrics the server layer records.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    grpc: Arc<GrpcMetrics>,
}

#[derive(Debug)]
struct GrpcMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
    open_streams: IntGaugeVec,
}

impl Metrics {
    /// A fresh registry with request and process metrics registered.
    #[must_use]
    pub fn new() -> Self {
        let registry = Registry::new();
        let requests = registered(
            &registry,
            IntCounterVec::new(
                Opts::new("xiaowo_grpc_requests_total", "Finished gRPC calls by method and status code."),
                &["service", "method", "code"],
            ),
        );
        let latency = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "xiaowo_grpc_request_duration_seconds",
                    "Time from request to final status (for streams, the stream's lifetime).",
                )
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
                &["service", "method"],
            ),
        );
        let open_streams = registered(
            &registry,
            IntGaugeVec::new(
                Opts::new("xiaowo_grpc_open_calls", "gRPC calls in flight, including open streams."),
                &["service", "method"],
            ),
        );
        #[cfg(target_os = "linux")]
        {
            // Resident memory, CPU time and open file descriptors of this process.
            let process = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(error) = registry.register(Box::new(process)) {
                tracing::warn!(%error, "process metrics unavailable");
            }
        }
        Self { registry, grpc: Arc::new(GrpcMetrics { requests, latency, open_streams }) }
    }

    /// The registry, for services' own gauges and counters.
    #[must_use]
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Everything in the registry in Prometheus text format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut buffer) {
            tracing::warn!(%error, "encoding metrics failed");
        }
        String::from_utf8(buffer).unwrap_or_default()
    }

    /// The record of a call starting now, for a server that serves it without [`Self::layer`].
    pub(crate) fn start_call<B>(&self, request: &http::Request<B>) -> CallRecord {
        CallRecord::of(Arc::clone(&self.grpc), request)
    }

    /// The tower layer that records every gRPC call.
    #[must_use]
    pub fn layer(&self) -> MetricsLayer {
        MetricsLayer { grpc: Arc::clone(&self.grpc) }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Refused requests that monitor-svc's anomaly rules watch for bursts of (an attack shows as
/// one while it happens).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `xiaowo_auth_failures_total`: missing, unknown, expired or revoked session tokens.
    AuthFailure,
    /// `xiaowo_permission_denied_total`: the caller's role or membership does not allow it.
    PermissionDenied,
    /// `xiaowo_flood_limited_total`: a flood limit refused the request.
    FloodLimited,
}

impl Refusal {
    fn name_and_help(self) -> (&'static str, &'static str) {
        match self {
            Self::AuthFailure => {
                ("xiaowo_auth_failures_total", "Refused authentications (missing, bad, expired or revoked tokens).")
            }
            Self::PermissionDenied => {
                ("xiaowo_permission_denied_total", "Requests refused because the caller may not do that.")
            }
            Self::FloodLimited => ("xiaowo_flood_limited_total", "Requests refused by a flood limit."),
        }
    }
}

/// The `service`'s counter of `refusal`, registered in `registry`. Every service uses the same
/// name and help with its own constant `service` label, so several can share one process's
/// registry (`xiaowo up`) and monitor-svc sums them by name.
///
#[must_use]
pub fn refusal_counter(registry: &Registry, refusal: Refusal, service: &str) -> prometheus::IntCounter {
    let (name, help) = refusal.name_and_help();
    registered(registry, prometheus::IntCounter::with_opts(Opts::new(name, help).const_label("service", service)))
}

/// `metric`, registered in `registry`: how every metric of every service is made, e.g.
/// `registered(registry, IntGauge::new("xiaowo_rooms_active", "Open rooms."))`.
///
/// Metric names, help texts, labels and buckets are constants in the code. A bad one is a
/// programming error that every test starting the service meets at once, so it stops start-up
/// here rather than being handled wherever a metric is made.
///
/// # Panics
/// When the definition is invalid (a name with a space, an empty help text, …).
#[must_use]
pub fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: Result<M, prometheus::Error>,
) -> M {
    #[expect(clippy::expect_used, reason = "metric definitions are constants: a bad one is a programming error")]
    let metric = metric.expect("a valid metric definition");
    register(registry, &metric);
    metric
}

/// Registers `collector` in `registry`, logging instead of failing when it is already there
/// (two services in one process may share a name only by mistake; it must not stop start-up).
pub fn register<C: prometheus::core::Collector + Clone + 'static>(registry: &Registry, collector: &C) {
    if let Err(error) = registry.register(Box::new(collector.clone())) {
        tracing::warn!(%error, "metric registration failed");
    }
}

/// Records request counts, latency and open calls by method.
#[derive(Clone, Debug)]
pub struct MetricsLayer {
    grpc: Arc<GrpcMetrics>,
}

impl<S> Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        MetricsService { inner, grpc: Arc::clone(&self.grpc) }
    }
}

/// See [`MetricsLayer`].
#[derive(Clone, Debug)]
pub struct MetricsService<S> {
    inner: S,
    grpc: Arc<GrpcMetrics>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for MetricsService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    ResBody: 'static,
{
    type Response = http::Response<MetricsBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let mut call = CallRecord::of(Arc::clone(&self.grpc), &request);
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            let (parts, body) = response.into_parts();
            if let Some(code) = grpc_status(&parts.headers) {
                call.finish(code);
            }
            Ok(http::Response::from_parts(parts, MetricsBody { inner: body, call }))
        })
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    headers.get("grpc-status").map(|value| tonic::Code::from_bytes(value.as_bytes()))
}

/// Every method of the services a server may serve, by service (`<package>.<Service>`), read from
/// their descriptors: Xiaowo's, health's and reflection's.
static METHODS: std::sync::LazyLock<std::collections::HashMap<String, std::collections::HashSet<String>>> =
    std::sync::LazyLock::new(|| {
        let sets = [
            proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
        ];
        let mut methods = std::collections::HashMap::<String, std::collections::HashSet<String>>::new();
        let files = sets.iter().filter_map(|set| <prost_types::FileDescriptorSet as prost::Message>::decode(*set).ok());
        for file in files.flat_map(|set| set.file) {
            for service in &file.service {
                let name = format!("{}.{}", file.package(), service.name());
                methods.entry(name).or_default().extend(service.method.iter().map(|method| method.name().to_owned()));
            }
        }
        methods
    });

/// Whether `service` has `method`.
fn is_method(service: &str, method: &str) -> bool {
    METHODS.get(service).is_some_and(|methods| methods.contains(method))
}

/// The label of `service`'s `method`: its name, or `unknown` for a method the service does not
/// have, so that calls of made-up names cannot add series without bound.
pub(crate) fn method_label<'a>(service: &str, method: &'a str) -> &'a str {
    if is_method(service, method) { method } else { UNKNOWN_METHOD }
}

const UNKNOWN_METHOD: &str = "unknown";

/// One call's bookkeeping; recorded once, when the status is known or the body is dropped.
pub(crate) struct CallRecord {
    grpc: Arc<GrpcMetrics>,
    service: String,
    /// The method as called (the access log's).
    method: String,
    /// Whether the service has that method; its metric label is `unknown` otherwise (see
    /// [`method_label`]).
    known: bool,
    started: Instant,
    finished: bool,
    /// The TCP peer (nginx, in split mode).
    peer: String,
    /// The client chain nginx reports.
    forwarded_for: String,
    /// A short, stable tag of the caller's session token (never the token).
    caller: String,
}

impl CallRecord {
    /// The record of `request`, started now.
    fn of<B>(grpc: Arc<GrpcMetrics>, request: &http::Request<B>) -> Self {
        let mut parts = request.uri().path().trim_start_matches('/').splitn(2, '/');
        let service = parts.next().unwrap_or_default().to_owned();
        let method = parts.next().unwrap_or_default().to_owned();
        let known = is_method(&service, &method);
        let peer = request
            .extensions()
            .get::<crate::connections::ConnectionInfo>()
            .and_then(|info| info.tcp.remote_addr())
            .map(|addr| addr.to_string())
            .unwrap_or_default();
        let forwarded_for = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let caller = crate::auth::caller_tag(request.headers()).unwrap_or_default();
        let record = Self {
            grpc,
            service,
            method,
            known,
            started: Instant::now(),
            finished: false,
            peer,
            forwarded_for,
            caller,
        };
        record.grpc.open_streams.with_label_values(&record.labels()).inc();
        record
    }

    /// The service's and the method's labels.
    fn labels(&self) -> [&str; 2] {
        [&self.service, if self.known { &self.method } else { UNKNOWN_METHOD }]
    }

    pub(crate) fn finish(&mut self, code: tonic::Code) {
        if self.finished {
            return;
        }
        self.finished = true;
        let labels = self.labels();
        let elapsed = self.started.elapsed();
        self.grpc.open_streams.with_label_values(&labels).dec();
        self.grpc.latency.with_label_values(&labels).observe(elapsed.as_secs_f64());
        self.grpc.requests.with_label_values(&[labels[0], labels[1], code_name(code)]).inc();
        // The access log: every call, separate from the services' audit logs of domain actions.
        tracing::info!(
            target: "xiaowo::access",
            service = %self.service,
            method = %self.method,
            code = code_name(code),
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            peer = %self.peer,
            forwarded_for = %self.forwarded_for,
            caller = %self.caller,
            "rpc"
        );
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        // A body dropped before its trailers: the client went away.
        self.finish(tonic::Code::Cancelled);
    }
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

pin_project_lite::pin_project! {
    /// A response body that reports the call's status when its trailers pass.
    pub struct MetricsBody<B> {
        #[pin]
        inner: B,
        call: CallRecord,
    }
}

impl<B> Body for MetricsBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    this.call.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.finish(tonic::Code::Internal),
            Poll::Ready(None) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_method_no_service_has_is_labelled_unknown() {
        assert_eq!(method_label("xiaowo.sync.v1.SyncService", "Seek"), "Seek");
        assert_eq!(method_label("xiaowo.chat.v1.ChatService", "WatchMessages"), "WatchMessages");
        assert_eq!(method_label("grpc.health.v1.Health", "Check"), "Check");
        assert_eq!(method_label("grpc.reflection.v1.ServerReflection", "ServerReflectionInfo"), "ServerReflectionInfo");
        assert_eq!(method_label("xiaowo.sync.v1.SyncService", "SendMessage"), "unknown", "another service's");
        assert_eq!(method_label("xiaowo.sync.v1.SyncService", "MadeUp1"), "unknown");
        assert_eq!(method_label("no.such.Service", "Seek"), "unknown");
    }

    #[test]
    fn refusal_counters_of_several_services_share_one_registry() {
        let metrics = Metrics::new();
        let room = refusal_counter(metrics.registry(), Refusal::FloodLimited, "room");
        let chat = refusal_counter(metrics.registry(), Refusal::FloodLimited, "chat");
        let denied = refusal_counter(metrics.registry(), Refusal::PermissionDenied, "chat");
        room.inc();
        chat.inc_by(3);
        denied.inc();

        let text = metrics.render();
        assert!(text.contains("xiaowo_flood_limited_total{service=\"room\"} 1"), "{text}");
        assert!(text.contains("xiaowo_flood_limited_total{service=\"chat\"} 3"), "{text}");
        assert!(text.contains("xiaowo_permission_denied_total{service=\"chat\"} 1"), "{text}");
    }
}
