//! Ceiling: a raw TCP fan-out server of length-prefixed frames. Each frame a publisher sends
//! is shared (not copied) and written once to every watcher's connection of its room: the
//! least work any fan-out server over TCP can do, with no protocol, auth or storage.
//!
//! A connection starts with one role byte and a big-endian `u32` room; a watcher then gets
//! an empty frame (subscribed) and every later frame of its room.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;

/// Role byte of a watching connection.
pub const WATCHER: u8 = 1;
/// Role byte of a publishing connection.
pub const PUBLISHER: u8 = 2;

type Rooms = Arc<Mutex<HashMap<u32, broadcast::Sender<Bytes>>>>;

/// Serves until the process is killed; prints `listening <port>` once bound.
pub async fn serve() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("listening {}", listener.local_addr()?.port());
    let rooms = Rooms::default();
    loop {
        let (stream, _) = listener.accept().await?;
        let rooms = Arc::clone(&rooms);
        tokio::spawn(async move {
            let _ = connection(stream, rooms).await;
        });
    }
}

fn room_sender(rooms: &Rooms, room: u32) -> broadcast::Sender<Bytes> {
    let mut rooms = rooms.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    rooms.entry(room).or_insert_with(|| broadcast::channel(1024).0).clone()
}

async fn connection(mut stream: TcpStream, rooms: Rooms) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let role = stream.read_u8().await?;
    let room = stream.read_u32().await?;
    let sender = room_sender(&rooms, room);
    if role == WATCHER {
        let mut frames = sender.subscribe();
        stream.write_u32(0).await?;
        loop {
            match frames.recv().await {
                Ok(frame) => stream.write_all(&frame).await?,
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            }
        }
    }
    let mut reader = BufReader::new(stream);
    loop {
        let length = reader.read_u32().await?;
        let mut frame = BytesMut::with_capacity(4 + length as usize);
        frame.put_u32(length);
        frame.resize(4 + length as usize, 0);
        reader.read_exact(&mut frame[4..]).await?;
        let _ = sender.send(frame.freeze());
    }
}
