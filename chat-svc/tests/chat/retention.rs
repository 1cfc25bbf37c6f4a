//! Retention in chat-svc: the chat of a room is deleted exactly when the room has been closed
//! longer than the period (room-svc's closing time, heard over its event stream), counted in
//! `xiaowo_retention_pruned_total`, while other rooms' chat keeps flowing during the prune.

use std::time::Duration;

use crate::helpers::{TestApp, User, as_user, next_change, replayed};
use proto::room::v1 as room_pb;
use svc_kit::clock::Clock;
use svc_kit::retention::RetentionConfig;
use tonic::Code;

const PERIOD: Duration = Duration::from_secs(3 * 86_400);
/// Messages in the first closed room, so that a prune runs many batches.
const OLD_MESSAGES: u64 = 1200;

fn policy() -> RetentionConfig {
    RetentionConfig {
        chat_of_closed_rooms: PERIOD,
        interval: Duration::from_millis(50),
        batch: 25,
        ..RetentionConfig::keep_everything()
    }
}

fn pruned(metrics: &str, table: &str) -> u64 {
    svc_kit::testing::pruned(metrics, "chat", table)
}

fn pass_finished(metrics: &str, now_ms: i64) -> bool {
    svc_kit::testing::last_retention_pass_ms(metrics, "chat").is_some_and(|done| done >= now_ms)
}

async fn pass_done(app: &TestApp) -> String {
    svc_kit::testing::retention_pass_done(app.chat_server().addr, "chat", app.stack.clock.now_ms()).await
}

/// Closes the room and waits until chat-svc has heard so (the watcher's stream ends).
async fn close_and_wait(app: &TestApp, owner: &User, watcher: &User, room_id: &str) {
    let mut stream = app.watch(watcher, room_id, None).await.unwrap();
    replayed(&mut stream).await;
    let close = room_pb::CloseRoomRequest { room_id: room_id.to_owned() };
    app.rooms().close_room(as_user(close, owner)).await.unwrap();
    let ended = loop {
        if let Err(status) = next_change(&mut stream).await {
            break status;
        }
    };
    assert_eq!(ended.code(), Code::FailedPrecondition);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_of_closed_rooms_is_pruned_exactly_past_its_period() {
    let mut app = TestApp::start().await;
    app.retention = policy();
    app.restart_chat().await;
    let owner = app.user("Owner").await;
    let bo = app.user("Bo").await;

    let old = app.room(&owner, &[&bo]).await;
    let mut senders = tokio::task::JoinSet::new();
    for (index, user) in [owner.clone(), bo.clone()].into_iter().enumerate() {
        let (chat, room_id) = (app.chat(), old.clone());
        senders.spawn(async move {
            let mut chat = chat;
            for count in 0..OLD_MESSAGES / 2 {
                let request = proto::chat::v1::SendMessageRequest {
                    room_id: room_id.clone(),
                    text: format!("{index}: {count}"),
                    client_message_id: uuid::Uuid::new_v4().to_string(),
                };
                chat.send_message(as_user(request, &user)).await.unwrap();
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }
    let cursor = proto::chat::v1::UpdateCursorRequest { room_id: old.clone(), received_seq: 5, read_seq: 5 };
    app.chat().update_cursor(as_user(cursor, &bo)).await.unwrap();
    close_and_wait(&app, &owner, &bo, &old).await;

    app.stack.clock.advance(Duration::from_millis(1));
    let newer = app.room(&owner, &[&bo]).await;
    app.say(&bo, &newer, "closed a millisecond later").await;
    close_and_wait(&app, &owner, &bo, &newer).await;

    // Exactly one period after `old` closed: everything kept.
    app.stack.clock.advance(PERIOD - Duration::from_millis(1));
    let metrics = pass_done(&app).await;
    assert_eq!(pruned(&metrics, "messages"), 0);
    assert_eq!(pruned(&metrics, "closed_rooms"), 0);

    // One millisecond more: `old`'s chat goes while a live room keeps chatting.
    let live = app.room(&owner, &[&bo]).await;
    app.stack.clock.advance(Duration::from_millis(1));
    let mut sent = 0;
    let metrics = loop {
        app.say(&bo, &live, "still talking").await;
        sent += 1;
        let metrics = app.chat_metrics().await;
        if pass_finished(&metrics, app.stack.clock.now_ms()) {
            break metrics;
        }
    };
    assert_eq!(pruned(&metrics, "messages"), OLD_MESSAGES);
    assert_eq!(pruned(&metrics, "member_cursors"), 1);
    assert_eq!(pruned(&metrics, "closed_rooms"), 1);
    let history = app.history(&bo, &live, 0, 100).await.unwrap();
    assert_eq!(history.messages.len(), sent);

    // And `newer`'s one millisecond after its own period.
    app.stack.clock.advance(Duration::from_millis(1));
    let metrics = pass_done(&app).await;
    assert_eq!(pruned(&metrics, "messages"), OLD_MESSAGES + 1);
    assert_eq!(pruned(&metrics, "closed_rooms"), 2);
}
