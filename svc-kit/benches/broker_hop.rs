//! The latency a NATS hop adds to one room event, beside the in-process broadcast the
//! single-instance path uses, measured in the same run: one event at a time, from publish to
//! receipt, through a tokio broadcast channel and through `svc_kit::bus::Broker` (one
//! connection publishing, another subscribed, as between two instances).
//!
//! `XIAOWO_BENCH_NATS_URL=nats://127.0.0.1:4222 cargo bench -p svc-kit --bench broker_hop`
//! (scripts/bench-scaleout.sh runs it against its own nats-server).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a benchmark stops at any failure, and reports counts and ranks as f64 figures"
)]

use std::time::{Duration, Instant};

use bytes::Bytes;
use svc_kit::bus::Broker;

const EVENTS: usize = 2_000;
/// About the size of an encoded sync state change.
const PAYLOAD: usize = 200;

fn summary(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let at = |quantile: f64| {
        let index = ((samples.len() as f64 - 1.0) * quantile).round() as usize;
        samples[index].as_secs_f64() * 1e6
    };
    println!("| {name} | {} | {:.1} | {:.1} | {:.1} |", samples.len(), at(0.5), at(0.99), at(1.0));
}

#[tokio::main]
async fn main() {
    let Ok(url) = std::env::var("XIAOWO_BENCH_NATS_URL") else {
        println!("skipped: set XIAOWO_BENCH_NATS_URL to a nats-server (scripts/bench-scaleout.sh does)");
        return;
    };
    let payload = Bytes::from(vec![7_u8; PAYLOAD]);

    let (sender, mut receiver) = tokio::sync::broadcast::channel::<Bytes>(64);
    let mut in_process = Vec::with_capacity(EVENTS);
    for _ in 0..EVENTS {
        let sent = Instant::now();
        sender.send(payload.clone()).unwrap();
        receiver.recv().await.unwrap();
        in_process.push(sent.elapsed());
    }

    let publisher = Broker::connect(&url, "bench-publisher").await.unwrap();
    let subscriber = Broker::connect(&url, "bench-subscriber").await.unwrap();
    let mut subscription = subscriber.subscribe("xiaowo.bench.room.*").await.unwrap();
    subscriber.flush().await.unwrap();
    let mut through_nats = Vec::with_capacity(EVENTS);
    for _ in 0..EVENTS {
        let sent = Instant::now();
        publisher.publish("xiaowo.bench.room.r".to_owned(), &[], payload.clone());
        tokio::time::timeout(Duration::from_secs(5), subscription.next()).await.unwrap().unwrap();
        through_nats.push(sent.elapsed());
    }

    println!("| path ({PAYLOAD}-byte event, one at a time) | events | p50 µs | p99 µs | max µs |");
    println!("|---|---|---|---|---|");
    summary("in-process broadcast (one instance)", in_process);
    summary("NATS hop (publish on one connection, receive on another)", through_nats);
}
