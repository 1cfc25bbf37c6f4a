//! gRPC-web calls as browsers make them (binary, over HTTP/1.1), served on the connection
//! itself rather than through hyper and tonic-web.
//!
//! A browser watching a room holds one HTTP/1.1 connection per stream for hours, and every
//! event of the room is written to each of them. Through hyper each such connection kept an
//! 8 KiB read buffer and an 8 KiB buffer for response heads for as long as it was open, and
//! every event passed tonic's encoder, tonic-web's framing and hyper's chunked encoding before
//! its `writev`. Here a connection holds its socket and the call in progress; each batch of
//! ready frames is written from one buffer that lives only until it is written, with one
//! `write`.
//!
//! Which requests: a connection's next request is looked at without taking its bytes (a peek).
//! When it is a `POST` over HTTP/1.1 of a method of a service of this server, in binary
//! gRPC-web, with its length given and nothing this module does not handle (compression, a
//! deadline, `Expect`, chunked uploads, a head not yet whole), it is served here, and the
//! connection's next request is looked at the same way once the call ends. Anything else
//! (pages, files, metrics, native gRPC over HTTP/2) hands the connection, its bytes untouched,
//! to the server that serves everything else, for good. A connection that sends no request
//! for 30 s is closed, as hyper closes one.
//!
//! How a call is served: a registered server stream ([`WebStream`]: the watch streams every
//! browser holds) is opened here behind its service's guard, and its encoded messages framed
//! here. Every other call goes to its service's stack, the one hyper's calls go through after
//! tonic-web (metrics and the access log, the caller's address, the guard, the service), and
//! its response body's frames are written as tonic-web would translate them. Both paths answer
//! as hyper's does: the same statuses, the same metrics and access log.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::auth::Guard;
use crate::connections::LimitedConnection;
use crate::metrics::{CallRecord, Metrics};

/// Encoded protobuf messages, as a service's stream yields them; an error ends the stream with
/// that status.
pub type EncodedStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// A service's stack as calls reach it once tonic-web has translated them (gRPC request in,
/// gRPC response out).
pub(crate) type ServiceStack = tower::util::BoxCloneSyncService<
    http::Request<tonic::body::Body>,
    http::Response<tonic::body::Body>,
    std::convert::Infallible,
>;

type Opening = Pin<Box<dyn Future<Output = Result<EncodedStream, Status>> + Send>>;
type Open = Arc<dyn Fn(http::request::Parts, Bytes) -> Opening + Send + Sync>;

/// One server-streaming method served here: its path and how to open its stream.
#[derive(Clone)]
pub struct WebStream {
    path: &'static str,
    guard: Guard,
    open: Open,
}

impl std::fmt::Debug for WebStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebStream").field("path", &self.path).finish_non_exhaustive()
    }
}

