//! Group commit: every send goes through one bounded queue to one writer task, which commits
//! what has queued up (at most a batch) in one transaction, publishes the new messages, and
//! only then answers each sender. Throughput pays one commit (one fsync with
//! `synchronous=FULL`) per batch, not per message, and no sender hears "sent" before its row
//! is on disk.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::ChatMetrics;
use crate::delivery::DeliveryTracker;
use crate::error::Error;
use crate::model::{MessageStatus, NewMessage, RoomEvent, Sent};
use crate::pubsub::PubSub;
use crate::store::Store;

enum WriteOp {
    Send { message: NewMessage, reply: oneshot::Sender<Result<Sent, Error>> },
    Delivered { room_id: String, seqs: Vec<i64> },
}

/// The sending side of the queue.
#[derive(Debug, Clone)]
pub struct Writer {
    queue: mpsc::Sender<WriteOp>,
}

impl std::fmt::Debug for WriteOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Send { message, .. } => f.debug_struct("Send").field("room_id", &message.room_id).finish(),
            Self::Delivered { room_id, seqs } => {
                f.debug_struct("Delivered").field("room_id", room_id).field("seqs", &seqs.len()).finish()
            }
        }
    }
}

impl Writer {
    /// Stores `message` and returns once it is committed (or was already stored).
    ///
    /// # Errors
    /// `Unavailable` when the writer has stopped (shutdown), `Database` when the commit failed.
    pub async fn send(&self, message: NewMessage) -> Result<Sent, Error> {
        let (reply, answer) = oneshot::channel();
        self.queue.send(WriteOp::Send { message, reply }).await.map_err(|_| Error::Unavailable)?;
        answer.await.map_err(|_| Error::Unavailable)?
    }

    /// Marks messages delivered, soon. Status is advisory, so a full queue drops the update
    /// rather than making a watcher wait.
    pub fn delivered(&self, room_id: &str, seqs: Vec<i64>) {
        if seqs.is_empty() {
            return;
        }
        if self.queue.try_send(WriteOp::Delivered { room_id: room_id.to_owned(), seqs }).is_err() {
            tracing::debug!(%room_id, "write queue full; delivered status dropped");
        }
    }
}

/// The writer task's parts.
#[derive(Debug)]
pub struct WriterTask {
    pub store: Store,
    pub pubsub: Arc<dyn PubSub>,
    pub delivery: Arc<DeliveryTracker>,
    pub metrics: ChatMetrics,
    pub batch_max: usize,
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
        // Messages nobody still waits for, to be marked delivered in the next transaction.
        let mut carried: Vec<(String, Vec<i64>)> = Vec::new();
        loop {
            let mut ops = Vec::new();
            if carried.is_empty() {
                let next = tokio::select! {
                    op = receiver.recv() => op,
                    () = shutdown.cancelled(), if !receiver.is_closed() => {
                        receiver.close();
                        continue;
                    }
                };
                match next {
                    Some(op) => ops.push(op),
                    None => break,
                }
            }
            while ops.len() < self.batch_max.max(1) {
                match receiver.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
            carried = self.commit(ops, std::mem::take(&mut carried)).await;
        }
        if !carried.is_empty() {
            self.commit(Vec::new(), carried).await;
        }
        tracing::debug!("chat writer stopped");
    }

    /// Commits one batch, publishes, answers; returns what became delivered on publication.
    async fn commit(&self, ops: Vec<WriteOp>, mut delivered: Vec<(String, Vec<i64>)>) -> Vec<(String, Vec<i64>)> {
        let mut messages = Vec::new();
        let mut replies = Vec::new();
        for op in ops {
            match op {
                WriteOp::Send { message, reply } => {
                    messages.push(message);
                    replies.push(reply);
                }
                WriteOp::Delivered { room_id, seqs } => delivered.push((room_id, seqs)),
            }
        }
        self.metrics.batch_size.observe(messages.len() as f64);
        let results = match self.store.commit_batch(&messages, &delivered).await {
            Ok(sent) => sent.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(error) if svc_kit::status::is_busy(&error) => {
                // Another writer held the database past the busy timeout: one by one would only
                // wait that long again per message. Nothing was written; every sender may retry.
                // Delivered status is advisory and stays `stored` in the database this time.
                tracing::warn!(%error, batch = messages.len(), "database busy; batch refused as retryable");
                messages.iter().map(|_| Err(Error::Unavailable)).collect()
            }
            Err(error) => {
                // One bad message must not fail its neighbours: retry each on its own.
                tracing::warn!(%error, batch = messages.len(), "batch commit failed; retrying one by one");
                let mut results = Vec::with_capacity(messages.len());
                for message in &messages {
                    let result = self.store.commit_batch(std::slice::from_ref(message), &[]).await;
                    results.push(result.map_err(Error::from).and_then(|mut sent| sent.pop().ok_or(Error::Unavailable)));
                }
                if let Err(error) = self.store.commit_batch(&[], &delivered).await {
                    tracing::warn!(%error, "delivered status not recorded");
                }
                results
            }
        };
        for (room_id, seqs) in &delivered {
            for seq in seqs {
                self.pubsub.publish(room_id, RoomEvent::StatusChanged { seq: *seq, status: MessageStatus::Delivered });
            }
        }

        let mut carried: Vec<(String, Vec<i64>)> = Vec::new();
        for (result, reply) in results.into_iter().zip(replies) {
            if let Ok(sent) = &result
                && !sent.duplicate
            {
                self.metrics.messages_stored.inc();
                let message = &sent.message;
                self.pubsub.publish(&message.room_id, RoomEvent::Message(message.clone()));
                if self.delivery.published(&message.room_id, message.seq) {
                    match carried.iter_mut().find(|(room_id, _)| *room_id == message.room_id) {
                        Some((_, seqs)) => seqs.push(message.seq),
                        None => carried.push((message.room_id.clone(), vec![message.seq])),
                    }
                }
            }
            // The sender may have given up (deadline); the message is stored all the same.
            let _ = reply.send(result);
        }
        carried
    }
}
