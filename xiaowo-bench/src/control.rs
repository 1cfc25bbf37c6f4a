//! Scenario 3, the control plane: join room, get state and a history page at fixed
//! concurrency, beside gRPC health `Check` on the same server as the echo ceiling (same
//! transport, HTTP/2 connections and tower stack; no auth, no database).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proto::chat::v1 as chat_pb;
use proto::sync::v1 as sync_pb;
use tonic::transport::Channel;

use crate::procstat;
use crate::stack::{self, Targets};
use crate::stats::{self, Summary};

/// One operation at one concurrency.
#[derive(Debug, Clone)]
pub struct Load {
    /// Which call.
    pub operation: &'static str,
    /// Calls in flight.
    pub concurrency: usize,
    /// Successful calls per second.
    pub per_second: f64,
    /// Calls that failed.
    pub errors: u64,
    /// Latency of successful calls.
    pub latency: Summary,
    /// Server CPU µs per call.
    pub server_cpu_us_per_call: f64,
}

/// Runs `call(n)` (n counts up across workers) from `concurrency` workers for `duration`.
async fn load<F, Fut>(operation: &'static str, pids: &[u32], concurrency: usize, duration: Duration, call: F) -> Load
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let counter = Arc::new(AtomicU64::new(0));
    let cpu_before = procstat::cpu_seconds(pids);
    let deadline = tokio::time::Instant::now() + duration;
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (call, counter) = (call.clone(), Arc::clone(&counter));
        workers.spawn(async move {
            let (mut latencies, mut errors) = (Vec::new(), 0u64);
            while tokio::time::Instant::now() < deadline {
                let started = tokio::time::Instant::now();
                match call(counter.fetch_add(1, Ordering::Relaxed)).await {
                    Ok(()) => latencies.push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        });
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    while let Some(Ok((worker_latencies, worker_errors))) = workers.join_next().await {
        latencies.extend(worker_latencies);
        errors += worker_errors;
    }
    let cpu_used = procstat::cpu_seconds(pids) - cpu_before;
    let latency = stats::summarize(latencies);
    let calls = latency.count.max(1) as f64;
    Load {
        operation,
        concurrency,
        per_second: calls / duration.as_secs_f64(),
        errors,
        latency,
        server_cpu_us_per_call: cpu_used * 1e6 / calls,
    }
}

/// Every operation at every concurrency.
pub async fn run(targets: &Targets, concurrencies: &[usize], duration: Duration) -> anyhow::Result<Vec<Load>> {
    let control: Vec<Channel> = (0..8).map(|_| stack::channel(&targets.control_url)).collect::<Result<_, _>>()?;
    let sync: Vec<Channel> = (0..8).map(|_| stack::channel(&targets.sync_urls[0])).collect::<Result<_, _>>()?;
    let chat: Vec<Channel> = (0..8).map(|_| stack::channel(&targets.chat_url)).collect::<Result<_, _>>()?;

    // Joiners and rooms: each join is a new membership until the pairs run out, then a rejoin.
    let (joiners, join_rooms) = (200usize, 40usize);
    let mut tokens = Vec::with_capacity(joiners);
    for index in 0..joiners {
        tokens.push(stack::create_session(&control[0], &format!("Joiner {index}")).await?.0);
    }
    let (owner, _) = stack::create_session(&control[0], "Owner").await?;
    let mut room_ids = Vec::with_capacity(join_rooms);
    for index in 0..join_rooms {
        room_ids.push(stack::create_room(&control[0], &owner, &format!("Join room {index}")).await?);
    }
    let state_rooms = stack::media_rooms(targets, 16).await?;
    // One room with history: 200 messages, read a page of 50 at a time.
    let (history_token, history_room, _) = state_rooms[0].clone();
    let mut chat_client = chat_pb::chat_service_client::ChatServiceClient::new(chat[0].clone());
    for index in 0..200 {
        let request = chat_pb::SendMessageRequest {
            room_id: history_room.clone(),
            text: format!("history line {index}"),
            client_message_id: format!("history-{index}"),
        };
        chat_client.send_message(stack::bearer(request, &history_token)).await?;
    }

    let (tokens, room_ids, state_rooms) = (Arc::new(tokens), Arc::new(room_ids), Arc::new(state_rooms));
    let mut loads = Vec::new();
    for &concurrency in concurrencies {
        let channels = control.clone();
        loads.push(
            load("echo (health Check)", &targets.pids, concurrency, duration, move |n| {
                let channel = channels[usize::try_from(n).unwrap_or(0) % channels.len()].clone();
                async move {
                    let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                    health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await?;
                    Ok(())
                }
            })
            .await,
        );
        let (channels, tokens, room_ids) = (control.clone(), Arc::clone(&tokens), Arc::clone(&room_ids));
        loads.push(
            load("JoinRoom", &targets.pids, concurrency, duration, move |n| {
                let n = usize::try_from(n).unwrap_or(0);
                let channel = channels[n % channels.len()].clone();
                let token = tokens[n % tokens.len()].clone();
                let room_id = room_ids[(n / tokens.len()) % room_ids.len()].clone();
                async move { stack::join_room(&channel, &token, &room_id).await }
            })
            .await,
        );
        let (channels, rooms) = (sync.clone(), Arc::clone(&state_rooms));
        loads.push(
            load("GetRoomState", &targets.pids, concurrency, duration, move |n| {
                let n = usize::try_from(n).unwrap_or(0);
                let channel = channels[n % channels.len()].clone();
                let (token, room_id, _) = rooms[n % rooms.len()].clone();
                async move {
                    let mut client = sync_pb::sync_service_client::SyncServiceClient::new(channel);
                    client.get_room_state(stack::bearer(sync_pb::GetRoomStateRequest { room_id }, &token)).await?;
                    Ok(())
                }
            })
            .await,
        );
        let (channels, token, room_id) = (chat.clone(), history_token.clone(), history_room.clone());
        loads.push(
            load("ListMessages (page of 50)", &targets.pids, concurrency, duration, move |n| {
                let channel = channels[usize::try_from(n).unwrap_or(0) % channels.len()].clone();
                let request = chat_pb::ListMessagesRequest { room_id: room_id.clone(), before_seq: 0, page_size: 50 };
                let request = stack::bearer(request, &token);
                async move {
                    let mut client = chat_pb::chat_service_client::ChatServiceClient::new(channel);
                    client.list_messages(request).await?;
                    Ok(())
                }
            })
            .await,
        );
    }
    Ok(loads)
}
