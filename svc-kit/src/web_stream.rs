//! Server streams as browsers reach them (gRPC-web over HTTP/1.1), served on the connection
//! itself rather than through hyper, tonic-web and tonic's encoder.
//!
//! A browser watching a room holds one HTTP/1.1 connection per stream for hours, and every
//! event of the room is written to each of them. Through hyper each such connection kept an
//! 8 KiB read buffer and an 8 KiB buffer for response heads for as long as it was open, and
//! every event passed tonic's encoder, tonic-web's framing and hyper's chunked encoding before
//! its `writev`. Here a watch stream's connection holds its socket, its call's bookkeeping and
//! the service's stream; each batch of ready events is framed into one buffer that lives only
//! until it is written, with one `write`.
//!
//! Which requests: a connection's next request is looked at without taking its bytes (a peek).
//! When it is a `POST` to a registered method over HTTP/1.1, in binary gRPC-web, with its
//! length given and nothing this module does not handle (compression, a deadline, `Expect`,
//! chunked uploads, a head not yet whole), it is served here, and the connection's next
//! request is looked at the same way once the stream ends. Anything else hands the connection,
//! its bytes untouched, to the server that serves everything else, for good. Both paths answer
//! the same: the same guard, the same metrics and access log, the same statuses. A connection
//! that sends no request for 30 s is closed, as hyper closes one.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;

use bytes::{BufMut, Bytes};
use futures_util::{FutureExt, Stream, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::auth::Guard;
use crate::connections::LimitedConnection;
use crate::metrics::Metrics;

/// Encoded protobuf messages, as a service's stream yields them; an error ends the stream with
/// that status.
pub type EncodedStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

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

/// What takes connections: the registered methods and what their calls need.
#[derive(Clone)]
pub(crate) struct Front {
    /// Each method by its path, with its count of calls served here.
    methods: Arc<HashMap<&'static str, (WebStream, prometheus::IntCounter)>>,
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
                    "gRPC-web calls of server streams served on their HTTP/1.1 connection without hyper, by method \
                     (the rest are served through hyper and counted in xiaowo_grpc_requests_total alone).",
                ),
                &["service", "method"],
            ),
        );
        let methods = methods
            .into_iter()
            .map(|method| {
                let mut names = method.path.trim_start_matches('/').splitn(2, '/');
                let labels = [names.next().unwrap_or_default(), names.next().unwrap_or_default()];
                let counter = served.with_label_values(&labels);
                (method.path, (method, counter))
            })
            .collect();
        let methods = Arc::new(methods);
        let front = Self {
            methods,
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

    /// Serves `connection`'s requests while they are calls of the registered methods, then
    /// hands it on.
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

    /// One call: reads its request, opens its stream and writes the stream's messages until it
    /// ends. Whether the connection may carry another request.
    async fn call(&self, connection: &mut LimitedConnection, call: Box<Call>) -> bool {
        let Call { head_bytes, body_bytes, parts, method, keep_alive } = *call;
        let mut request_bytes = vec![0; head_bytes + body_bytes];
        if connection.stream_mut().read_exact(&mut request_bytes).await.is_err() {
            return false;
        }
        let body = Bytes::from(request_bytes).slice(head_bytes..);
        let mut request = http::Request::from_parts(parts, ());
        request.extensions_mut().insert(tonic::transport::server::Connected::connect_info(&*connection));
        let mut request = crate::server::with_host(crate::server::with_client_address(request, &self.trusted));
        let mut record = self.metrics.start_call(&request);
        // Takes the request and its bytes, so that they are freed once the stream is open.
        let opened = async move {
            method.guard.admit(&mut request).await.map_err(Status::from)?;
            let message = one_message(&body, self.max_message_bytes)?;
            let (parts, ()) = request.into_parts();
            (method.open)(parts, message).await
        };
        // Boxed: the guard's and the handler's futures are large, and inline they would size
        // the state every open stream keeps for as long as it is open.
        let stream = match Box::pin(opened).await {
            Ok(stream) => stream,
            Err(status) => {
                record.finish(status.code());
                return write(connection, &self.stopped, trailers_only(&status)).await && keep_alive;
            }
        };
        let head = response_head("transfer-encoding: chunked") + "\r\n";
        if !write(connection, &self.stopped, head.into_bytes()).await {
            return false;
        }
        let end = self.stream(connection, stream).await;
        match end {
            Some(status) => {
                record.finish(status.code());
                keep_alive
            }
            // The client went away, or the grace period ended: the record counts it cancelled.
            None => false,
        }
    }

    /// Writes `stream`'s messages until it ends; the status it ended with, once written.
    async fn stream(&self, connection: &mut LimitedConnection, mut stream: EncodedStream) -> Option<Status> {
        let mut watch_peer = true;
        loop {
            let first = tokio::select! {
                biased;
                () = self.stopped.cancelled() => return None,
                item = stream.next() => item,
                gone = connection.peer_gone(), if watch_peer => {
                    if gone {
                        return None;
                    }
                    // Bytes of a next request while this one streams: no longer watched, and
                    // left where they are; a client that leaves is then seen when a write fails.
                    watch_peer = false;
                    continue;
                }
            };
            let mut frames = Vec::new();
            let mut end = None;
            let mut item = first;
            loop {
                match item {
                    Some(Ok(message)) => push_message(&mut frames, &message),
                    Some(Err(status)) => end = Some(status),
                    None => end = Some(Status::ok("")),
                }
                if end.is_some() || frames.len() >= BATCH_BYTES {
                    break;
                }
                match stream.next().now_or_never() {
                    Some(next) => item = next,
                    None => break,
                }
            }
            if let Some(status) = &end {
                push_trailers(&mut frames, status);
                frames.extend_from_slice(b"0\r\n\r\n");
            }
            if !write(connection, &self.stopped, frames).await {
                return None;
            }
            if end.is_some() {
                return end;
            }
        }
    }
}

