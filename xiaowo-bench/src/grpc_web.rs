//! A minimal gRPC-web client over HTTP/1.1, as a browser speaks it to nginx: one POST per call
//! with `application/grpc-web+proto` frames, the response read as it streams (chunked or with
//! a length), data frames decoded, the trailer frame ending the call. Keep-alive connections
//! carry one call after another, as a browser's would.

use std::borrow::BorrowMut;
use std::net::SocketAddr;

use anyhow::{Context, bail};
use bytes::{Buf, BufMut, BytesMut};
use prost::Message;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A call that ended without its message and an OK status.
#[derive(Debug)]
pub struct Failed {
    /// The trailer's `grpc-status`, if it had one.
    pub status: Option<i32>,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "gRPC-web call failed with status {:?}", self.status)
    }
}

impl std::error::Error for Failed {}

/// How the rest of a response body is delimited.
enum Body {
    Chunked { left_in_chunk: usize, done: bool },
    Length(usize),
}

/// One HTTP/1.1 connection making gRPC-web calls.
pub struct Connection {
    stream: BufReader<TcpStream>,
    address: SocketAddr,
}

/// A call's response: data frames as they arrive. It borrows its connection
/// ([`Connection::call`]), or owns it for as long as a stream is watched ([`Connection::open`]).
pub struct Call<C> {
    connection: C,
    body: Body,
    frames: BytesMut,
    /// The `grpc-status` of the trailer frame, once read.
    pub status: Option<i32>,
}

impl Connection {
    /// Connects to a gRPC-web endpoint (nginx or the server itself).
    pub async fn connect(address: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream: BufReader::new(stream), address })
    }

    /// Starts a call of `path` with one request message.
    pub async fn call<M: Message>(&mut self, path: &str, token: &str, request: &M) -> anyhow::Result<Call<&mut Self>> {
        Call::start(self, path, token, request).await
    }

    /// Starts a call of `path` that keeps the connection: a stream to watch.
    pub async fn open<M: Message>(self, path: &str, token: &str, request: &M) -> anyhow::Result<Call<Self>> {
        Call::start(self, path, token, request).await
    }
}

impl<C: BorrowMut<Connection>> Call<C> {
    async fn start<M: Message>(mut connection: C, path: &str, token: &str, request: &M) -> anyhow::Result<Self> {
        let this = connection.borrow_mut();
        let mut frame = BytesMut::with_capacity(request.encoded_len() + 5);
        frame.put_u8(0);
        frame.put_u32(u32::try_from(request.encoded_len())?);
        request.encode(&mut frame)?;
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n\
             Accept: application/grpc-web+proto\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n",
            this.address,
            frame.len()
        );
        let writer = this.stream.get_mut();
        writer.write_all(head.as_bytes()).await?;
        writer.write_all(&frame).await?;

        let mut status_line = String::new();
        this.stream.read_line(&mut status_line).await?;
        if !status_line.starts_with("HTTP/1.1 200") {
            bail!("gRPC-web call answered {}", status_line.trim());
        }
        let (mut chunked, mut length) = (false, None);
        loop {
            let mut header = String::new();
            if this.stream.read_line(&mut header).await? == 0 {
                bail!("connection closed in the response headers");
            }
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').unwrap_or((header, ""));
            if name.eq_ignore_ascii_case("transfer-encoding") && value.trim().eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.trim().parse()?);
            }
        }
        let body =
            if chunked { Body::Chunked { left_in_chunk: 0, done: false } } else { Body::Length(length.unwrap_or(0)) };
        Ok(Self { connection, body, frames: BytesMut::new(), status: None })
    }

    /// Reads more of the body into `frames`; false at its end.
    async fn fill(&mut self) -> anyhow::Result<bool> {
        let stream = &mut self.connection.borrow_mut().stream;
        match &mut self.body {
            Body::Length(0) | Body::Chunked { done: true, .. } => Ok(false),
            Body::Length(left) => {
                let mut buffer = vec![0u8; (*left).min(16 * 1024)];
                let read = stream.read(&mut buffer).await?;
                if read == 0 {
                    bail!("connection closed mid-body");
                }
                *left -= read;
                self.frames.extend_from_slice(&buffer[..read]);
                Ok(true)
            }
            Body::Chunked { left_in_chunk, done } => {
                if *left_in_chunk == 0 {
                    let mut size_line = String::new();
                    stream.read_line(&mut size_line).await?;
                    let size_text = size_line.trim().split(';').next().unwrap_or_default();
                    let size = usize::from_str_radix(size_text, 16).context("bad chunk size")?;
                    if size == 0 {
                        // The last chunk and the empty trailer section.
                        let mut end = String::new();
                        stream.read_line(&mut end).await?;
                        *done = true;
                        return Ok(false);
                    }
                    *left_in_chunk = size;
                }
                let mut buffer = vec![0u8; (*left_in_chunk).min(16 * 1024)];
                let read = stream.read(&mut buffer).await?;
                if read == 0 {
                    bail!("connection closed mid-chunk");
                }
                *left_in_chunk -= read;
                self.frames.extend_from_slice(&buffer[..read]);
                if *left_in_chunk == 0 {
                    let mut crlf = [0u8; 2];
                    stream.read_exact(&mut crlf).await?;
                }
                Ok(true)
            }
        }
    }

    /// The next response message, or `None` after the trailers.
    pub async fn next<M: Message + Default>(&mut self) -> anyhow::Result<Option<M>> {
        loop {
            if self.frames.len() >= 5 {
                let flags = self.frames[0];
                let length =
                    u32::from_be_bytes([self.frames[1], self.frames[2], self.frames[3], self.frames[4]]) as usize;
                if self.frames.len() >= 5 + length {
                    self.frames.advance(5);
                    let payload = self.frames.split_to(length);
                    if flags & 0x80 == 0 {
                        return Ok(Some(M::decode(payload)?));
                    }
                    let trailers = String::from_utf8_lossy(&payload).to_string();
                    self.status = trailers.lines().find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.trim().eq_ignore_ascii_case("grpc-status").then(|| value.trim().parse().ok())?
                    });
                    continue;
                }
            }
            if !self.fill().await? {
                return Ok(None);
            }
        }
    }

    /// Reads the call to its end and returns its one message if the status is OK.
    pub async fn unary<M: Message + Default>(mut self) -> anyhow::Result<M> {
        let message = self.next::<M>().await?;
        while self.next::<M>().await?.is_some() {}
        match (self.status, message) {
            (Some(0), Some(message)) => Ok(message),
            (status, _) => Err(Failed { status }.into()),
        }
    }
}