impl WebStream {
    /// The method at `path` (`/<package.Service>/<Method>`), behind `guard` (the same guard
    /// its service is registered behind), opened by `open` with the decoded request.
    pub fn new<Req, F, Fut>(path: &'static str, guard: &Guard, open: F) -> Self
    where
        Req: prost::Message + Default + Send + 'static,
        F: Fn(tonic::Request<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<EncodedStream, Status>> + Send + 'static,
    {
        let open = Arc::new(open);
        let open: Open = Arc::new(move |parts: http::request::Parts, message: Bytes| {
            let open = Arc::clone(&open);
            Box::pin(async move {
                let message = Req::decode(message).map_err(|_| not_protobuf())?;
                let metadata = tonic::metadata::MetadataMap::from_headers(parts.headers);
                open(tonic::Request::from_parts(metadata, parts.extensions, message)).await
            }) as Opening
        });
        Self { path, guard: guard.clone(), open }
    }
}

/// `stream`'s messages encoded, for services whose streams yield protobuf messages.
pub fn encoded<M, S>(stream: S) -> EncodedStream
where
    M: prost::Message,
    S: Stream<Item = Result<M, Status>> + Send + 'static,
{
    Box::pin(stream.map(|item| item.map(|message| Bytes::from(message.encode_to_vec()))))
}

fn not_protobuf() -> Status {
    let violation = crate::status::Violation::new("request", crate::server::NOT_PROTOBUF);
    crate::status::invalid_argument(&[violation])
}

fn not_one_message() -> Status {
    let violation = crate::status::Violation::new(
        "request",
        "is not one uncompressed gRPC-web message (its 5-byte prefix is wrong)",
    );
    crate::status::invalid_argument(&[violation])
}

/// Most header lines a request looked at here may have; one with more goes to hyper.
const MAX_HEADERS: usize = 64;
/// How much of a request head is looked at; a longer head goes to hyper.
const PEEK_BYTES: usize = 8 * 1024;
/// How long a connection may take to send the next request's head, as hyper allows (its
/// `header_read_timeout`): a connection that sends nothing for this long is closed.
const HEAD_WITHIN: std::time::Duration = std::time::Duration::from_secs(30);
/// Encoded messages framed into one write at most, when several are ready at once.
const BATCH_BYTES: usize = 16 * 1024;

/// What takes connections: the registered streams, the services, and what their calls need.
#[derive(Clone)]
pub(crate) struct Front {
    /// Each registered stream by its path, with its count of calls served here.
    methods: Arc<HashMap<&'static str, (WebStream, prometheus::IntCounter)>>,
    /// Each service's stack by the service's name.
    services: Arc<HashMap<&'static str, ServiceStack>>,
    /// Calls served here, by service and method.
    served: prometheus::IntCounterVec,
    metrics: Metrics,
    trusted: Arc<[std::net::IpAddr]>,
    max_message_bytes: usize,
    /// Where connections that are not (or no longer) served here go.
    elsewhere: mpsc::Sender<io::Result<LimitedConnection>>,
    /// Cancelled when the server stops taking calls: streams end as their services end them,
    /// and no connection is read again.
    draining: CancellationToken,
    /// Cancelled when the grace period is over: whatever is open is dropped.
    stopped: CancellationToken,
    /// Held by the front and every connection it serves (each holds a clone of it);
    /// [`Drained::wait`] waits for all of them to drop it.
    _open: mpsc::Sender<()>,
}

/// The wait for the connections a [`Front`] serves to end.
pub(crate) struct Drained(mpsc::Receiver<()>);

impl Drained {
    /// Returns once the front and every connection it served have ended.
    pub(crate) async fn wait(mut self) {
        while self.0.recv().await.is_some() {}
    }
}

/// Connections a [`Front`] hands on.
pub(crate) type Handed = mpsc::Receiver<io::Result<LimitedConnection>>;

impl Front {
    pub(crate) fn new(
        methods: Vec<WebStream>,
        services: HashMap<&'static str, ServiceStack>,
        metrics: Metrics,
        trusted: &[std::net::IpAddr],
        max_message_bytes: usize,
        draining: CancellationToken,
        stopped: CancellationToken,
    ) -> (Self, Handed, Drained) {
        let (elsewhere, connections) = mpsc::channel(256);
        let (open, open_rx) = mpsc::channel(1);
        let served = crate::metrics::registered(
            metrics.registry(),
            prometheus::IntCounterVec::new(
                prometheus::Opts::new(
                    "xiaowo_grpc_web_direct_calls_total",
                    "gRPC-web calls served on their HTTP/1.1 connection without hyper, by method (every call, \
                     either way, is counted in xiaowo_grpc_requests_total).",
                ),
                &["service", "method"],
            ),
        );
        let methods = methods
            .into_iter()
            .map(|method| {
                let (service, name) = service_and_method(method.path).unwrap_or_default();
                let counter = served.with_label_values(&[service, name]);
                (method.path, (method, counter))
            })
            .collect();
        let front = Self {
            methods: Arc::new(methods),
            services: Arc::new(services),
            served,
            metrics,
            trusted: trusted.into(),
            max_message_bytes,
            elsewhere,
            draining,
            stopped,
            _open: open,
        };
        (front, connections, Drained(open_rx))
    }

    /// Takes connections from `incoming` until the server drains, each served on a task of
    /// its own; those past `limit` are closed at once.
    pub(crate) async fn accept(
        self,
        incoming: impl Stream<Item = io::Result<tokio::net::TcpStream>>,
        limit: crate::connections::ConnectionLimit,
    ) {
        let mut incoming = std::pin::pin!(incoming);
        loop {
            let accepted = tokio::select! {
                accepted = incoming.next() => accepted,
                () = self.draining.cancelled() => return,
                () = self.stopped.cancelled() => return,
            };
            match accepted {
                None => return,
                Some(Err(error)) => self.hand_on(Err(error)).await,
                Some(Ok(stream)) => {
                    if let Some(connection) = limit.admit(stream) {
                        tokio::spawn(self.clone().serve(connection));
                    }
                }
            }
        }
    }

    /// Serves `connection`'s requests while they are calls served here, then hands it on.
    pub(crate) async fn serve(self, mut connection: LimitedConnection) {
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout(HEAD_WITHIN, next_request(&connection, &self)) => {
                    next.unwrap_or(Next::Closed)
                }
                () = self.draining.cancelled() => return,
            };
            match next {
                Next::Call(call) => {
                    let keep_alive = Box::pin(self.call(&mut connection, call)).await;
                    if !keep_alive || self.draining.is_cancelled() {
                        connection.shut_down().await;
                        return;
                    }
                }
                Next::Elsewhere => {
                    self.hand_on(Ok(connection)).await;
                    return;
                }
                Next::Closed => return,
            }
        }
    }

