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
use tokio_stream::{Stream, StreamExt};
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

    /// `incoming` with the connections over the limit closed and left out.
    pub(crate) fn apply<I>(self, incoming: I) -> impl Stream<Item = io::Result<LimitedConnection>>
    where
        I: Stream<Item = io::Result<TcpStream>>,
    {
        incoming.filter_map(move |accepted| match accepted {
            Ok(stream) => self.admit(stream).map(Ok),
            Err(error) => Some(Err(error)),
        })
    }

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
        Some(LimitedConnection { stream, sending: Sending::default(), _slot: Slot { ip, limit: self.clone() } })
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
    _slot: Slot,
}

/// What every request carries about the connection it came on.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The connection's addresses.
    pub tcp: TcpConnectInfo,
    /// Where a response's file goes to be sent from the page cache.
    pub(crate) files: FileSender,
}

impl Connected for LimitedConnection {
    type ConnectInfo = ConnectionInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        ConnectionInfo { tcp: self.stream.connect_info(), files: self.sending.sender().clone() }
    }
}

impl AsyncRead for LimitedConnection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
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
