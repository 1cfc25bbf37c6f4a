//! Both ends of a server-streaming change feed, as room-svc's `WatchRoomEvents` and
//! session-svc's `WatchSessionChanges` are served and followed.
//!
//! Serving ([`watch`]): a heartbeat first (it tells the watcher the feed is live) and at an
//! interval, then the items in order, through a bounded buffer per watcher. A watcher that
//! falls behind is not skipped past what it missed: its feed ends with
//! [`FeedEnded::FellBehind`], and it must reconnect and drop whatever it cached.
//!
//! Following ([`follow`]): subscribe, hand every message on, and when the feed ends or breaks
//! subscribe again with back-off, telling the follower at each step so that it can drop what
//! it cached (changes made while it was not subscribed are not replayed).

use std::future::Future;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;

/// One item of a watch feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery<T> {
    /// The feed is alive (sent first, then every heartbeat interval).
    Heartbeat,
    Item(T),
}

/// Why a watch feed ended on the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedEnded {
    /// The watcher did not keep up and `missed` items were dropped for it.
    FellBehind { missed: u64 },
    /// The server is shutting down.
    ShuttingDown,
}

/// How long the final item of a feed may wait for room in its buffer.
const FAREWELL_WAIT: Duration = Duration::from_secs(1);

/// Forwards `items` (subscribed by the caller, so nothing committed after the subscription is
/// missed; an `Err` carries how many were dropped for this subscriber) with a heartbeat first
/// and every `heartbeat`, through `buffer` items. A watcher that stops reading fills the
/// buffer, then lags on the broadcast, and its feed ends with [`FeedEnded::FellBehind`]:
/// memory per watcher stays bounded.
pub fn watch<T, S>(
    mut items: S,
    heartbeat: Duration,
    buffer: usize,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<Delivery<T>, FeedEnded>>
where
    T: Send + 'static,
    S: Stream<Item = Result<T, u64>> + Send + Unpin + 'static,
{
    let (sender, receiver) = mpsc::channel(buffer.max(1));
    tokio::spawn(async move {
        // The first heartbeat goes out before anything else, whatever is already waiting.
        if sender.send(Ok(Delivery::Heartbeat)).await.is_err() {
            return;
        }
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let item = tokio::select! {
                biased;
                () = shutdown.cancelled() => Err(FeedEnded::ShuttingDown),
                _ = ticker.tick() => Ok(Delivery::Heartbeat),
                item = items.next() => match item {
                    Some(Ok(item)) => Ok(Delivery::Item(item)),
                    Some(Err(missed)) => Err(FeedEnded::FellBehind { missed }),
                    None => Err(FeedEnded::ShuttingDown),
                },
            };
            if item.is_err() {
                // The last word says why the feed ends; a watcher that is not reading gets a
                // moment to take it, not forever (the feed ends either way).
                let _ = tokio::time::timeout(FAREWELL_WAIT, sender.send(item)).await;
                return;
            }
            let sent = tokio::select! {
                () = shutdown.cancelled() => false,
                sent = sender.send(item) => sent.is_ok(),
            };
            if !sent {
                // Shutting down while this watcher's buffer is full: it hears why if it can.
                if shutdown.is_cancelled() {
                    let _ = sender.try_send(Err(FeedEnded::ShuttingDown));
                }
                return;
            }
        }
    });
    ReceiverStream::new(receiver)
}

/// [`watch`] over a tokio broadcast receiver, its lag as the count of items missed.
pub fn watch_broadcast<T: Clone + Send + 'static>(
    receiver: tokio::sync::broadcast::Receiver<T>,
    heartbeat: Duration,
    buffer: usize,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<Delivery<T>, FeedEnded>> {
    use tokio_stream::wrappers::{BroadcastStream, errors::BroadcastStreamRecvError};
    let items = BroadcastStream::new(receiver).map(|item| item.map_err(|BroadcastStreamRecvError::Lagged(n)| n));
    watch(items, heartbeat, buffer, shutdown)
}

/// First pause before subscribing again to a feed that ended or could not be reached.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause between subscription attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What a follower hears from [`follow`], in this order for each subscription: `Subscribed`,
/// `Live` with the first message, every message as `Item`, `Lost` when the subscription ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Followed<T> {
    /// A new subscription: changes made before it may have been missed, so whatever the
    /// follower cached must go.
    Subscribed,
    /// The subscription's first message arrived (a heartbeat, for feeds served by [`watch`]):
    /// from now on every change arrives.
    Live,
    /// A message, heartbeats included.
    Item(T),
    /// The subscription ended, broke or was stopped by shutdown: changes are no longer heard.
    Lost,
}