    /// Gives the server that serves everything else a connection (or an accept error, as it
    /// would have seen it); once the server drains, nobody takes it and it is dropped.
    async fn hand_on(&self, accepted: io::Result<LimitedConnection>) {
        tokio::select! {
            _ = self.elsewhere.send(accepted) => {}
            () = self.draining.cancelled() => {}
        }
    }

    /// One call: reads its request and serves it. Whether the connection may carry another
    /// request.
    async fn call(&self, connection: &mut LimitedConnection, call: Box<Call>) -> bool {
        let Call { head_bytes, body_bytes, parts, route, keep_alive } = *call;
        let mut request_bytes = vec![0; head_bytes + body_bytes];
        if connection.stream_mut().read_exact(&mut request_bytes).await.is_err() {
            return false;
        }
        let mut request = http::Request::from_parts(parts, Bytes::from(request_bytes).slice(head_bytes..));
        request.extensions_mut().insert(tonic::transport::server::Connected::connect_info(&*connection));
        // Each kind of call is boxed: a stream keeps this state for as long as it is open, and
        // an async fn's arguments stay in its state to the end.
        let answered = match route {
            Route::Stream(method) => match Box::pin(self.open_stream(request, method)).await {
                Ok(messages) => {
                    let head = response_head(http::StatusCode::OK, &grpc_web_headers(), "transfer-encoding: chunked");
                    self.write_body(connection, head, messages).await
                }
                Err(status) => write(connection, &self.stopped, trailers_only(&status)).await,
            },
            Route::Service(stack) => Box::pin(self.call_service(connection, request, stack)).await,
        };
        answered && keep_alive
    }

    /// Opens a registered stream, admitted by its guard: its messages, then its status.
    async fn open_stream(&self, request: http::Request<Bytes>, method: WebStream) -> Result<Messages, Status> {
        let mut request = crate::server::with_host(crate::server::with_client_address(request, &self.trusted));
        let mut record = self.metrics.start_call(&request);
        let opened = async {
            method.guard.admit(&mut request).await.map_err(Status::from)?;
            let (parts, body) = request.into_parts();
            let message = one_message(&body, self.max_message_bytes)?;
            (method.open)(parts, message).await
        };
        match opened.await {
            Ok(stream) => Ok(Messages { stream, record: Some(record) }),
            Err(status) => {
                record.finish(status.code());
                Err(status)
            }
        }
    }

