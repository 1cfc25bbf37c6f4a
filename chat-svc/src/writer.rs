//! Group commit: every send goes through one bounded queue to one writer task, which commits
//! what has queued up and what arrives within a short linger after the first (at most a batch)
//! in one transaction, publishes the new messages, and only then answers each sender.
//! Throughput pays one commit (one fsync with `synchronous=FULL`) per batch, not per message,
//! and no sender hears "sent" before its row is on disk.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::ChatMetrics;
use crate::error::Error;
use crate::model::{NewMessage, Outcome, RoomEvent, Sent};
use crate::pubsub::PubSub;
use crate::store::Store;

/// One message to store and the sender waiting for the answer.
struct WriteOp {
    message: NewMessage,
    reply: oneshot::Sender<Result<Sent, Error>>,
}

/// The sending side of the queue.
#[derive(Debug, Clone)]
pub struct Writer {
    queue: mpsc::Sender<WriteOp>,
}

impl std::fmt::Debug for WriteOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteOp").field("room_id", &self.message.room_id).finish()
    }
}

impl Writer {
    /// Stores `message` and returns once it is committed (or was already stored).
    ///
    /// # Errors
    /// `Unavailable` when the writer has stopped (shutdown), `Database` when the commit failed.
    pub async fn send(&self, message: NewMessage) -> Result<Sent, Error> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(WriteOp { message, reply }).await.map_err(|_| Error::Unavailable)?;
        answer.await.map_err(|_| Error::Unavailable)?
    }
}

/// The writer task's parts.
#[derive(Debug)]
pub struct WriterTask {
    pub store: Store,
    pub pubsub: Arc<dyn PubSub>,
    pub metrics: ChatMetrics,
    pub batch_max: usize,
    /// How long a batch gathers sends after its first (`--chat-write-linger`).
    pub linger: std::time::Duration,
}

/// A queue of `capacity` and the task that drains it.
/// On shutdown the queue closes (new sends get `Unavailable`) and what is already queued is
/// still committed and answered.
pub fn channel(capacity: usize, task: WriterTask, shutdown: CancellationToken) -> (Writer, impl Future<Output = ()>) {
    let (queue, receiver) = mpsc::channel(capacity.max(1));
    (Writer { queue }, task.run(receiver, shutdown))
}

impl WriterTask {
    async fn run(self, mut receiver: mpsc::Receiver<WriteOp>, shutdown: CancellationToken) {
        loop {
            let next = tokio::select! {
                op = receiver.recv() => op,
                () = shutdown.cancelled(), if !receiver.is_closed() => {
                    receiver.close();
                    continue;
                }
            };
            let Some(first) = next else { break };
            let ops = self.gather(first, &mut receiver).await;
            self.commit(ops).await;
        }
        tracing::debug!("chat writer stopped");
    }

    /// The batch that starts with `first`: what is queued, and what arrives within the linger,
    /// up to a full batch. Closing the queue (shutdown) ends the wait.
    async fn gather(&self, first: WriteOp, receiver: &mut mpsc::Receiver<WriteOp>) -> Vec<WriteOp> {
        let batch_max = self.batch_max.max(1);
        let mut ops = vec![first];
        let linger = tokio::time::sleep(self.linger);
        tokio::pin!(linger);
        while ops.len() < batch_max {
            match receiver.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) if self.linger.is_zero() => break,
                Err(_) => tokio::select! {
                    biased;
                    op = receiver.recv() => match op {
                        Some(op) => ops.push(op),
                        None => break,
                    },
                    () = &mut linger => break,
                },
            }
        }
        ops
    }

    /// Commits one batch, publishes, answers.
    async fn commit(&self, ops: Vec<WriteOp>) {
        let (messages, replies): (Vec<_>, Vec<_>) = ops.into_iter().map(|op| (op.message, op.reply)).unzip();
        // A batch holds at most `--chat-write-batch` messages.
        self.metrics.batch_size.observe(f64::from(u32::try_from(messages.len()).unwrap_or(u32::MAX)));
        let results = match self.store.commit_batch(&messages).await {
            Ok(outcomes) => outcomes.into_iter().map(answer).collect::<Vec<_>>(),
            Err(error) if svc_kit::status::is_busy(&error) => {
                // Another writer held the database past the busy timeout: one by one would only
                // wait that long again per message. Nothing was written; every sender may retry.
                tracing::warn!(%error, batch = messages.len(), "database busy; batch refused as retryable");
                messages.iter().map(|_| Err(Error::Unavailable)).collect()
            }
            Err(error) => {
                // One bad message must not fail its neighbours: retry each on its own.
                tracing::warn!(%error, batch = messages.len(), "batch commit failed; retrying one by one");
                let mut results = Vec::with_capacity(messages.len());
                for message in &messages {
                    let result = self.store.commit_batch(std::slice::from_ref(message)).await;
                    results.push(
                        result
                            .map_err(Error::from)
                            .and_then(|mut outcomes| outcomes.pop().ok_or(Error::Unavailable))
                            .and_then(answer),
                    );
                }
                results
            }
        };
        for (result, reply) in results.into_iter().zip(replies) {
            if let Ok(sent) = &result
                && !sent.duplicate
            {
                self.metrics.messages_stored.inc();
                // The room of a message just stored is one the sender's request named.
                let room_id = svc_kit::id::RoomId::issued(sent.message.room_id.clone());
                self.pubsub.publish(&room_id, RoomEvent::Message(sent.message.clone()));
            }
            // The sender may have given up (deadline); the message is stored all the same.
            let _ = reply.send(result);
        }
    }
}

/// A sender's answer from what became of their message.
fn answer(outcome: Outcome) -> Result<Sent, Error> {
    match outcome {
        Outcome::Sent(sent) => Ok(sent),
        Outcome::Muted { until } => Err(Error::Muted { until }),
    }
}
