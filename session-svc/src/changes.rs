//! The `WatchSessionChanges` feed: the domain's broadcast of committed changes, with a
//! heartbeat first and at an interval, through a bounded buffer per watcher. A watcher that
//! falls behind is not skipped past what it missed: its feed ends, and it must reconnect and
//! drop everything it cached.

use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::sessions::SessionChange;

/// One item of a watch feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The feed is alive (sent first, then every heartbeat interval).
    Heartbeat,
    Change(SessionChange),
}

/// Why a watch feed ended on the server's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnded {
    /// The watcher did not keep up and `missed` changes were dropped for it.
    FellBehind { missed: u64 },
    /// The server is shutting down.
    ShuttingDown,
}

/// How long the final item of a feed may wait for room in its buffer.
const FAREWELL_WAIT: Duration = Duration::from_secs(1);

/// Forwards `changes` (subscribed by the caller, so nothing committed after the call is
/// missed) with a heartbeat first and every `heartbeat`, through `buffer` items. A watcher
/// that stops reading fills the buffer, then lags on the broadcast, and its feed ends with
/// [`WatchEnded::FellBehind`]: memory per watcher stays bounded.
pub fn watch(
    mut changes: broadcast::Receiver<SessionChange>,
    heartbeat: Duration,
    buffer: usize,
    shutdown: CancellationToken,
) -> ReceiverStream<Result<Delivery, WatchEnded>> {
    let (sender, receiver) = mpsc::channel(buffer.max(1));
    tokio::spawn(async move {
        // The first heartbeat goes out before anything else, so it is what tells the watcher
        // the feed is live, whatever changes are already waiting.
        if sender.send(Ok(Delivery::Heartbeat)).await.is_err() {
            return;
        }
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let item = tokio::select! {
                biased;
                () = shutdown.cancelled() => Err(WatchEnded::ShuttingDown),
                _ = ticker.tick() => Ok(Delivery::Heartbeat),
                change = changes.recv() => match change {
                    Ok(change) => Ok(Delivery::Change(change)),
                    Err(broadcast::error::RecvError::Lagged(missed)) => Err(WatchEnded::FellBehind { missed }),
                    Err(broadcast::error::RecvError::Closed) => Err(WatchEnded::ShuttingDown),
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
                if shutdown.is_cancelled() {
                    let _ = sender.try_send(Err(WatchEnded::ShuttingDown));
                }
                return;
            }
        }
    });
    ReceiverStream::new(receiver)
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;

    use super::*;
    use crate::sessions::{ChangeKind, EndReason};

    fn change(n: i64) -> SessionChange {
        SessionChange { user_id: n.to_string(), at_ms: n, kind: ChangeKind::Ended(EndReason::Revoked) }
    }

    #[tokio::test]
    async fn heartbeat_first_then_changes_in_order() {
        let (sender, receiver) = broadcast::channel(16);
        let mut feed = watch(receiver, Duration::from_secs(3600), 8, CancellationToken::new());
        sender.send(change(1)).unwrap();
        sender.send(change(2)).unwrap();
        assert_eq!(feed.next().await, Some(Ok(Delivery::Heartbeat)));
        assert_eq!(feed.next().await, Some(Ok(Delivery::Change(change(1)))));
        assert_eq!(feed.next().await, Some(Ok(Delivery::Change(change(2)))));
    }

    #[tokio::test]
    async fn a_watcher_that_falls_behind_is_ended_not_skipped_ahead() {
        let (sender, receiver) = broadcast::channel(4);
        let mut feed = watch(receiver, Duration::from_secs(3600), 1, CancellationToken::new());
        // Not reading: one item fits the buffer, the rest overflow the broadcast ring.
        for n in 0..64 {
            sender.send(change(n)).unwrap();
        }
        let mut seen = Vec::new();
        let ended = loop {
            match feed.next().await {
                Some(Ok(Delivery::Change(change))) => seen.push(change.at_ms),
                Some(Ok(Delivery::Heartbeat)) => {}
                Some(Err(ended)) => break ended,
                None => panic!("the feed must say why it ended"),
            }
        };
        assert!(matches!(ended, WatchEnded::FellBehind { missed } if missed > 0), "{ended:?}");
        // Whatever was delivered before the end is a gapless prefix.
        assert_eq!(seen, (0..i64::try_from(seen.len()).unwrap()).collect::<Vec<_>>());
        assert_eq!(feed.next().await, None);
    }

    #[tokio::test]
    async fn shutdown_ends_the_feed() {
        let (_sender, receiver) = broadcast::channel::<SessionChange>(4);
        let shutdown = CancellationToken::new();
        let mut feed = watch(receiver, Duration::from_secs(3600), 4, shutdown.clone());
        assert_eq!(feed.next().await, Some(Ok(Delivery::Heartbeat)));
        shutdown.cancel();
        assert_eq!(feed.next().await, Some(Err(WatchEnded::ShuttingDown)));
        assert_eq!(feed.next().await, None);
    }
}
