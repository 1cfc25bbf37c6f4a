//! A client of Debian's `syncplay-server` (JSON lines over TCP, as in
//! `/usr/lib/python3/dist-packages/syncplay/protocols.py`): say Hello with a room, answer the
//! server's once-a-second `State` keep-alives (it drops a client silent for 12.5 s), send and
//! receive room chat, the path its rooms broadcast on.

use std::net::SocketAddr;

use anyhow::bail;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;

/// The protocol version the client claims (the server's own; chat needs ≥ 1.5).
const VERSION: &str = "1.6.9";

/// A logged-in client; writes go through a task so the reader can answer keep-alives.
pub struct Syncplay {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    outbox: mpsc::UnboundedSender<String>,
}

async fn write_lines(mut writer: OwnedWriteHalf, mut outbox: mpsc::UnboundedReceiver<String>) {
    while let Some(line) = outbox.recv().await {
        if writer.write_all(line.as_bytes()).await.is_err() {
            return;
        }
    }
}

impl Syncplay {
    /// Connects as `username` in `room` and waits for the server's Hello.
    pub async fn connect(address: SocketAddr, username: &str, room: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        let (outbox, inbox) = mpsc::unbounded_channel();
        tokio::spawn(write_lines(writer, inbox));
        let mut client = Self { lines: BufReader::new(reader).lines(), outbox };
        client.send(&json!({"Hello": {
            "username": username,
            "room": {"name": room},
            "version": VERSION,
            "realversion": VERSION,
            "features": {"chat": true, "readiness": false, "managedRooms": false, "sharedPlaylists": false},
        }}))?;
        loop {
            let message = client.next_message().await?;
            if message.get("Hello").is_some() {
                return Ok(client);
            }
            if let Some(error) = message.get("Error") {
                bail!("syncplay refused the client: {error}");
            }
        }
    }

    fn send(&self, message: &Value) -> anyhow::Result<()> {
        self.outbox.send(format!("{message}\r\n")).map_err(|_| anyhow::anyhow!("connection closed"))
    }

    /// Sends a chat message to the room.
    pub fn chat(&self, text: &str) -> anyhow::Result<()> {
        self.send(&json!({"Chat": text}))
    }

    /// The next message, answering `State` keep-alives on the way.
    async fn next_message(&mut self) -> anyhow::Result<Value> {
        let Some(line) = self.lines.next_line().await? else { bail!("syncplay closed the connection") };
        let message: Value = serde_json::from_str(&line)?;
        if let Some(state) = message.get("State") {
            let mut reply = json!({
                "playstate": {"position": 0.0, "paused": true},
                "ping": {"latencyCalculation": state["ping"]["latencyCalculation"].clone(), "clientRtt": 0},
            });
            if let Some(server) = state.get("ignoringOnTheFly").and_then(|ignoring| ignoring.get("server")) {
                reply["ignoringOnTheFly"] = json!({"server": server});
            }
            self.send(&json!({"State": reply}))?;
        }
        Ok(message)
    }

    /// The text of the next chat message the room broadcasts.
    pub async fn next_chat(&mut self) -> anyhow::Result<String> {
        loop {
            let message = self.next_message().await?;
            if let Some(text) = message.get("Chat").and_then(|chat| chat.get("message")).and_then(Value::as_str) {
                return Ok(text.to_owned());
            }
        }
    }
}
