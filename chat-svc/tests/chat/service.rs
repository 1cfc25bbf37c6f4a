//! chat-svc end to end against real session-svc and room-svc: sends, sequence numbers,
//! replay and live delivery, limits, validation, moderation, receipts, restarts.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::helpers::{TestApp, as_admin, as_user, code, next_change, next_event, next_message, replayed, violations};
use proto::chat::v1 as pb;
use proto::chat::v1::watch_messages_response::Event;
use proto::room::v1 as room_pb;
use tokio::task::JoinSet;
use tonic::Code;

#[tokio::test]
async fn a_retry_with_the_same_client_message_id_returns_the_original() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;
    let room_id = app.room(&ana, &[&bo]).await;

    let first = app.send(&ana, &room_id, "hello", "m-1").await.unwrap();
    let retry = app.send(&ana, &room_id, "hello", "m-1").await.unwrap();
    let other_sender = app.send(&bo, &room_id, "hello", "m-1").await.unwrap();

    assert!(!first.duplicate);
    assert!(retry.duplicate);
    let (first, retry) = (first.message.unwrap(), retry.message.unwrap());
    assert_eq!((retry.seq, retry.text, retry.create_time), (first.seq, first.text, first.create_time));
    assert!(!other_sender.duplicate, "the id is per sender");
    assert_eq!(other_sender.message.unwrap().seq, 2);
    let history = app.history(&ana, &room_id, 0, 0).await.unwrap();
    assert_eq!(history.messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![2, 1]);
    assert_eq!(history.latest_seq, 2);
}

#[tokio::test]
async fn sequence_numbers_are_gap_free_under_concurrent_senders() {
    let app = TestApp::start().await;
    let owner = app.user("Owner").await;
    let mut members = Vec::new();
    for index in 0..4 {
        members.push(app.user(&format!("M{index}")).await);
    }
    let room_id = app.room(&owner, &members.iter().collect::<Vec<_>>()).await;
    let other_room = app.room(&owner, &[]).await;

    let mut tasks = JoinSet::new();
    for (index, member) in members.iter().enumerate() {
        for n in 0..30 {
            let (client, member, room_id) = (app.chat(), member.clone(), room_id.clone());
            tasks.spawn(async move {
                let request = pb::SendMessageRequest {
                    room_id,
                    text: format!("{index}/{n}"),
                    client_message_id: format!("c{n}"),
                };
                let mut client = client;
                client.send_message(as_user(request, &member)).await.unwrap().into_inner().message.unwrap().seq
            });
        }
    }
    // Another room's traffic interleaves without taking numbers from this one.
    for _ in 0..10 {
        app.say(&owner, &other_room, "elsewhere").await;
    }
    let mut seqs = Vec::new();
    while let Some(seq) = tasks.join_next().await {
        seqs.push(seq.unwrap());
    }

    seqs.sort_unstable();
    assert_eq!(seqs, (1..=120).collect::<Vec<i64>>());
    let mut stored = Vec::new();
    let mut before = 0;
    loop {
        let page = app.history(&owner, &room_id, before, 50).await.unwrap();
        stored.extend(page.messages.iter().map(|m| m.seq));
        if page.next_before_seq == 0 {
            break;
        }
        before = page.next_before_seq;
    }
    assert_eq!(stored, (1..=120).rev().collect::<Vec<i64>>());
    assert_eq!(app.history(&owner, &other_room, 0, 0).await.unwrap().latest_seq, 10);
}

