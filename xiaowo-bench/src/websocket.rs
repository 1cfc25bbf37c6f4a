//! A minimal WebSocket client (RFC 6455: masked text frames out, unfragmented frames in) and
//! on top of it the socket.io 4 protocol (Engine.IO v4 over WebSocket) the socket.io peer
//! speaks: just enough to join rooms, emit events and answer pings.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A client WebSocket connection.
pub struct WebSocket {
    stream: BufReader<TcpStream>,
}

impl WebSocket {
    /// Connects and upgrades `path` on `address`.
    pub async fn connect(address: SocketAddr, path: &str) -> anyhow::Result<Self> {
        let mut stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        // The key's only job is to prove the server speaks WebSocket; a fixed one does that.
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await?;
        let mut stream = BufReader::new(stream);
        let mut status = String::new();
        stream.read_line(&mut status).await?;
        if !status.contains(" 101 ") {
            bail!("WebSocket upgrade refused: {}", status.trim());
        }
        loop {
            let mut header = String::new();
            if stream.read_line(&mut header).await? == 0 {
                bail!("connection closed during the upgrade");
            }
            if header == "\r\n" {
                return Ok(Self { stream });
            }
        }
    }

    /// Sends one text frame.
    pub async fn send_text(&mut self, text: &str) -> anyhow::Result<()> {
        let payload = text.as_bytes();
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x81);
        match payload.len() {
            length @ 0..=125 => frame.push(0x80 | u8::try_from(length)?),
            length @ 126..=65535 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&u16::try_from(length)?.to_be_bytes());
            }
            length => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&u64::try_from(length)?.to_be_bytes());
            }
        }
        // Clients must mask; the mask guards proxies, not secrets, so a fixed one will do.
        let mask = [0x5a, 0x17, 0xc3, 0x8e];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(index, byte)| byte ^ mask[index % 4]));
        self.stream.get_mut().write_all(&frame).await?;
        Ok(())
    }

    /// The next text frame (pings are answered on the way).
    pub async fn next_text(&mut self) -> anyhow::Result<String> {
        loop {
            let first = self.stream.read_u8().await?;
            let second = self.stream.read_u8().await?;
            let length = match second & 0x7f {
                126 => u64::from(self.stream.read_u16().await?),
                127 => self.stream.read_u64().await?,
                length => u64::from(length),
            };
            let mut mask = [0u8; 4];
            if second & 0x80 != 0 {
                self.stream.read_exact(&mut mask).await?;
            }
            let mut payload = vec![0u8; usize::try_from(length)?];
            self.stream.read_exact(&mut payload).await?;
            if second & 0x80 != 0 {
                payload.iter_mut().enumerate().for_each(|(index, byte)| *byte ^= mask[index % 4]);
            }
            match first & 0x0f {
                0x1 => return String::from_utf8(payload).context("text frame is not UTF-8"),
                0x8 => bail!("WebSocket closed by the server"),
                0x9 => {
                    // Pong with the same payload (small: pings carry at most 125 bytes).
                    let mut pong = vec![0x8a, 0x80 | u8::try_from(payload.len())?, 0, 0, 0, 0];
                    pong.extend_from_slice(&payload);
                    self.stream.get_mut().write_all(&pong).await?;
                }
                _ => {}
            }
        }
    }
}

/// A socket.io client on the default namespace.
pub struct SocketIo {
    socket: WebSocket,
}

impl SocketIo {
    /// Opens the Engine.IO session and connects to the default namespace.
    pub async fn connect(address: SocketAddr) -> anyhow::Result<Self> {
        let mut socket = WebSocket::connect(address, "/socket.io/?EIO=4&transport=websocket").await?;
        let open = socket.next_text().await?;
        if !open.starts_with('0') {
            bail!("expected an Engine.IO open packet");
        }
        socket.send_text("40").await?;
        let mut client = Self { socket };
        loop {
            let packet = client.socket.next_text().await?;
            if packet.starts_with("40") {
                return Ok(client);
            }
            client.answer(&packet).await?;
        }
    }

    /// Emits an event given as a JSON array (name first, then arguments).
    pub async fn emit(&mut self, event: &serde_json::Value) -> anyhow::Result<()> {
        self.socket.send_text(&format!("42{event}")).await
    }

    /// The next event as a JSON array (name first), answering Engine.IO pings meanwhile.
    pub async fn next_event(&mut self) -> anyhow::Result<Vec<serde_json::Value>> {
        loop {
            let packet = self.socket.next_text().await?;
            if let Some(event) = packet.strip_prefix("42") {
                return Ok(serde_json::from_str(event)?);
            }
            self.answer(&packet).await?;
        }
    }

    async fn answer(&mut self, packet: &str) -> anyhow::Result<()> {
        match packet {
            "2" => self.socket.send_text("3").await,
            "1" => bail!("Engine.IO session closed"),
            _ => Ok(()),
        }
    }
}