    /// Any other call: through its service's stack as tonic-web hands calls on, its response
    /// written as tonic-web translates it. Whether the response was written whole.
    async fn call_service(
        &self,
        connection: &mut LimitedConnection,
        request: http::Request<Bytes>,
        stack: ServiceStack,
    ) -> bool {
        let (mut parts, body) = request.into_parts();
        parts.headers.remove(http::header::CONTENT_LENGTH);
        parts.headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
        parts.headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        parts.headers.insert(http::header::ACCEPT_ENCODING, http::HeaderValue::from_static("identity,deflate,gzip"));
        let request = http::Request::from_parts(parts, tonic::body::Body::new(http_body_util::Full::new(body)));
        let response = match tower::ServiceExt::oneshot(stack, request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let (mut parts, body) = response.into_parts();
        parts.headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(GRPC_WEB_PROTO));
        if parts.headers.contains_key("grpc-status") {
            // Only a status, in the head.
            return write(connection, &self.stopped, without_body(parts.status, &parts.headers)).await;
        }
        let head = response_head(parts.status, &parts.headers, "transfer-encoding: chunked");
        let pieces = http_body_util::BodyStream::new(body).map(|frame| match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => Piece::Frame(data),
                Err(frame) => Piece::Trailers(header_lines(&frame.into_trailers().unwrap_or_default(), b":")),
            },
            Err(status) => Piece::Trailers(status_lines(&status, b":")),
        });
        self.write_body(connection, head, pieces).await
    }

    /// Writes `head` and then `pieces` as chunks, each batch of ready ones with one write (the
    /// head with the first when they are ready at once), until a trailers frame or their end.
    /// Whether the body was written to its end.
    async fn write_body(
        &self,
        connection: &mut LimitedConnection,
        head: Vec<u8>,
        // Taken as it is kept, not moved into a place of its own: the state of an open stream
        // would hold both.
        mut pieces: impl Stream<Item = Piece> + Unpin,
    ) -> bool {
        let mut buffer = head;
        let mut watch_peer = true;
        let mut ready = pieces.next().now_or_never();
        loop {
            let mut piece = match ready.take() {
                Some(piece) => piece,
                None => {
                    if !buffer.is_empty() && !write(connection, &self.stopped, std::mem::take(&mut buffer)).await {
                        return false;
                    }
                    tokio::select! {
                        biased;
                        () = self.stopped.cancelled() => return false,
                        piece = pieces.next() => piece,
                        gone = connection.peer_gone(), if watch_peer => {
                            if gone {
                                return false;
                            }
                            // Bytes of a next request while this one streams: no longer
                            // watched, and left where they are; a client that leaves is then
                            // seen when a write fails.
                            watch_peer = false;
                            continue;
                        }
                    }
                }
            };
            let mut ended = false;
            loop {
                match piece {
                    Some(Piece::Message(message)) => push_frame(&mut buffer, 0x00, &message),
                    Some(Piece::Frame(frame)) => push_chunk(&mut buffer, &[&frame]),
                    Some(Piece::Trailers(lines)) => {
                        push_frame(&mut buffer, 0x80, &lines);
                        ended = true;
                    }
                    None => ended = true,
                }
                if ended || buffer.len() >= BATCH_BYTES {
                    break;
                }
                match pieces.next().now_or_never() {
                    Some(next) => piece = next,
                    None => break,
                }
            }
            if ended {
                buffer.extend_from_slice(b"0\r\n\r\n");
            }
            if !write(connection, &self.stopped, std::mem::take(&mut buffer)).await {
                return false;
            }
            if ended {
                return true;
            }
        }
    }
}

/// A registered stream's messages, then its status, which finishes its call's record.
struct Messages {
    stream: EncodedStream,
    /// Until the status is known.
    record: Option<CallRecord>,
}

impl Stream for Messages {
    type Item = Piece;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Option<Piece>> {
        if self.record.is_none() {
            return std::task::Poll::Ready(None);
        }
        let status = match std::task::ready!(self.stream.poll_next_unpin(cx)) {
            Some(Ok(message)) => return std::task::Poll::Ready(Some(Piece::Message(message))),
            Some(Err(status)) => status,
            None => Status::ok(""),
        };
        if let Some(mut record) = self.record.take() {
            record.finish(status.code());
        }
        std::task::Poll::Ready(Some(Piece::Trailers(status_lines(&status, b":"))))
    }
}

/// What a response body is written from.
enum Piece {
    /// A message, framed here.
    Message(Bytes),
    /// A gRPC frame as tonic encoded it (its prefix and message), which gRPC-web carries as is.
    Frame(Bytes),
    /// The trailers frame's header lines; the body ends with it.
    Trailers(Vec<u8>),
}

/// Writes `bytes`; false when the connection failed or the grace period ended first.
async fn write(connection: &mut LimitedConnection, stopped: &CancellationToken, bytes: Vec<u8>) -> bool {
    tokio::select! {
        written = connection.stream_mut().write_all(&bytes) => written.is_ok(),
        () = stopped.cancelled() => false,
    }
}

const GRPC_WEB_PROTO: &str = "application/grpc-web+proto";

fn grpc_web_headers() -> http::HeaderMap {
    let mut headers = http::HeaderMap::with_capacity(1);
    headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(GRPC_WEB_PROTO));
    headers
}

/// A response's head: `status`, `headers`, `framing` (how its body's length is known), the date
/// and the blank line that ends it.
fn response_head(status: http::StatusCode, headers: &http::HeaderMap, framing: &str) -> Vec<u8> {
    let mut head =
        format!("HTTP/1.1 {} {}\r\n", status.as_str(), status.canonical_reason().unwrap_or_default()).into_bytes();
    head.extend_from_slice(&header_lines(headers, b": "));
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    head.extend_from_slice(format!("{framing}\r\ndate: {date}\r\n\r\n").as_bytes());
    head
}

