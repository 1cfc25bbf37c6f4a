//! Scenario 2, chat with durability: every member of a room sends with a few messages in
//! flight, each acknowledged only once committed; every member's `WatchMessages` stream must
//! receive every message. The ceiling is a plain SQLite insert loop on chat-svc's own schema
//! (copied from the server's `chat.db`) with the same pragmas.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use proto::chat::v1 as chat_pb;

use crate::procstat;
use crate::stack::{self, Targets};
use crate::stats::{self, Summary, wall_micros};

/// One room size under one durability setting.
#[derive(Debug, Clone)]
pub struct Durable {
    /// Messages sent in all.
    pub messages: usize,
    /// Acknowledged (committed) messages per second, first send to last acknowledgement.
    pub acked_per_second: f64,
    /// Send → acknowledgement.
    pub ack: Summary,
    /// Send → the last member's stream received it, per message.
    pub all_received: Summary,
    /// Messages every member received, of `messages`.
    pub complete: usize,
    /// Server CPU µs per message.
    pub server_cpu_us_per_message: f64,
}

/// Sends `messages` into a room of `members`, `in_flight` per member at a time.
pub async fn durable(targets: &Targets, members: usize, messages: usize, in_flight: usize) -> anyhow::Result<Durable> {
    let control = stack::channel(&targets.control_url)?;
    let chat: Vec<_> = (0..8).map(|_| stack::channel(&targets.chat_url)).collect::<Result<_, _>>()?;
    let (owner, _) = stack::create_session(&control, "Chat owner").await?;
    let room_id = stack::create_room(&control, &owner, "Chat room").await?;
    let mut tokens = vec![owner];
    for index in 1..members {
        let (token, _) = stack::create_session(&control, &format!("Member {index}")).await?;
        stack::join_room(&control, &token, &room_id).await?;
        tokens.push(token);
    }

    // Every member watches; arrivals are keyed by the message's text, which starts with its
    // send time.
    let arrivals: Arc<Mutex<HashMap<String, (usize, u64)>>> = Arc::default();
    let (ready_sender, mut ready) = tokio::sync::mpsc::channel::<()>(members);
    let mut watchers = tokio::task::JoinSet::new();
    for (index, token) in tokens.iter().enumerate() {
        let mut client = chat_pb::chat_service_client::ChatServiceClient::new(chat[index % chat.len()].clone());
        let request = stack::bearer(chat_pb::WatchMessagesRequest { room_id: room_id.clone(), after_seq: None }, token);
        let (arrivals, ready_sender) = (Arc::clone(&arrivals), ready_sender.clone());
        watchers.spawn(async move {
            let Ok(response) = client.watch_messages(request).await else { return };
            let mut events = response.into_inner();
            let mut ready_sender = Some(ready_sender);
            while let Ok(Some(event)) = events.message().await {
                if let Some(sender) = ready_sender.take() {
                    let _ = sender.send(()).await;
                }
                if let Some(chat_pb::watch_messages_response::Event::Message(message)) = event.event
                    && let Some(sent_us) = crate::fanout::sent_from_text(&message.text)
                {
                    let latency = u64::try_from(wall_micros() - sent_us).unwrap_or(0);
                    if let Ok(mut arrivals) = arrivals.lock() {
                        let entry = arrivals.entry(message.text).or_insert((0, 0));
                        *entry = (entry.0 + 1, entry.1.max(latency));
                    }
                }
            }
        });
    }
    drop(ready_sender);
    for _ in 0..members {
        tokio::time::timeout(Duration::from_secs(60), ready.recv()).await?.context("a chat watcher failed")?;
    }

    let cpu_before = procstat::cpu_seconds(&targets.pids);
    let started = Instant::now();
    let per_sender = messages.div_ceil(members * in_flight);
    let mut senders = tokio::task::JoinSet::new();
    for (member, token) in tokens.iter().enumerate() {
        for lane in 0..in_flight {
            let mut client =
                chat_pb::chat_service_client::ChatServiceClient::new(chat[(member + lane) % chat.len()].clone());
            let (token, room_id) = (token.clone(), room_id.clone());
            senders.spawn(async move {
                let mut acks = Vec::with_capacity(per_sender);
                for index in 0..per_sender {
                    let sent = Instant::now();
                    let text = format!("{}|{member}-{lane}-{index}", wall_micros());
                    let client_message_id = format!("{member}-{lane}-{index}");
                    let request = chat_pb::SendMessageRequest { room_id: room_id.clone(), text, client_message_id };
                    client.send_message(stack::bearer(request, &token)).await?;
                    acks.push(u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX));
                }
                anyhow::Ok(acks)
            });
        }
    }
    let mut acks = Vec::new();
    while let Some(done) = senders.join_next().await {
        acks.extend(done??);
    }
    let elapsed = started.elapsed();
    // Let the streams drain.
    let sent = acks.len();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let complete = arrivals.lock().map_or(0, |arrivals| arrivals.values().filter(|(n, _)| *n == members).count());
        if complete >= sent || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cpu_used = procstat::cpu_seconds(&targets.pids) - cpu_before;
    watchers.abort_all();
    let (complete, slowest): (usize, Vec<u64>) = arrivals.lock().map_or((0, Vec::new()), |arrivals| {
        let complete: Vec<u64> =
            arrivals.values().filter(|(n, _)| *n == members).map(|(_, latency)| *latency).collect();
        (complete.len(), complete)
    });
    Ok(Durable {
        messages: sent,
        acked_per_second: sent as f64 / elapsed.as_secs_f64(),
        ack: stats::summarize(acks),
        all_received: stats::summarize(slowest),
        complete,
        server_cpu_us_per_message: cpu_used * 1e6 / sent.max(1) as f64,
    })
}

/// Rows per second of a plain insert loop (message row plus the room's sequence, as chat-svc
/// writes them) into a fresh database with `chat_db`'s schema, `per_transaction` rows per commit.
pub fn sqlite_ceiling(chat_db: &Path, synchronous: &str, rows: usize, per_transaction: usize) -> anyhow::Result<f64> {
    let source = rusqlite::Connection::open_with_flags(chat_db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let schema: Vec<String> = source
        .prepare("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' ORDER BY rowid")?
        .query_map([], |row| row.get(0))?
        .collect::<Result<_, _>>()?;
    drop(source);
    let dir = tempfile::Builder::new().prefix("xiaowo-bench-sqlite-").tempdir()?;
    let mut connection = rusqlite::Connection::open(dir.path().join("chat.db"))?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", synchronous)?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.pragma_update(None, "busy_timeout", 5000)?;
    for statement in &schema {
        connection.execute(statement, [])?;
    }
    let started = Instant::now();
    let mut seq = 0i64;
    while usize::try_from(seq)? < rows {
        let transaction = connection.transaction()?;
        for _ in 0..per_transaction {
            seq += 1;
            transaction.execute(
                "INSERT INTO messages (room_id, seq, sender_id, text, client_message_id, status, created_at) \
                 VALUES ('bench-room', ?1, 'bench-user', ?2, ?3, 'stored', ?4)",
                rusqlite::params![
                    seq,
                    format!("{}|line {seq}", wall_micros()),
                    format!("m-{seq}"),
                    wall_micros() / 1000
                ],
            )?;
            transaction.execute(
                "INSERT INTO room_sequences (room_id, last_seq) VALUES ('bench-room', ?1) \
                 ON CONFLICT (room_id) DO UPDATE SET last_seq = excluded.last_seq",
                [seq],
            )?;
        }
        transaction.commit()?;
    }
    Ok(seq as f64 / started.elapsed().as_secs_f64())
}