/// Writes `bytes`; false when the connection failed or the grace period ended first.
async fn write(connection: &mut LimitedConnection, stopped: &CancellationToken, bytes: Vec<u8>) -> bool {
    tokio::select! {
        written = connection.stream_mut().write_all(&bytes) => written.is_ok(),
        () = stopped.cancelled() => false,
    }
}

/// A response's head but the blank line that ends it: `200`, gRPC-web's content type,
/// `framing` (how its body's length is known) and the date.
fn response_head(framing: &str) -> String {
    let date = httpdate::fmt_http_date(std::time::SystemTime::now());
    format!("HTTP/1.1 200 OK\r\ncontent-type: application/grpc-web+proto\r\n{framing}\r\ndate: {date}\r\n")
}

/// A response that is only a status, as tonic-web answers a call refused before its stream.
fn trailers_only(status: &Status) -> Vec<u8> {
    let mut head = response_head("content-length: 0").into_bytes();
    head.extend_from_slice(&status_lines(status, b": "));
    head.extend_from_slice(b"\r\n");
    head
}

/// One message as a chunk holding one gRPC-web data frame.
fn push_message(frames: &mut Vec<u8>, message: &[u8]) {
    push_frame(frames, 0x00, message);
}

/// The status as a chunk holding the gRPC-web trailers frame.
fn push_trailers(frames: &mut Vec<u8>, status: &Status) {
    push_frame(frames, 0x80, &status_lines(status, b":"));
}

/// `grpc-status`, `grpc-message` and any details as header lines, each name and value joined
/// by `separator` and ended by CRLF.
fn status_lines(status: &Status, separator: &[u8]) -> Vec<u8> {
    let mut headers = http::HeaderMap::new();
    if status.add_header(&mut headers).is_err() {
        headers.clear();
        headers.insert("grpc-status", http::HeaderValue::from(tonic::Code::Internal as i32));
    }
    let mut lines = Vec::new();
    for (name, value) in &headers {
        lines.extend_from_slice(name.as_str().as_bytes());
        lines.extend_from_slice(separator);
        lines.extend_from_slice(value.as_bytes());
        lines.extend_from_slice(b"\r\n");
    }
    lines
}

fn push_frame(frames: &mut Vec<u8>, flag: u8, payload: &[u8]) {
    let Ok(length) = u32::try_from(payload.len()) else { return };
    frames.reserve(payload.len() + 20);
    frames.extend_from_slice(format!("{:x}\r\n", payload.len() + 5).as_bytes());
    frames.put_u8(flag);
    frames.put_u32(length);
    frames.extend_from_slice(payload);
    frames.extend_from_slice(b"\r\n");
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

/// A request this module serves, as its head said.
struct Call {
    head_bytes: usize,
    body_bytes: usize,
    parts: http::request::Parts,
    method: WebStream,
    keep_alive: bool,
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
    let (method, served) = front.methods.get(parsed.path?)?;
    let method = method.clone();
    let mut request = http::Request::builder().method(http::Method::POST).uri(method.path);
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
    Some(Call { head_bytes, body_bytes, parts, method, keep_alive })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_chunks_of_grpc_web_frames() {
        let mut frames = Vec::new();
        push_message(&mut frames, b"abc");
        assert_eq!(frames, b"8\r\n\x00\x00\x00\x00\x03abc\r\n");
        let mut frames = Vec::new();
        push_trailers(&mut frames, &Status::ok(""));
        assert_eq!(frames, b"14\r\n\x80\x00\x00\x00\x0fgrpc-status:0\r\n\r\n");
        let mut frames = Vec::new();
        push_trailers(&mut frames, &Status::not_found("no such room"));
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
