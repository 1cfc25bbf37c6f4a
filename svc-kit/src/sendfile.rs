//! A file's bytes from the page cache to an HTTP/1.1 connection with `sendfile(2)`, never
//! copied through this process.
//!
//! hyper writes every response through the connection's `poll_write_vectored` and has no way to
//! be handed a file. So a [`FileBody`] gives hyper a stand-in for each piece of the file: a slice
//! of [`STAND_IN`] (memory nothing ever reads) exactly as long as the piece, while the piece
//! itself (file, offset, length) goes on the connection's queue. The connection
//! ([`crate::connections::LimitedConnection`]), finding a stand-in's address among the buffers
//! hyper asks it to write, sends that many bytes of the file at the head of the queue instead and
//! reports them written. hyper keeps its own count as for any bytes, so the head, the pieces and
//! the next response go out in order, and hyper's `Content-Length` checks still hold.
//!
//! Each `sendfile` runs on the blocking pool, one call per trip: a piece not in the page cache
//! waits for the disk there, not on a runtime thread other rooms' streams are served from. The
//! socket stays non-blocking, so a trip to a full socket comes straight back and the connection
//! waits for room as for any other write.
//!
//! Only HTTP/1.x requests on this server's own TCP connections get a [`FileSender`]: their
//! connection queues writes in order (hyper's vectored-write strategy, which plain TCP always
//! gets). HTTP/2 frames data itself, and answers there carry bytes.

use std::collections::VecDeque;
use std::fs::File;
use std::future::Future;
use std::io;
use std::ops::Range;
use std::os::fd::{AsFd, OwnedFd};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncWrite, Interest};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// The longest piece one stand-in stands for: a frame of the body, and the most one trip sends.
const PIECE_BYTES: usize = 1 << 20;

/// What a piece's stand-in points into. Never read or written: only its address is compared,
/// so it stays untouched zero pages of the executable's `.bss`.
static STAND_IN: [u8; PIECE_BYTES] = [0; PIECE_BYTES];

/// Whether `buf` is (what is left of) a stand-in.
fn is_stand_in(buf: &[u8]) -> bool {
    let start = STAND_IN.as_ptr() as usize;
    let address = buf.as_ptr() as usize;
    !buf.is_empty() && (start..start + PIECE_BYTES).contains(&address)
}

/// A piece of a file a connection still has to send.
#[derive(Debug)]
struct Piece {
    file: Arc<File>,
    offset: u64,
    left: usize,
}

/// The connection's queue of pieces; what [`crate::connections::ConnectionInfo`] carries to
/// the handlers of its requests.
#[derive(Debug, Clone, Default)]
pub struct FileSender {
    pieces: Arc<Mutex<VecDeque<Piece>>>,
}

impl FileSender {
    /// The sender of the connection `request` came on, when that connection can take files:
    /// an HTTP/1.x request on a TCP connection of this server.
    pub fn for_request<B>(request: &http::Request<B>) -> Option<Self> {
        let http1 = matches!(request.version(), http::Version::HTTP_10 | http::Version::HTTP_11);
        let info = request.extensions().get::<crate::connections::ConnectionInfo>()?;
        http1.then(|| info.files.clone())
    }

    /// A response body of `range` of `file`, sent by the connection straight from the file.
    /// The file must hold the range: a file that ends sooner ends the connection.
    #[must_use]
    pub fn body(&self, file: File, range: Range<u64>) -> FileBody {
        FileBody { sender: self.clone(), file: Arc::new(file), next: range.start, end: range.end.max(range.start) }
    }

    fn pieces(&self) -> MutexGuard<'_, VecDeque<Piece>> {
        match self.pieces.lock() {
            Ok(pieces) => pieces,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The file, offset and length of the piece at the head, which hyper asks to write
    /// `asked` bytes of; an error when the two counts disagree (nothing is sent then).
    fn head(&self, asked: usize) -> io::Result<(Arc<File>, u64, usize)> {
        match self.pieces().front() {
            Some(piece) if piece.left == asked => Ok((Arc::clone(&piece.file), piece.offset, piece.left)),
            head => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a file piece of {asked} bytes to send, {:?} queued", head.map(|piece| piece.left)),
            )),
        }
    }

    /// Marks `sent` bytes of the head piece sent.
    fn advance(&self, sent: usize) {
        let mut pieces = self.pieces();
        if let Some(piece) = pieces.front_mut() {
            piece.left -= sent.min(piece.left);
            piece.offset += sent as u64;
            if piece.left == 0 {
                pieces.pop_front();
            }
        }
    }
}