/// A response that is only a status, as tonic-web answers a call refused before its stream.
fn trailers_only(status: &Status) -> Vec<u8> {
    let mut headers = grpc_web_headers();
    add_status(status, &mut headers);
    without_body(http::StatusCode::OK, &headers)
}

/// A whole response without a body, as hyper writes one.
fn without_body(status: http::StatusCode, headers: &http::HeaderMap) -> Vec<u8> {
    response_head(status, headers, "content-length: 0")
}

/// `grpc-status`, `grpc-message` and any details as header lines (see [`header_lines`]).
fn status_lines(status: &Status, separator: &[u8]) -> Vec<u8> {
    let mut headers = http::HeaderMap::new();
    add_status(status, &mut headers);
    header_lines(&headers, separator)
}

fn add_status(status: &Status, headers: &mut http::HeaderMap) {
    if status.add_header(headers).is_err() {
        headers.insert("grpc-status", http::HeaderValue::from(tonic::Code::Internal as i32));
    }
}

/// `headers` as lines, each name and value joined by `separator` and ended by CRLF, but those
/// that say how a body is framed, which the response's framing line says.
fn header_lines(headers: &http::HeaderMap, separator: &[u8]) -> Vec<u8> {
    let mut lines = Vec::new();
    for (name, value) in headers {
        if matches!(name, &http::header::CONTENT_LENGTH | &http::header::TRANSFER_ENCODING | &http::header::CONNECTION)
        {
            continue;
        }
        lines.extend_from_slice(name.as_str().as_bytes());
        lines.extend_from_slice(separator);
        lines.extend_from_slice(value.as_bytes());
        lines.extend_from_slice(b"\r\n");
    }
    lines
}

/// A gRPC-web frame (`flag`, the payload's length, the payload) as one chunk.
fn push_frame(buffer: &mut Vec<u8>, flag: u8, payload: &[u8]) {
    let Ok(length) = u32::try_from(payload.len()) else { return };
    let mut prefix = [flag, 0, 0, 0, 0];
    prefix[1..].copy_from_slice(&length.to_be_bytes());
    push_chunk(buffer, &[&prefix, payload]);
}

/// `parts`, one after another, as one chunk of a chunked body.
fn push_chunk(buffer: &mut Vec<u8>, parts: &[&[u8]]) {
    let length: usize = parts.iter().map(|part| part.len()).sum();
    buffer.reserve(length + 12);
    buffer.extend_from_slice(format!("{length:x}\r\n").as_bytes());
    for part in parts {
        buffer.extend_from_slice(part);
    }
    buffer.extend_from_slice(b"\r\n");
}

/// The one message of a unary request body: a 5-byte prefix (uncompressed, its length) and the
/// message.
fn one_message(body: &Bytes, max_message_bytes: usize) -> Result<Bytes, Status> {
    let (Some(&flag), Some(length)) = (body.first(), body.get(1..5)) else { return Err(not_one_message()) };
    let length = u32::from_be_bytes([length[0], length[1], length[2], length[3]]) as usize;
    if length > max_message_bytes {
        return Err(Status::resource_exhausted(crate::server::TOO_LARGE));
    }
    if flag != 0 || body.len() != length + 5 {
        return Err(not_one_message());
    }
    Ok(body.slice(5..))
}

/// `/<service>/<method>` split, when the method is a plain name.
fn service_and_method(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    let plain = !method.is_empty() && method.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
    plain.then_some((service, method))
}

/// A request this module serves, as its head said.
struct Call {
    head_bytes: usize,
    body_bytes: usize,
    parts: http::request::Parts,
    route: Route,
    keep_alive: bool,
}

/// How a call is served.
enum Route {
    /// A registered stream, opened here.
    Stream(WebStream),
    /// Any other method, through its service's stack.
    Service(ServiceStack),
}

enum Next {
    Call(Box<Call>),
    Elsewhere,
    Closed,
}

