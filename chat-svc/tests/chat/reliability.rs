//! chat-svc when its database is held locked by another writer: sends wait for the busy
//! timeout, then fail with a retryable status, store nothing, and go through when retried with
//! the same client message ids once the lock is gone.

use std::time::{Duration, Instant};

use crate::helpers::{TestApp, as_user, next_message, replayed};
use proto::chat::v1 as pb;
use proto::chat::v1::chat_service_client::ChatServiceClient;
use tokio::task::JoinSet;
use tonic::Code;
use xiaowo::node::Target;

/// chat-svc's busy timeout in these tests (svc-kit's default).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_locked_database_refuses_sends_retryably_and_keeps_nothing_half_written() {
    if svc_kit::testing::skip_on_postgres("the lock is taken on the SQLite file, which PostgreSQL does not use") {
        return;
    }
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let bob = app.user("Bob").await;
    let room_id = app.room(&ana, &[&bob]).await;
    for text in ["one", "two", "three"] {
        app.say(&ana, &room_id, text).await;
    }
    let mut watch = app.watch(&bob, &room_id, Some(0)).await.unwrap();
    assert_eq!(replayed(&mut watch).await.1, 3);
    // Longer than the busy timeout, so that the answer comes from chat-svc, not the deadline.
    let channel = svc_kit::peer::channel(&app.chat_server().url, BUSY_TIMEOUT * 4).unwrap();

    let other_writer = rusqlite::Connection::open(app.stack.sqlite_file(Target::Chat)).unwrap();
    other_writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    let send = |index: usize| {
        let mut client = ChatServiceClient::new(channel.clone());
        let request = pb::SendMessageRequest {
            room_id: room_id.clone(),
            text: format!("while locked {index}"),
            client_message_id: format!("locked-{index}"),
        };
        let request = as_user(request, &ana);
        async move { client.send_message(request).await.map(tonic::Response::into_inner) }
    };
    let started = Instant::now();
    let mut sends = JoinSet::new();
    for index in 0..5 {
        sends.spawn(send(index));
    }
    let refused = sends.join_all().await;
    let waited = started.elapsed();
    for result in &refused {
        assert_eq!(result.as_ref().map(|_| ()).unwrap_err().code(), Code::Unavailable, "retryable: {result:?}");
    }
    assert!(waited >= BUSY_TIMEOUT.mul_f32(0.9), "it waited for the lock first ({waited:?})");
    let during = app.history(&ana, &room_id, 0, 50).await.unwrap();
    assert_eq!(during.messages.len(), 3, "readers go on while the writer waits");

    other_writer.execute_batch("ROLLBACK").unwrap();
    drop(other_writer);

    let after = app.history(&ana, &room_id, 0, 50).await.unwrap();
    assert_eq!(after.messages.len(), 3, "nothing half-written");
    let mut seqs = Vec::new();
    for index in 0..5 {
        let sent = send(index).await.unwrap();
        assert!(!sent.duplicate, "the refused attempt stored nothing");
        seqs.push(sent.message.unwrap().seq);
    }
    assert_eq!(seqs, [4, 5, 6, 7, 8], "sequence numbers continue without a gap");
    let again = send(0).await.unwrap();
    assert!(again.duplicate, "and a further retry is recognised");
    assert_eq!(again.message.unwrap().seq, 4);
    for expected in 4..=8 {
        assert_eq!(next_message(&mut watch).await.unwrap().seq, expected, "the watcher saw no phantom");
    }
}
