//! How many connections one client address may hold open at once. HTTP/2 already bounds the
//! calls on one connection (`--max-concurrent-streams`); this bounds the connections, so that
//! one client opening socket after socket cannot take the process's file descriptors and
//! memory while everybody else waits. A connection past the limit is closed as soon as it is
//! accepted (the client sees its connection closed, and may retry later) and counted in
//! `xiaowo_connections_refused_total`; open connections are in `xiaowo_open_connections`.
//!
//! Behind a proxy every connection comes from the proxy's address: there the proxy limits
//! clients, and this limit is raised or switched off (0).

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use prometheus::{IntCounter, IntGauge, Registry};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

use crate::metrics::registered;
use crate::sendfile::{FileSender, Sending};

/// Open connections per client address, shared by the accept loop and every connection.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionLimit {
    /// Most open connections per address; `None` counts without limiting.
    max_per_ip: Option<usize>,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
    refused: IntCounter,
    open_gauge: IntGauge,
}

impl ConnectionLimit {
    /// A limit of `max_per_ip` (0: none) whose metrics are registered in `registry`.
    pub(crate) fn new(max_per_ip: u32, registry: &Registry) -> Self {
        let refused = registered(
            registry,
            IntCounter::new(
                "xiaowo_connections_refused_total",
                "Connections closed on accept because their client address already held the most allowed.",
            ),
        );
        let open_gauge =
            registered(registry, IntGauge::new("xiaowo_open_connections", "Client connections open on this server."));
        let max_per_ip = usize::try_from(max_per_ip).ok().filter(|max| *max > 0);
        Self { max_per_ip, open: Arc::default(), refused, open_gauge }
    }

    /// `stream` counted against its address, or closed when that address holds the most allowed.
    pub(crate) fn admit(&self, stream: TcpStream) -> Option<LimitedConnection> {
        // A socket whose peer is already gone has nothing to serve.
        let ip = stream.peer_addr().ok()?.ip();
        let mut open = match self.open.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        let count = open.entry(ip).or_default();
        if self.max_per_ip.is_some_and(|max| *count >= max) {
            drop(open);
            self.refused.inc();
            tracing::warn!(%ip, max = self.max_per_ip, "connection refused: too many open from this address");
            return None;
        }
        *count += 1;
        self.open_gauge.inc();
        Some(LimitedConnection {
            stream,
            sending: Sending::default(),
            protocol_told: false,
            _slot: Slot { ip, limit: self.clone() },
        })
    }
}