#[tokio::test]
async fn replay_then_live_has_no_gap_or_duplicate_while_a_watcher_reconnects() {
    const TOTAL: i64 = 150;
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;
    let room_id = app.room(&ana, &[&bo]).await;

    let sender = {
        let (client, ana, room_id) = (app.chat(), ana.clone(), room_id.clone());
        tokio::spawn(async move {
            let mut client = client;
            for n in 0..TOTAL {
                let request = pb::SendMessageRequest {
                    room_id: room_id.clone(),
                    text: format!("{n}"),
                    client_message_id: format!("s{n}"),
                };
                client.send_message(as_user(request, &ana)).await.unwrap();
            }
        })
    };

    // Reconnect every few messages, each time asking for what follows the last one seen.
    let mut seen = Vec::new();
    let mut last = 0;
    let mut reconnects = 0;
    while last < TOTAL {
        let mut stream = app.watch(&bo, &room_id, Some(last)).await.unwrap();
        for _ in 0..(7 + reconnects % 5) {
            match next_change(&mut stream).await.unwrap() {
                Event::Message(message) => {
                    assert_eq!(message.seq, last + 1, "gap or duplicate after {last}");
                    last = message.seq;
                    seen.push(message.seq);
                    if last == TOTAL {
                        break;
                    }
                }
                Event::CaughtUp(pb::CaughtUp { latest_seq }) => assert_eq!(latest_seq, last),
                other => assert!(matches!(other, Event::MessageStatusChanged(_)), "{other:?}"),
            }
        }
        reconnects += 1;
    }
    sender.await.unwrap();

    assert_eq!(seen, (1..=TOTAL).collect::<Vec<_>>());
    assert!(reconnects > 5, "the watcher reconnected while messages were being sent");
}

#[tokio::test]
async fn a_watcher_too_far_behind_is_told_so_and_continues_live() {
    let app = TestApp::start_with(|config| config.max_replay = 5).await;
    let ana = app.user("Ana").await;
    let room_id = app.room(&ana, &[]).await;
    for n in 0..10 {
        app.say(&ana, &room_id, &format!("{n}")).await;
    }

    let mut behind = app.watch(&ana, &room_id, Some(0)).await.unwrap();
    assert_eq!(
        next_change(&mut behind).await.unwrap(),
        Event::TooFarBehind(pb::TooFarBehind { latest_seq: 10, max_replay: 5 })
    );
    assert_eq!(next_change(&mut behind).await.unwrap(), Event::CaughtUp(pb::CaughtUp { latest_seq: 10 }));
    let mut close_enough = app.watch(&ana, &room_id, Some(5)).await.unwrap();
    let (replayed_messages, latest) = replayed(&mut close_enough).await;
    assert_eq!(replayed_messages.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![6, 7, 8, 9, 10]);
    assert_eq!(latest, 10);

    app.say(&ana, &room_id, "live").await;
    assert_eq!(next_message(&mut behind).await.unwrap().seq, 11);
    assert_eq!(next_message(&mut close_enough).await.unwrap().seq, 11);
    assert_eq!(code(app.watch(&ana, &room_id, Some(12)).await), Code::InvalidArgument);
}

#[tokio::test]
async fn a_slow_watcher_is_caught_up_from_the_database() {
    let app = TestApp::start_with(|config| config.room_buffer = 4).await;
    let ana = app.user("Ana").await;
    let room_id = app.room(&ana, &[]).await;
    let mut slow = app.watch(&ana, &room_id, None).await.unwrap();
    assert_eq!(next_change(&mut slow).await.unwrap(), Event::CaughtUp(pb::CaughtUp { latest_seq: 0 }));

    // Far more than HTTP/2 flow control (2 MiB windows) lets through to a client that is not
    // reading, so the stream is not polled and the watcher falls behind the room's live buffer.
    const TOTAL: usize = 3200;
    let mut senders = JoinSet::new();
    for task in 0..16 {
        let (client, ana, room_id) = (app.chat(), ana.clone(), room_id.clone());
        senders.spawn(async move {
            let mut client = client;
            for n in 0..TOTAL / 16 {
                let request = pb::SendMessageRequest {
                    room_id: room_id.clone(),
                    text: "x".repeat(1000),
                    client_message_id: format!("t{task}-{n}"),
                };
                client.send_message(as_user(request, &ana)).await.unwrap();
            }
        });
    }
    while let Some(done) = senders.join_next().await {
        done.unwrap();
    }

    let mut seqs = Vec::new();
    while seqs.len() < TOTAL {
        seqs.push(next_message(&mut slow).await.unwrap().seq);
    }
    assert_eq!(seqs, (1..=i64::try_from(TOTAL).unwrap()).collect::<Vec<_>>());
    assert!(crate::helpers::metric(&app.chat_metrics().await, "xiaowo_chat_watch_lag_catch_ups_total") >= 1.0);
}