/// A response body whose bytes the connection sends from a file (see the module's notes).
#[derive(Debug)]
pub struct FileBody {
    sender: FileSender,
    file: Arc<File>,
    next: u64,
    end: u64,
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        let length = usize::try_from(this.end - this.next).unwrap_or(usize::MAX).min(PIECE_BYTES);
        if length == 0 {
            return Poll::Ready(None);
        }
        let piece = Piece { file: Arc::clone(&this.file), offset: this.next, left: length };
        this.sender.pieces().push_back(piece);
        this.next += length as u64;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&STAND_IN[..length])))))
    }

    fn is_end_stream(&self) -> bool {
        self.next == self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end - self.next)
    }
}

/// The sending half a connection keeps: its queue, and the trip on the blocking pool under way.
#[derive(Debug, Default)]
pub(crate) struct Sending {
    sender: FileSender,
    /// The socket as the blocking pool writes to it (a duplicate descriptor, so that a trip
    /// still running when the connection closes never writes to a reused descriptor).
    socket: Option<Arc<OwnedFd>>,
    trip: Option<JoinHandle<io::Result<usize>>>,
}

impl Sending {
    pub(crate) fn sender(&self) -> &FileSender {
        &self.sender
    }

    /// Writes `bufs` to `stream`: the buffers before the first stand-in as bytes, a stand-in
    /// at the front from its file.
    pub(crate) fn poll_write_vectored(
        &mut self,
        stream: &mut TcpStream,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match bufs.iter().position(|buf| is_stand_in(buf)) {
            None => Pin::new(stream).poll_write_vectored(cx, bufs),
            Some(0) => self.poll_send_piece(stream, cx, bufs[0].len()),
            Some(first) => Pin::new(stream).poll_write_vectored(cx, &bufs[..first]),
        }
    }

    /// Sends up to `asked` bytes of the head piece: one `sendfile` on the blocking pool when
    /// the socket has room.
    fn poll_send_piece(&mut self, stream: &TcpStream, cx: &mut Context<'_>, asked: usize) -> Poll<io::Result<usize>> {
        loop {
            if let Some(trip) = self.trip.as_mut() {
                let result = ready!(Pin::new(trip).poll(cx)).unwrap_or_else(|failed| Err(io::Error::other(failed)));
                self.trip = None;
                match result {
                    Ok(0) => {
                        let ended = "the file ended before the range it was to send";
                        return Poll::Ready(Err(io::Error::new(io::ErrorKind::UnexpectedEof, ended)));
                    }
                    Ok(sent) => {
                        self.sender.advance(sent);
                        return Poll::Ready(Ok(sent));
                    }
                    // The socket filled up: wait for room below.
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                    Err(error) => return Poll::Ready(Err(error)),
                }
            }
            ready!(stream.poll_write_ready(cx))?;
            // Readiness is remembered until a write finds the socket full; the trip ran
            // elsewhere, so ask the socket here, where a full one clears what is remembered
            // and the next poll waits for room.
            match stream.try_io(Interest::WRITABLE, || has_room(stream)) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => continue,
                Err(error) => return Poll::Ready(Err(error)),
            }
            let (file, mut offset, count) = self.sender.head(asked)?;
            let socket = match &self.socket {
                Some(socket) => Arc::clone(socket),
                None => Arc::clone(self.socket.insert(Arc::new(stream.as_fd().try_clone_to_owned()?))),
            };
            self.trip = Some(tokio::task::spawn_blocking(move || {
                rustix::fs::sendfile(&*socket, &*file, Some(&mut offset), count).map_err(io::Error::from)
            }));
        }
    }
}