/// Waits for the connection's next bytes and tells what they ask for, without taking them.
async fn next_request(connection: &LimitedConnection, front: &Front) -> Next {
    // The head is looked at once it has come, so that a connection waiting for its next
    // request holds no buffer.
    if matches!(connection.peek(&mut [0]).await, Ok(0) | Err(_)) {
        return Next::Closed;
    }
    let mut peeked = vec![0; PEEK_BYTES];
    match connection.peek(&mut peeked).await {
        Ok(0) | Err(_) => Next::Closed,
        Ok(length) => look_at(&peeked[..length], front).map_or(Next::Elsewhere, |call| Next::Call(Box::new(call))),
    }
}

/// The call `head` starts, when it is one this module serves.
fn look_at(head: &[u8], front: &Front) -> Option<Call> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut lines);
    let httparse::Status::Complete(head_bytes) = parsed.parse(head).ok()? else { return None };
    if parsed.method? != "POST" || parsed.version? != 1 {
        return None;
    }
    let path = parsed.path?;
    let (route, served) = match front.methods.get(path) {
        Some((method, served)) => (Route::Stream(method.clone()), served.clone()),
        None => {
            let (service, method) = service_and_method(path)?;
            let stack = front.services.get(service)?;
            let method = crate::metrics::method_label(service, method);
            (Route::Service(stack.clone()), front.served.with_label_values(&[service, method]))
        }
    };
    let mut request = http::Request::builder().method(http::Method::POST).uri(path);
    let mut body_bytes = None;
    let mut keep_alive = true;
    let mut binary_grpc_web = false;
    for line in parsed.headers.iter() {
        let name = http::HeaderName::from_bytes(line.name.as_bytes()).ok()?;
        let value = http::HeaderValue::from_bytes(line.value).ok()?;
        match name.as_str() {
            "content-length" => {
                let length: usize = value.to_str().ok()?.trim().parse().ok()?;
                if body_bytes.replace(length).is_some_and(|earlier| earlier != length) {
                    return None;
                }
            }
            "content-type" => {
                binary_grpc_web = matches!(value.as_bytes(), b"application/grpc-web" | b"application/grpc-web+proto");
            }
            "connection" => keep_alive &= !value.as_bytes().eq_ignore_ascii_case(b"close"),
            "transfer-encoding" | "expect" | "upgrade" | "grpc-timeout" => return None,
            "grpc-encoding" if value.as_bytes() != b"identity" => return None,
            _ => {}
        }
        request = request.header(name, value);
    }
    let body_bytes = body_bytes?;
    if !binary_grpc_web || body_bytes > front.max_message_bytes.saturating_add(5) {
        return None;
    }
    let (parts, ()) = request.version(http::Version::HTTP_11).body(()).ok()?.into_parts();
    served.inc();
    Some(Call { head_bytes, body_bytes, parts, route, keep_alive })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_chunks_of_grpc_web_frames() {
        let mut frames = Vec::new();
        push_frame(&mut frames, 0x00, b"abc");
        assert_eq!(frames, b"8\r\n\x00\x00\x00\x00\x03abc\r\n");
        let mut frames = Vec::new();
        push_frame(&mut frames, 0x80, &status_lines(&Status::ok(""), b":"));
        assert_eq!(frames, b"14\r\n\x80\x00\x00\x00\x0fgrpc-status:0\r\n\r\n");
        let mut frames = Vec::new();
        push_frame(&mut frames, 0x80, &status_lines(&Status::not_found("no such room"), b":"));
        assert_eq!(frames, b"33\r\n\x80\x00\x00\x00\x2egrpc-status:5\r\ngrpc-message:no%20such%20room\r\n\r\n");
    }

    #[test]
    fn a_body_is_one_uncompressed_message() {
        let body = Bytes::from_static(b"\x00\x00\x00\x00\x02hi");
        assert_eq!(one_message(&body, 100).unwrap(), Bytes::from_static(b"hi"));
        let code = |body: &'static [u8]| one_message(&Bytes::from_static(body), 100).unwrap_err().code();
        assert_eq!(code(b"\x01\x00\x00\x00\x02hi"), tonic::Code::InvalidArgument, "compressed");
        assert_eq!(code(b"\x00\x00\x00\x00\x03hi"), tonic::Code::InvalidArgument, "cut short");
        assert_eq!(code(b"\x00\x00\x00\x00\x01hi"), tonic::Code::InvalidArgument, "more than one");
        assert_eq!(code(b"\x00\x00\x00"), tonic::Code::InvalidArgument, "no prefix");
        assert_eq!(code(b"\x00\x00\x00\x01\x00"), tonic::Code::ResourceExhausted, "too large");
    }
}