#[tokio::test]
async fn heartbeats_arrive_on_a_quiet_stream() {
    let app = TestApp::start_with(|config| config.heartbeat_interval = Duration::from_millis(50)).await;
    let ana = app.user("Ana").await;
    let room_id = app.room(&ana, &[]).await;
    let mut stream = app.watch(&ana, &room_id, None).await.unwrap();
    assert!(matches!(next_event(&mut stream).await.unwrap(), Event::CaughtUp(_)));
    for _ in 0..2 {
        assert!(matches!(
            next_event(&mut stream).await.unwrap(),
            Event::Heartbeat(pb::Heartbeat { server_time: Some(_) })
        ));
    }
}

#[tokio::test]
async fn a_busy_room_gets_no_heartbeats_and_a_quiet_one_does() {
    let interval = Duration::from_secs(2);
    let app = TestApp::start_with(|config| config.heartbeat_interval = interval).await;
    let ana = app.user("Ana").await;
    let busy_room = app.room(&ana, &[]).await;
    let quiet_room = app.room(&ana, &[]).await;
    let mut busy = app.watch(&ana, &busy_room, None).await.unwrap();
    let mut quiet = app.watch(&ana, &quiet_room, None).await.unwrap();
    for stream in [&mut busy, &mut quiet] {
        assert!(matches!(next_event(stream).await.unwrap(), Event::CaughtUp(_)));
    }

    // A message every 200 ms for 3 s (longer than the interval): every one pushes the room's
    // heartbeat back, so none is sent there; the other room, quiet all along, gets one.
    let busy_until = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < busy_until {
        let seq = app.say(&ana, &busy_room, "busy").await;
        loop {
            match next_event(&mut busy).await.unwrap() {
                Event::Message(message) if message.seq == seq => break,
                Event::Heartbeat(_) => panic!("a heartbeat while messages kept the room busy"),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(matches!(next_event(&mut quiet).await.unwrap(), Event::Heartbeat(pb::Heartbeat { server_time: Some(_) })));

    // Quiet now: the busy room's next heartbeat comes an interval after its last message.
    let quiet_since = std::time::Instant::now();
    while !matches!(next_event(&mut busy).await.unwrap(), Event::Heartbeat(_)) {}
    assert!(
        quiet_since.elapsed() >= interval * 3 / 4,
        "a heartbeat {:?} after the last message",
        quiet_since.elapsed()
    );
}

#[tokio::test]
async fn other_members_cursor_moves_do_not_hold_back_a_watchers_heartbeat() {
    let app = TestApp::start_with(|config| config.heartbeat_interval = Duration::from_secs(1)).await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;
    let room_id = app.room(&ana, &[&bo]).await;
    app.say(&bo, &room_id, "hello").await;
    let mut stream = app.watch(&ana, &room_id, None).await.unwrap();
    assert!(matches!(next_event(&mut stream).await.unwrap(), Event::CaughtUp(_)));

    // Bo moves his cursor every 100 ms until Ana hears a heartbeat (for 20 s at most). Ana's
    // stream passes none of those moves on, so they must not count as her stream's traffic.
    let stop = Arc::new(AtomicBool::new(false));
    let mover = {
        let (mut chat, bo, room_id, stop) = (app.chat(), bo.clone(), room_id.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            for _ in 0..200 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let request = pb::UpdateCursorRequest { room_id: room_id.clone(), received_seq: 1, read_seq: 1 };
                chat.update_cursor(as_user(request, &bo)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    assert!(matches!(next_event(&mut stream).await.unwrap(), Event::Heartbeat(_)));
    assert!(!mover.is_finished(), "the heartbeat came only once Bo stopped moving his cursor");
    stop.store(true, Ordering::Relaxed);
    mover.await.unwrap();
}

#[tokio::test]
async fn watch_streams_end_unavailable_when_the_service_stops() {
    let mut app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let room_id = app.room(&ana, &[]).await;
    let mut stream = app.watch(&ana, &room_id, None).await.unwrap();
    assert!(matches!(next_event(&mut stream).await.unwrap(), Event::CaughtUp(_)));
    app.chat.take().unwrap().stop().await;
    let ended = loop {
        if let Err(status) = next_event(&mut stream).await {
            break status;
        }
    };
    // Ended by the service with its own words, not cut off when the grace period ran out.
    assert_eq!((ended.code(), ended.message()), (Code::Unavailable, "service unavailable; retry"), "{ended:?}");
}

#[tokio::test]
async fn the_flood_limit_refuses_with_resource_exhausted() {
    let app = TestApp::start_with(|config| {
        config.flood_burst = 3;
        config.flood_per_second = 0.0;
    })
    .await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;
    let room_id = app.room(&ana, &[&bo]).await;

    for n in 0..3 {
        app.send(&ana, &room_id, "hi", &format!("f{n}")).await.unwrap();
    }
    let flooded = app.send(&ana, &room_id, "hi", "f3").await;
    let retry_of_stored = app.send(&ana, &room_id, "hi", "f2").await.unwrap();

    assert_eq!(code(flooded), Code::ResourceExhausted);
    assert!(retry_of_stored.duplicate, "a retry is answered, not limited");
    assert_eq!(code(app.send(&bo, &room_id, "hi", "f0").await), Code::Ok, "the limit is per member");
    assert_eq!(app.history(&ana, &room_id, 0, 0).await.unwrap().latest_seq, 4);
}

#[tokio::test]
async fn outsiders_and_muted_members_cannot_send() {
    let app = TestApp::start().await;
    let owner = app.user("Owner").await;
    let moderator = app.user("Mod").await;
    let member = app.user("Member").await;
    let outsider = app.user("Outsider").await;
    let room_id = app.room(&owner, &[&moderator, &member]).await;
    app.make_moderator(&owner, &room_id, &moderator).await;

    assert_eq!(code(app.send(&outsider, &room_id, "hi", "x").await), Code::PermissionDenied);
    assert_eq!(code(app.watch(&outsider, &room_id, None).await), Code::PermissionDenied);
    assert_eq!(code(app.history(&outsider, &room_id, 0, 0).await), Code::PermissionDenied);
    let unknown_room = uuid::Uuid::new_v4().to_string();
    assert_eq!(code(app.send(&member, &unknown_room, "hi", "x").await), Code::NotFound);
    let anonymous =
        pb::SendMessageRequest { room_id: room_id.clone(), text: "hi".into(), client_message_id: "x".into() };
    assert_eq!(code(app.chat().send_message(anonymous).await), Code::Unauthenticated);

    let mute = |actor: &crate::helpers::User, target: &crate::helpers::User, seconds: i64| {
        let request = pb::MuteMemberRequest {
            room_id: room_id.clone(),
            user_id: target.user_id.clone(),
            duration: Some(prost_types::Duration { seconds, nanos: 0 }),
        };
        let mut client = app.chat();
        let request = as_user(request, actor);
        async move { client.mute_member(request).await.map(tonic::Response::into_inner) }
    };
    assert_eq!(code(mute(&member, &moderator, 60).await), Code::PermissionDenied, "members cannot mute");
    assert_eq!(code(mute(&moderator, &owner, 60).await), Code::PermissionDenied, "nobody mutes the owner");
    assert_eq!(code(mute(&moderator, &outsider, 60).await), Code::NotFound);
    assert_eq!(code(mute(&moderator, &member, 0).await), Code::InvalidArgument);
    let muted = mute(&moderator, &member, 60).await.unwrap();
    assert_eq!(muted.mute_until.unwrap().seconds, crate::helpers::START_MS / 1000 + 60);

    assert_eq!(code(app.send(&member, &room_id, "hi", "while-muted").await), Code::PermissionDenied);
    app.stack.clock.advance(Duration::from_secs(61));
    assert_eq!(code(app.send(&member, &room_id, "hi", "after-mute").await), Code::Ok);
    mute(&owner, &member, 600).await.unwrap();
    let unmute = pb::UnmuteMemberRequest { room_id: room_id.clone(), user_id: member.user_id.clone() };
    app.chat().unmute_member(as_user(unmute, &moderator)).await.unwrap();
    assert_eq!(code(app.send(&member, &room_id, "hi", "after-unmute").await), Code::Ok);
}

#[tokio::test]
async fn invalid_input_is_refused_with_field_violations() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let room_id = app.room(&ana, &[]).await;

    let cases = [
        ("", "ok-id", vec!["text"]),
        ("   \n ", "ok-id", vec!["text"]),
        (&"x".repeat(1001), "ok-id", vec!["text"]),
        ("nul\u{0}inside", "ok-id", vec!["text"]),
        ("escape\u{1b}[31m", "ok-id", vec!["text"]),
        ("tab\there", "ok-id", vec!["text"]),
        ("fine", "", vec!["client_message_id"]),
        ("fine", "has space", vec!["client_message_id"]),
        ("", "", vec!["client_message_id", "text"]),
    ];
    for (text, id, expected) in cases {
        let status = app.send(&ana, &room_id, text, id).await.unwrap_err();
        assert_eq!(violations(&status), expected, "{text:?} / {id:?}");
    }
    let status = app.send(&ana, "", "fine", "id").await.unwrap_err();
    assert_eq!(violations(&status), vec!["room_id"]);

    let longest = app.send(&ana, &room_id, &"字".repeat(1000), "long").await.unwrap();
    let multiline = app.send(&ana, &room_id, "  two\nlines  ", "lines").await.unwrap();
    assert_eq!(longest.message.unwrap().text.chars().count(), 1000);
    assert_eq!(multiline.message.unwrap().text, "two\nlines", "trimmed, newline kept");
    let history = app.history(&ana, &room_id, 0, 500).await.unwrap_err();
    assert_eq!(violations(&history), vec!["page_size"]);
}

/// `SendMessageRequest` with `text` (tag 2) as raw bytes, to send what no string can hold.
#[derive(Clone, PartialEq, prost::Message)]
struct RawSendMessageRequest {
    #[prost(string, tag = "1")]
    room_id: String,
    #[prost(bytes = "vec", tag = "2")]
    text: Vec<u8>,
    #[prost(string, tag = "3")]
    client_message_id: String,
}

#[tokio::test]
async fn invalid_utf8_is_refused_at_the_protobuf_layer() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let room_id = app.room(&ana, &[]).await;
    let mut grpc = tonic::client::Grpc::new(app.chat_server().channel());
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/xiaowo.chat.v1.ChatService/SendMessage");

    let mut send_raw = async |text: &[u8]| {
        let request =
            RawSendMessageRequest { room_id: room_id.clone(), text: text.to_vec(), client_message_id: "raw".into() };
        grpc.ready().await.unwrap();
        let codec = tonic_prost::ProstCodec::<RawSendMessageRequest, pb::SendMessageResponse>::default();
        grpc.unary(as_user(request, &ana), path.clone(), codec).await
    };
    let invalid = send_raw(b"bad \xff\xfe bytes").await.unwrap_err();
    let valid = send_raw("good".as_bytes()).await.unwrap();

    assert_eq!(violations(&invalid), vec!["request"]);
    assert_eq!(valid.into_inner().message.unwrap().text, "good", "the raw path itself works");
    assert_eq!(app.history(&ana, &room_id, 0, 0).await.unwrap().latest_seq, 1);
}

#[tokio::test]
async fn moderators_delete_messages_for_everyone_and_it_is_logged() {
    let app = TestApp::start().await;
    let owner = app.user("Owner").await;
    let moderator = app.user("Mod").await;
    let member = app.user("Member").await;
    let room_id = app.room(&owner, &[&moderator, &member]).await;
    app.make_moderator(&owner, &room_id, &moderator).await;
    let seq = app.say(&member, &room_id, "regrettable").await;
    app.say(&member, &room_id, "fine").await;
    let mut watcher = app.watch(&owner, &room_id, None).await.unwrap();
    replayed(&mut watcher).await;

    let delete = |actor: &crate::helpers::User, seq: i64| {
        let mut client = app.chat();
        let request = as_user(pb::DeleteMessageRequest { room_id: room_id.clone(), seq }, actor);
        async move { client.delete_message(request).await.map(tonic::Response::into_inner) }
    };
    assert_eq!(code(delete(&member, seq).await), Code::PermissionDenied);
    assert_eq!(code(delete(&moderator, 99).await), Code::NotFound);
    let tombstone = delete(&moderator, seq).await.unwrap().message.unwrap();
    let again = delete(&owner, seq).await.unwrap().message.unwrap();

    assert_eq!(tombstone.status, pb::MessageStatus::Deleted as i32);
    assert_eq!(tombstone.text, "");
    assert_eq!(tombstone.deleted_by, moderator.user_id);
    assert_eq!(again, tombstone, "deleting twice is a no-op");
    loop {
        if let Event::MessageDeleted(deleted) = next_change(&mut watcher).await.unwrap() {
            assert_eq!((deleted.seq, deleted.deleted_by.as_str()), (seq, moderator.user_id.as_str()));
            break;
        }
    }
    let history = app.history(&member, &room_id, 0, 0).await.unwrap();
    let stored = history.messages.iter().find(|m| m.seq == seq).unwrap();
    assert_eq!((stored.status, stored.text.as_str()), (pb::MessageStatus::Deleted as i32, ""));
    let (replay, _) = replayed(&mut app.watch(&member, &room_id, Some(0)).await.unwrap()).await;
    assert_eq!(replay[0].status, pb::MessageStatus::Deleted as i32);
    assert_eq!(replay[0].text, "");

    let request = pb::ListModerationActionsRequest { room_id: room_id.clone(), ..Default::default() };
    let log = app.chat_admin().list_moderation_actions(as_admin(request.clone())).await.unwrap().into_inner();
    assert_eq!(log.moderation_actions.len(), 1, "one deletion, recorded once");
    let action = &log.moderation_actions[0];
    assert_eq!(action.kind, pb::ModerationKind::DeleteMessage as i32);
    assert_eq!(
        (action.actor_id.as_str(), action.target_user_id.as_str()),
        (moderator.user_id.as_str(), member.user_id.as_str())
    );
    assert_eq!(action.seq, seq);
    assert_eq!(code(app.chat_admin().list_moderation_actions(as_user(request, &owner)).await), Code::PermissionDenied);
}

#[tokio::test]
async fn delivered_means_another_member_received_it_and_only_the_sender_hears_so() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;
    let room_id = app.room(&ana, &[&bo]).await;
    let mut ana_stream = app.watch(&ana, &room_id, None).await.unwrap();
    let mut bo_stream = app.watch(&bo, &room_id, None).await.unwrap();
    replayed(&mut ana_stream).await;
    replayed(&mut bo_stream).await;
    let cursor = |user: &crate::helpers::User, received_seq: i64, read_seq: i64| {
        let mut client = app.chat();
        let request = as_user(pb::UpdateCursorRequest { room_id: room_id.clone(), received_seq, read_seq }, user);
        async move { client.update_cursor(request).await.map(tonic::Response::into_inner) }
    };

    // Streamed to both, but nobody other than Ana has said they received it: still stored.
    let sent = app.send(&ana, &room_id, "hi Bo", "d1").await.unwrap().message.unwrap();
    assert_eq!(sent.status, pb::MessageStatus::Stored as i32, "acknowledged once stored");
    assert_eq!(next_message(&mut bo_stream).await.unwrap().seq, sent.seq);
    assert_eq!(next_message(&mut ana_stream).await.unwrap().seq, sent.seq);
    // Ana's own cursor delivers nothing of hers.
    cursor(&ana, sent.seq, sent.seq).await.unwrap();
    let history = app.history(&ana, &room_id, 0, 0).await.unwrap();
    assert_eq!(history.messages[0].status, pb::MessageStatus::Stored as i32);

    // Bo's client acknowledges it: delivered, in history and on Ana's stream.
    let received = cursor(&bo, sent.seq, 0).await.unwrap().cursor.unwrap();
    assert_eq!((received.received_seq, received.read_seq), (1, 0));
    loop {
        if let Event::MessageStatusChanged(changed) = next_change(&mut ana_stream).await.unwrap() {
            assert_eq!(
                changed,
                pb::MessageStatusChanged { seq: sent.seq, status: pb::MessageStatus::Delivered as i32 }
            );
            break;
        }
    }
    let history = app.history(&ana, &room_id, 0, 0).await.unwrap();
    assert_eq!(history.messages[0].status, pb::MessageStatus::Delivered as i32);

    let read = cursor(&bo, 0, 1).await.unwrap().cursor.unwrap();
    assert_eq!((read.received_seq, read.read_seq), (1, 1), "never moves back");
    assert_eq!(code(cursor(&bo, 2, 0).await), Code::InvalidArgument, "beyond the latest message");
    // Bo hears cursors, never a status change: the message was one frame for him.
    loop {
        match next_change(&mut bo_stream).await.unwrap() {
            Event::CursorUpdated(update) if update.user_id == bo.user_id && update.read_seq == 1 => break,
            Event::CursorUpdated(_) => {}
            other => panic!("Bo got {other:?}"),
        }
    }
    let history = app.history(&ana, &room_id, 0, 0).await.unwrap();
    let cursors: HashMap<String, (i64, i64)> =
        history.cursors.into_iter().map(|c| (c.user_id, (c.received_seq, c.read_seq))).collect();
    assert_eq!(cursors, HashMap::from([(ana.user_id.clone(), (1, 1)), (bo.user_id.clone(), (1, 1))]));

    // A message to a room where nobody else is watching stays stored until someone comes
    // back and acknowledges it.
    drop(bo_stream);
    let unseen = app.send(&ana, &room_id, "anyone?", "d2").await.unwrap().message.unwrap();
    let history = app.history(&ana, &room_id, 0, 0).await.unwrap();
    assert_eq!(history.messages[0].seq, unseen.seq);
    assert_eq!(history.messages[0].status, pb::MessageStatus::Stored as i32);
    cursor(&bo, unseen.seq, 0).await.unwrap();
    let history = app.history(&bo, &room_id, 0, 0).await.unwrap();
    assert_eq!(history.messages[0].status, pb::MessageStatus::Delivered as i32);
}

#[tokio::test]
async fn kicked_members_and_closed_rooms_end_their_streams() {
    let app = TestApp::start().await;
    let owner = app.user("Owner").await;
    let bo = app.user("Bo").await;
    let cy = app.user("Cy").await;
    let room_id = app.room(&owner, &[&bo, &cy]).await;
    app.say(&bo, &room_id, "warm the access cache").await;
    let mut bo_stream = app.watch(&bo, &room_id, None).await.unwrap();
    let mut cy_stream = app.watch(&cy, &room_id, None).await.unwrap();
    let mut cy_other_tab = app.watch(&cy, &room_id, None).await.unwrap();
    replayed(&mut bo_stream).await;
    replayed(&mut cy_stream).await;
    replayed(&mut cy_other_tab).await;
    // Every stream that ends, for whatever reason, is no longer counted as open.
    let open_streams = async |expected: f64| {
        let what = format!("{expected} open watch streams");
        svc_kit::testing::eventually(&what, async || {
            crate::helpers::metric(&app.chat_metrics().await, "xiaowo_chat_watchers") == expected
        })
        .await;
    };
    open_streams(3.0).await;
    drop(cy_other_tab);
    open_streams(2.0).await;

    let kick = room_pb::KickMemberRequest { room_id: room_id.clone(), user_id: bo.user_id.clone() };
    app.rooms().kick_member(as_user(kick, &owner)).await.unwrap();
    let kicked = loop {
        match next_change(&mut bo_stream).await {
            Ok(_) => {}
            Err(status) => break status,
        }
    };
    assert_eq!(kicked.code(), Code::PermissionDenied);
    open_streams(1.0).await;
    assert_eq!(code(app.send(&bo, &room_id, "still here?", "k").await), Code::PermissionDenied);

    app.rooms().close_room(as_user(room_pb::CloseRoomRequest { room_id: room_id.clone() }, &owner)).await.unwrap();
    let closed = loop {
        match next_change(&mut cy_stream).await {
            Ok(_) => {}
            Err(status) => break status,
        }
    };
    assert_eq!(closed.code(), Code::FailedPrecondition);
    open_streams(0.0).await;
}

#[tokio::test]
async fn a_restart_loses_no_acknowledged_message() {
    let mut app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let room_id = app.room(&ana, &[]).await;

    // Senders keep going while the service shuts down; whatever was acknowledged must survive.
    let (acked_sender, mut acked) = tokio::sync::mpsc::unbounded_channel();
    let mut senders = JoinSet::new();
    for task in 0..4 {
        let (client, ana, room_id, acked_sender) = (app.chat(), ana.clone(), room_id.clone(), acked_sender.clone());
        senders.spawn(async move {
            let mut client = client;
            for n in 0..200 {
                let id = format!("t{task}-{n}");
                let request = pb::SendMessageRequest {
                    room_id: room_id.clone(),
                    text: id.clone(),
                    client_message_id: id.clone(),
                };
                match client.send_message(as_user(request, &ana)).await {
                    Ok(response) => acked_sender.send((id, response.into_inner().message.unwrap().seq)).unwrap(),
                    Err(_) => break,
                }
            }
        });
    }
    drop(acked_sender);
    let mut acknowledged = Vec::new();
    while acknowledged.len() < 40 {
        acknowledged.push(acked.recv().await.unwrap());
    }
    app.restart_chat().await;
    while senders.join_next().await.is_some() {}
    while let Ok(entry) = acked.try_recv() {
        acknowledged.push(entry);
    }

    let mut stored = HashMap::new();
    let mut before = 0;
    loop {
        let page = app.history(&ana, &room_id, before, 200).await.unwrap();
        stored.extend(page.messages.iter().map(|m| (m.text.clone(), m.seq)));
        if page.next_before_seq == 0 {
            break;
        }
        before = page.next_before_seq;
    }
    for (id, seq) in &acknowledged {
        assert_eq!(stored.get(id), Some(seq), "acknowledged message {id} lost");
    }
    let seqs: BTreeSet<i64> = stored.values().copied().collect();
    let count = i64::try_from(seqs.len()).unwrap();
    assert_eq!(seqs, (1..=count).collect(), "gap-free across the restart");
    let next = app.say(&ana, &room_id, "after restart").await;
    assert_eq!(next, count + 1);
}

/// Messages committed per transaction so far: (transactions, messages).
async fn write_batches(app: &TestApp) -> (f64, f64) {
    let text = app.chat_metrics().await;
    let metric = |name| crate::helpers::metric(&text, name);
    (metric("xiaowo_chat_write_batch_size_count"), metric("xiaowo_chat_write_batch_size_sum"))
}

#[tokio::test]
async fn sends_that_arrive_while_the_writer_lingers_share_its_transaction() {
    // A long linger: the second send, made a moment after the first, joins the first's batch,
    // and the first is answered only with it.
    let app = TestApp::start_with(|config| config.write_linger = Duration::from_secs(3)).await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;
    let room_id = app.room(&ana, &[&bo]).await;
    let before = write_batches(&app).await;
    let gap = Duration::from_millis(100);
    let started = std::time::Instant::now();
    let (first, second) = tokio::join!(app.say(&ana, &room_id, "one"), async {
        tokio::time::sleep(gap).await;
        app.say(&bo, &room_id, "two").await
    });
    assert!(started.elapsed() >= gap, "the first waited for the batch to close");
    assert_eq!((first, second), (1, 2));
    let after = write_batches(&app).await;
    assert_eq!((after.0 - before.0, after.1 - before.1), (1.0, 2.0), "one transaction of two messages");

    // Without a linger, a send that finds the queue empty is committed by itself.
    let app = TestApp::start_with(|config| config.write_linger = Duration::ZERO).await;
    let ana = app.user("Ana").await;
    let room_id = app.room(&ana, &[]).await;
    let before = write_batches(&app).await;
    assert_eq!(app.say(&ana, &room_id, "one").await, 1);
    assert_eq!(app.say(&ana, &room_id, "two").await, 2);
    let after = write_batches(&app).await;
    assert_eq!((after.0 - before.0, after.1 - before.1), (2.0, 2.0), "two transactions of one message");
}