/// `Ok` when the socket has room to write (or an error a write would report), `WouldBlock`
/// when it is full.
fn has_room(stream: &TcpStream) -> io::Result<()> {
    use rustix::event::{PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(stream, PollFlags::OUT)];
    rustix::event::poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 }))?;
    if fds[0].revents().intersects(PollFlags::OUT | PollFlags::ERR | PollFlags::HUP) {
        Ok(())
    } else {
        Err(io::ErrorKind::WouldBlock.into())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    use super::*;
    use crate::connections::{ConnectionInfo, ConnectionLimit};

    /// Bytes that repeat nowhere: a piece sent from the wrong offset shows.
    fn unrepeating(length: usize) -> Vec<u8> {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        (0..length)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[3]
            })
            .collect()
    }

    /// A server whose connections have a send buffer of a few KiB, so that every piece goes out
    /// in many partial sends with waits for room between them; `GET /?from=A&to=B` answers
    /// bytes A..B of the file at `path`.
    async fn serve_with_small_send_buffers(path: std::path::PathBuf) -> std::net::SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limit = ConnectionLimit::new(0, &prometheus::Registry::new());
        let incoming = futures_util::stream::unfold(listener, move |listener| {
            let limit = limit.clone();
            async move {
                let (stream, _) = listener.accept().await.ok()?;
                socket2::SockRef::from(&stream).set_send_buffer_size(4096).unwrap();
                let connection = limit.admit(stream).ok_or_else(|| io::Error::other("refused"));
                Some((connection, listener))
            }
        });
        let answer = move |request: axum::extract::Request| {
            let path = path.clone();
            async move {
                let query: HashMap<String, u64> = request
                    .uri()
                    .query()
                    .unwrap()
                    .split('&')
                    .filter_map(|pair| pair.split_once('='))
                    .map(|(name, value)| (name.to_owned(), value.parse().unwrap()))
                    .collect();
                let sender = FileSender::for_request(&request).expect("HTTP/1.1 on a server connection");
                let file = File::open(path).unwrap();
                axum::body::Body::new(sender.body(file, query["from"]..query["to"]))
            }
        };
        let router = axum::Router::new().route("/", axum::routing::get(answer));
        let server = tonic::transport::Server::builder()
            .accept_http1(true)
            .add_routes(tonic::service::Routes::from(router))
            .serve_with_incoming(incoming);
        tokio::spawn(server);
        addr
    }

    #[tokio::test]
    async fn files_reach_a_slow_reader_whole_and_the_next_answers_follow_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        let bytes = unrepeating(3 * PIECE_BYTES + 12_345);
        std::fs::write(&path, &bytes).unwrap();
        let addr = serve_with_small_send_buffers(path).await;

        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut connection = BufReader::with_capacity(1024, socket.connect(addr).await.unwrap());
        let length = bytes.len();
        for (from, to) in [(0, length), (PIECE_BYTES - 7, 2 * PIECE_BYTES + 5), (length - 10, length), (5, 5)] {
            let request = format!("GET /?from={from}&to={to} HTTP/1.1\r\nHost: test\r\n\r\n");
            connection.get_mut().write_all(request.as_bytes()).await.unwrap();
            let mut content_length = None;
            let mut line = String::new();
            while connection.read_line(&mut line).await.unwrap() > 2 {
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    content_length = Some(value.trim().parse::<usize>().unwrap());
                }
                line.clear();
            }
            assert_eq!(content_length, Some(to - from), "the answer for {from}..{to}");
            let mut body = vec![0; to - from];
            for (index, chunk) in body.chunks_mut(1024).enumerate() {
                if index == 64 {
                    // A reader that stops for a moment, as a paused player does: the server's
                    // socket fills up and sending waits for room (what is asserted does not
                    // depend on how long the pause is).
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                connection.read_exact(chunk).await.unwrap();
            }
            assert!(body == bytes[from..to], "bytes {from}..{to} differ from the file's");
        }
    }

    #[test]
    fn only_http1_requests_on_a_server_connection_get_a_sender() {
        let tcp = tonic::transport::server::TcpConnectInfo { local_addr: None, remote_addr: None };
        let info = ConnectionInfo { tcp, files: FileSender::default() };
        let request = |version, info: Option<&ConnectionInfo>| {
            let mut request = http::Request::builder().version(version).body(()).unwrap();
            if let Some(info) = info {
                request.extensions_mut().insert(info.clone());
            }
            request
        };
        assert!(FileSender::for_request(&request(http::Version::HTTP_11, Some(&info))).is_some());
        assert!(FileSender::for_request(&request(http::Version::HTTP_10, Some(&info))).is_some());
        assert!(FileSender::for_request(&request(http::Version::HTTP_2, Some(&info))).is_none());
        assert!(FileSender::for_request(&request(http::Version::HTTP_11, None)).is_none());
    }
}