/// Follows a feed until `shutdown`: calls `subscribe`, hands everything it hears to `on`, and
/// after the subscription ends or fails, subscribes again after a back-off of
/// [`INITIAL_BACKOFF`] doubling to [`MAX_BACKOFF`] (reset by every message received). `feed`
/// names the feed in logs.
pub async fn follow<T, S, F, Fut>(
    feed: &'static str,
    mut subscribe: F,
    mut on: impl FnMut(Followed<T>),
    shutdown: CancellationToken,
) where
    S: Stream<Item = Result<T, tonic::Status>> + Unpin,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<S, tonic::Status>>,
{
    let mut backoff = INITIAL_BACKOFF;
    loop {
        let subscribed = tokio::select! {
            () = shutdown.cancelled() => return,
            result = subscribe() => result,
        };
        match subscribed {
            Ok(mut messages) => {
                on(Followed::Subscribed);
                let mut live = false;
                loop {
                    let message = tokio::select! {
                        () = shutdown.cancelled() => {
                            on(Followed::Lost);
                            return;
                        }
                        message = messages.next() => message,
                    };
                    match message {
                        Some(Ok(message)) => {
                            if !live {
                                live = true;
                                tracing::info!(feed, "feed live");
                                on(Followed::Live);
                            }
                            backoff = INITIAL_BACKOFF;
                            on(Followed::Item(message));
                        }
                        None => break,
                        Some(Err(status)) => {
                            tracing::warn!(feed, code = ?status.code(), "feed broke; subscribing again");
                            break;
                        }
                    }
                }
                on(Followed::Lost);
            }
            Err(status) => tracing::warn!(feed, code = ?status.code(), "cannot subscribe to the feed; retrying"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::broadcast;

    use super::*;

    #[tokio::test]
    async fn heartbeat_first_then_items_in_order() {
        let (sender, receiver) = broadcast::channel(16);
        let mut feed = watch_broadcast(receiver, Duration::from_secs(3600), 8, CancellationToken::new());
        sender.send(1).unwrap();
        sender.send(2).unwrap();
        assert_eq!(feed.next().await, Some(Ok(Delivery::Heartbeat)));
        assert_eq!(feed.next().await, Some(Ok(Delivery::Item(1))));
        assert_eq!(feed.next().await, Some(Ok(Delivery::Item(2))));
    }

    #[tokio::test]
    async fn heartbeats_repeat() {
        let (_sender, receiver) = broadcast::channel::<i64>(16);
        let mut feed = watch_broadcast(receiver, Duration::from_millis(10), 4, CancellationToken::new());
        for _ in 0..3 {
            assert_eq!(feed.next().await, Some(Ok(Delivery::Heartbeat)));
        }
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_ended_not_skipped_ahead() {
        let (sender, receiver) = broadcast::channel(4);
        let mut feed = watch_broadcast(receiver, Duration::from_secs(3600), 1, CancellationToken::new());
        // Not reading: one item fits the buffer, the rest overflow the broadcast ring.
        for n in 0..64_i64 {
            sender.send(n).unwrap();
        }
        let mut seen = Vec::new();
        let ended = loop {
            match feed.next().await {
                Some(Ok(Delivery::Item(n))) => seen.push(n),
                Some(Ok(Delivery::Heartbeat)) => {}
                Some(Err(ended)) => break ended,
                None => panic!("the feed must say why it ended"),
            }
        };
        assert!(matches!(ended, FeedEnded::FellBehind { missed } if missed > 0), "{ended:?}");
        // Whatever was delivered before the end is a gapless prefix.
        assert_eq!(seen, (0..i64::try_from(seen.len()).unwrap()).collect::<Vec<_>>());
        assert_eq!(feed.next().await, None);
    }

    #[tokio::test]
    async fn shutdown_ends_the_feed() {
        let (_sender, receiver) = broadcast::channel::<i64>(4);
        let shutdown = CancellationToken::new();
        let mut feed = watch_broadcast(receiver, Duration::from_secs(3600), 4, shutdown.clone());
        assert_eq!(feed.next().await, Some(Ok(Delivery::Heartbeat)));
        shutdown.cancel();
        assert_eq!(feed.next().await, Some(Err(FeedEnded::ShuttingDown)));
        assert_eq!(feed.next().await, None);
    }

    #[tokio::test]
    async fn a_follower_hears_each_subscription_and_subscribes_again_after_it_ends() {
        let heard = Arc::new(Mutex::new(Vec::new()));
        let attempts = Arc::new(Mutex::new(0));
        let shutdown = CancellationToken::new();
        let follower = {
            let (heard, attempts, shutdown) = (Arc::clone(&heard), Arc::clone(&attempts), shutdown.clone());
            tokio::spawn(async move {
                let subscribe = || {
                    let attempt = {
                        let mut attempts = attempts.lock().unwrap();
                        *attempts += 1;
                        *attempts
                    };
                    async move {
                        match attempt {
                            // The first subscription hears two messages, then ends.
                            1 => Ok(tokio_stream::iter(vec![Ok(1), Ok(2)])),
                            // The second cannot be made.
                            2 => Err(tonic::Status::unavailable("down")),
                            // The third hears one message and breaks.
                            _ => Ok(tokio_stream::iter(vec![Ok(3), Err(tonic::Status::internal("broke"))])),
                        }
                    }
                };
                let record = |followed| heard.lock().unwrap().push(followed);
                follow("test feed", subscribe, record, shutdown).await;
            })
        };
        while *attempts.lock().unwrap() < 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        follower.await.unwrap();
        let heard = heard.lock().unwrap().clone();
        use Followed::{Item, Live, Lost, Subscribed};
        assert_eq!(heard[..9], [Subscribed, Live, Item(1), Item(2), Lost, Subscribed, Live, Item(3), Lost]);
    }
}