/// One counted connection's place; given back when the connection is dropped.
#[derive(Debug)]
struct Slot {
    ip: IpAddr,
    limit: ConnectionLimit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.limit.open_gauge.dec();
        let mut open = match self.limit.open.lock() {
            Ok(open) => open,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// An accepted TCP connection that holds its address's slot while it is open, and sends the
/// files its HTTP/1.1 responses hand it ([`crate::sendfile`]).
#[derive(Debug)]
pub(crate) struct LimitedConnection {
    stream: TcpStream,
    sending: Sending,
    /// Whether the first read, the one that tells HTTP/1 from HTTP/2, has been answered.
    protocol_told: bool,
    _slot: Slot,
}

/// What an HTTP/2 client sends first.
const HTTP2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

impl LimitedConnection {
    /// The first read, made by the server's protocol detection (hyper-util's automatic
    /// builder, which reads up to the 24 bytes of the HTTP/2 preface).
    ///
    /// The detection hands what it read to hyper as a read of its own. On an HTTP/1.1
    /// connection that is the start of the request head: hyper, finding the head incomplete,
    /// grows its 8 KiB read buffer to 16 KiB before reading the rest, and keeps it as long as
    /// the connection is open, which for a browser watching a room is hours (about 5.5 KiB of
    /// resident memory per watcher, measured). So the first bytes are peeked, not taken: when
    /// they are not the preface's start, the read answers nothing, which the detection takes
    /// for HTTP/1 with nothing to hand on, and hyper's first read finds the whole head where
    /// the client's bytes are. The preface, or a part of it, is read as it comes.
    fn poll_first_read(&mut self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut start = [0; HTTP2_PREFACE.len()];
        let mut peeked = ReadBuf::new(&mut start);
        std::task::ready!(self.stream.poll_peek(cx, &mut peeked))?;
        self.protocol_told = true;
        let seen = peeked.filled();
        if !seen.is_empty() && !HTTP2_PREFACE.starts_with(seen) {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

/// What every request carries about the connection it came on.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The connection's addresses.
    pub tcp: TcpConnectInfo,
    /// Where a response's file goes to be sent from the page cache.
    pub(crate) files: FileSender,
}

impl LimitedConnection {
    /// The socket, for a server that reads and writes it itself ([`crate::web_stream`]).
    pub(crate) fn stream_mut(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Copies the next bytes the client sent into `buf` without taking them; waits for some.
    pub(crate) async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.peek(buf).await
    }

    /// Waits until the client closes its side or the connection fails (true), or sends
    /// something more (false, the bytes left where they are).
    pub(crate) async fn peer_gone(&self) -> bool {
        matches!(self.stream.peek(&mut [0]).await, Ok(0) | Err(_))
    }

    /// Closes the sending side, so the client reads the end.
    pub(crate) async fn shut_down(&mut self) {
        use tokio::io::AsyncWriteExt;
        let _ = self.stream.shutdown().await;
    }
}

impl Connected for LimitedConnection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnectionInfo { tcp: self.stream.connect_info(), files: self.sending.sender().clone() }
    }
}

impl AsyncRead for LimitedConnection {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.protocol_told {
            return this.poll_first_read(cx, buf);
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for LimitedConnection {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[io::IoSlice::new(buf)])
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.sending.poll_write_vectored(&mut this.stream, cx, bufs)
    }

    /// Always: hyper then queues a response's buffers as they are instead of copying them
    /// into one, which the stand-ins of [`crate::sendfile`] depend on.
    fn is_write_vectored(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection of this server and the client's end of it.
    async fn connected() -> (LimitedConnection, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        let limit = ConnectionLimit::new(0, &Registry::new());
        (limit.admit(server_side).unwrap(), client)
    }

    async fn read_some(connection: &mut LimitedConnection) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0; 4096];
        let n = connection.read(&mut buf).await.unwrap();
        buf.truncate(n);
        buf
    }

    #[tokio::test]
    async fn an_http1_request_is_told_apart_without_taking_its_first_bytes() {
        use tokio::io::AsyncWriteExt;
        let (mut connection, mut client) = connected().await;
        let head = b"POST /xiaowo.sync.v1.SyncService/WatchRoom HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n";
        client.write_all(head).await.unwrap();
        assert_eq!(read_some(&mut connection).await, b"", "the detection's read gets nothing: HTTP/1");
        assert_eq!(read_some(&mut connection).await, head, "the whole head is left for hyper's first read");

        let (mut connection, mut client) = connected().await;
        client.write_all(&HTTP2_PREFACE[..]).await.unwrap();
        assert_eq!(read_some(&mut connection).await, HTTP2_PREFACE, "an HTTP/2 preface is read as it comes");

        let (mut connection, mut client) = connected().await;
        client.write_all(b"PRI * HT").await.unwrap();
        assert_eq!(read_some(&mut connection).await, b"PRI * HT", "so is the start of one");
        client.write_all(b"TP/2.0").await.unwrap();
        assert_eq!(read_some(&mut connection).await, b"TP/2.0");

        let (mut connection, client) = connected().await;
        drop(client);
        assert_eq!(read_some(&mut connection).await, b"", "a client gone before a byte is the end");
        assert_eq!(read_some(&mut connection).await, b"");
    }

    #[tokio::test]
    async fn counts_per_address_and_gives_slots_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limit = ConnectionLimit::new(2, &Registry::new());
        let mut accepted = Vec::new();
        for _ in 0..3 {
            let _client = TcpStream::connect(addr).await.unwrap();
            let (server_side, _) = listener.accept().await.unwrap();
            accepted.push(limit.admit(server_side));
        }
        assert!(accepted[0].is_some() && accepted[1].is_some(), "up to the limit");
        assert!(accepted[2].is_none(), "refused past it");
        assert_eq!((limit.refused.get(), limit.open_gauge.get()), (1, 2));
        accepted.truncate(1);
        let _client = TcpStream::connect(addr).await.unwrap();
        let (server_side, _) = listener.accept().await.unwrap();
        assert!(limit.admit(server_side).is_some(), "a closed connection frees its slot");
        drop(accepted);
        assert_eq!(limit.open_gauge.get(), 0);
    }
}
