//! The broker that carries room events between instances of a service: a NATS connection
//! (Debian's `nats-server`, the `async-nats` client) with ordered fire-and-forget publishing
//! of bytes, subscriptions, and a signal each time the connection comes back.
//!
//! Nothing here knows what a room event is: each service decides its subjects, its payloads
//! and what to do when it may have missed something. NATS itself delivers at most once, so a
//! service treats the broker as a fast path only and keeps the database authoritative (its
//! versions and sequence numbers reveal any gap, which it then repairs from the database).
//!
//! Every connection is opened with `no_echo`: an instance never hears its own publications
//! (it has already delivered them to its own watchers in-process). Each publication also
//! carries the publishing instance's id in the [`ORIGIN_HEADER`] header, for state kept per
//! instance (presence).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};

/// The header naming the instance that published a message.
pub const ORIGIN_HEADER: &str = "Xiaowo-Origin";

/// Publications waiting for the connection before new ones are dropped (and counted): the
/// receivers' gap detection repairs what was dropped from the database.
const OUTGOING_QUEUE: usize = 16_384;

/// Where the broker is, if any.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BusConfig {
    /// NATS server URL (e.g. `nats://127.0.0.1:4222`) that carries room events between
    /// instances of sync-svc and chat-svc. Without it every instance delivers only its own
    /// events, which is right for a single instance of each service.
    #[arg(long = "nats-url", env = "XIAOWO_NATS_URL")]
    pub nats_url: Option<String>,
}

/// Why the broker could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The first connection failed.
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect { url: String, source: async_nats::ConnectError },
    /// A subscription was refused.
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe { subject: String, source: async_nats::SubscribeError },
}

/// One message received from another instance.
#[derive(Debug)]
pub struct Delivery {
    /// The subject it was published on.
    pub subject: String,
    /// The bytes the publisher gave.
    pub payload: Bytes,
    headers: Option<HeaderMap>,
}

impl Delivery {
    /// A header's value, if the publisher set it.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.as_ref().and_then(|headers| headers.get(name)).map(async_nats::HeaderValue::as_str)
    }

    /// The id of the instance that published it.
    #[must_use]
    pub fn origin(&self) -> Option<&str> {
        self.header(ORIGIN_HEADER)
    }
}

/// A subscription to a subject (wildcards allowed); survives reconnects.
#[derive(Debug)]
pub struct Subscription {
    inner: async_nats::Subscriber,
}

impl Subscription {
    /// The next message, or `None` once the connection is closed for good.
    pub async fn next(&mut self) -> Option<Delivery> {
        let message = self.inner.next().await?;
        Some(Delivery { subject: message.subject.to_string(), payload: message.payload, headers: message.headers })
    }
}

struct Outgoing {
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
}

/// A connection to NATS shared by the services of one process.
#[derive(Clone)]
pub struct Broker {
    client: async_nats::Client,
    instance_id: Arc<str>,
    outgoing: mpsc::Sender<Outgoing>,
    reconnections: watch::Receiver<u64>,
    connected: Arc<AtomicBool>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker").field("instance_id", &self.instance_id).finish_non_exhaustive()
    }
}

impl Broker {
    /// Connects to `url` (failing if the server cannot be reached now); afterwards the client
    /// reconnects by itself for as long as the process runs, resubscribing every subscription.
    ///
    /// # Errors
    /// When the first connection fails.
    pub async fn connect(url: &str, client_name: &str) -> Result<Self, BusError> {
        let instance_id: Arc<str> = Arc::from(random_id());
        let (reconnected, reconnections) = watch::channel(0_u64);
        let connected = Arc::new(AtomicBool::new(false));
        let events_connected = Arc::clone(&connected);
        let client = async_nats::ConnectOptions::new()
            .name(format!("{client_name}/{instance_id}"))
            .no_echo()
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempts| Duration::from_millis((100 * attempts as u64).min(2_000)))
            .event_callback(move |event| {
                let reconnected = reconnected.clone();
                let connected = Arc::clone(&events_connected);
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            // Every connection after the first follows an outage in which
                            // messages may have been lost; watchers of the counter resync.
                            connected.store(true, Ordering::SeqCst);
                            reconnected.send_modify(|count| *count += 1);
                            tracing::info!("NATS connected");
                        }
                        async_nats::Event::Disconnected => {
                            connected.store(false, Ordering::SeqCst);
                            tracing::warn!("NATS disconnected; reconnecting");
                        }
                        other => tracing::warn!(event = %other, "NATS"),
                    }
                }
            })
            .connect(url)
            .await
            .map_err(|source| BusError::Connect { url: url.to_owned(), source })?;
        connected.store(true, Ordering::SeqCst);
        let (outgoing, queue) = mpsc::channel(OUTGOING_QUEUE);
        tokio::spawn(publish_in_order(client.clone(), queue));
        Ok(Self { client, instance_id, outgoing, reconnections, connected })
    }

    /// This process's id on the broker (a random UUID-like string, new at every start).
    #[must_use]
    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Whether the connection is up right now.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::SeqCst)
    }

    /// Queues `payload` for `subject` with `headers`; publications leave in the order they
    /// were queued. Never blocks: when the queue is full the message is dropped, which the
    /// receivers detect as a gap.
    pub fn publish(&self, subject: String, headers: &[(&str, &str)], payload: Bytes) {
        let mut map = HeaderMap::new();
        map.insert(ORIGIN_HEADER, self.instance_id.as_ref());
        for (name, value) in headers {
            map.insert(*name, *value);
        }
        if self.outgoing.try_send(Outgoing { subject, headers: map, payload }).is_err() {
            tracing::warn!("NATS publish queue full; dropping an event (receivers resynchronise)");
        }
    }

    /// Receives what other instances publish on `subject` from now on.
    ///
    /// # Errors
    /// When the client is closed.
    pub async fn subscribe(&self, subject: &str) -> Result<Subscription, BusError> {
        let inner = self
            .client
            .subscribe(subject.to_owned())
            .await
            .map_err(|source| BusError::Subscribe { subject: subject.to_owned(), source })?;
        Ok(Subscription { inner })
    }

    /// Changes each time the connection is (re)established; after a change, messages
    /// published meanwhile may have been lost.
    #[must_use]
    pub fn connections(&self) -> watch::Receiver<u64> {
        self.reconnections.clone()
    }

    /// Waits until everything queued so far has been written to the server.
    ///
    /// # Errors
    /// When the connection is down.
    pub async fn flush(&self) -> Result<(), async_nats::client::FlushError> {
        // Give the ordering task a moment to hand over what is queued before flushing.
        tokio::task::yield_now().await;
        self.client.flush().await
    }
}

async fn publish_in_order(client: async_nats::Client, mut queue: mpsc::Receiver<Outgoing>) {
    while let Some(Outgoing { subject, headers, payload }) = queue.recv().await {
        if let Err(error) = client.publish_with_headers(subject, headers, payload).await {
            tracing::warn!(%error, "NATS publish failed; receivers resynchronise");
        }
    }
}

/// Whether `token` can be one token of a NATS subject (room ids are UUIDs, so always).
#[must_use]
pub fn is_subject_token(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_')
}

fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_ids_are_subject_tokens_and_wildcards_are_not() {
        assert!(is_subject_token("0b9f2c1e-6f1d-4c3a-9a53-2f0c8d1e7b4a"));
        for bad in ["", "a.b", "*", ">", "a b"] {
            assert!(!is_subject_token(bad), "{bad:?}");
        }
    }

    #[test]
    fn instance_ids_differ() {
        assert_ne!(random_id(), random_id());
    }
}
