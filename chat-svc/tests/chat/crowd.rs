//! Crowds of distinct people: a burst of first-time senders, each in a room of their own, and
//! rooms of several members whose clients all acknowledge what they receive.

use std::collections::HashMap;
use std::sync::Arc;

use proto::chat::v1 as pb;
use proto::chat::v1::chat_service_client::ChatServiceClient;
use proto::chat::v1::watch_messages_response::Event;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

use crate::helpers::{TestApp, User, as_user, next_change, next_message};

/// First-time senders in the burst, each the owner of a room of their own.
const SENDERS: usize = 1000;
/// Calls sharing one connection: below the server's limit on concurrent streams (256).
const CALLS_PER_CONNECTION: usize = 200;
/// Rooms and streams set up at once; the setup is not the subject.
const SETUP_CONCURRENCY: usize = 4;

/// Runs `make(index)` for `0..count`, `SETUP_CONCURRENCY` at a time; the results in order.
async fn in_order<T, F>(count: usize, make: impl Fn(usize) -> F) -> Vec<T>
where
    T: Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let mut results: Vec<Option<T>> = (0..count).map(|_| None).collect();
    let mut pending = JoinSet::new();
    for index in 0..count {
        let task = make(index);
        pending.spawn(async move { (index, task.await) });
        if pending.len() >= SETUP_CONCURRENCY {
            let (done, result) = pending.join_next().await.unwrap().unwrap();
            results[done] = Some(result);
        }
    }
    while let Some(joined) = pending.join_next().await {
        let (done, result) = joined.unwrap();
        results[done] = Some(result);
    }
    results.into_iter().map(Option::unwrap).collect()
}

fn connections(app: &TestApp, calls: usize) -> Vec<Channel> {
    (0..calls.div_ceil(CALLS_PER_CONNECTION)).map(|_| app.chat_server().channel()).collect()
}

async fn watch_caught_up(channel: Channel, user: User, room_id: String) -> Streaming<pb::WatchMessagesResponse> {
    let request = as_user(pb::WatchMessagesRequest { room_id, after_seq: None }, &user);
    let mut stream = ChatServiceClient::new(channel).watch_messages(request).await.unwrap().into_inner();
    assert!(matches!(next_change(&mut stream).await.unwrap(), Event::CaughtUp(_)));
    stream
}

#[tokio::test]
async fn a_burst_of_first_time_senders_is_stored_and_delivered_without_unavailable() {
    // Arrange: every sender owns a room that one watcher has joined and watches. Nobody has
    // sent anything yet, so chat-svc has never asked about any sender.
    let app = Arc::new(TestApp::start_for_crowds().await);
    let watcher = app.user("Watcher").await;
    let senders = in_order(SENDERS, |index| {
        let (app, watcher) = (Arc::clone(&app), watcher.clone());
        async move {
            let sender = app.user(&format!("Sender {index}")).await;
            let room_id = app.room(&sender, &[&watcher]).await;
            (sender, room_id)
        }
    })
    .await;
    // Later than the rooms' creation, so that their activity shows.
    app.stack.clock.advance(std::time::Duration::from_secs(60));
    let watch_connections = connections(&app, SENDERS);
    let mut streams = in_order(SENDERS, |index| {
        let channel = watch_connections[index / CALLS_PER_CONNECTION].clone();
        watch_caught_up(channel, watcher.clone(), senders[index].1.clone())
    })
    .await;

    // Act: everyone sends their first message at once.
    let send_connections = connections(&app, SENDERS);
    let mut burst = JoinSet::new();
    for (index, (sender, room_id)) in senders.iter().enumerate() {
        let mut chat = ChatServiceClient::new(send_connections[index / CALLS_PER_CONNECTION].clone());
        let request = pb::SendMessageRequest {
            room_id: room_id.clone(),
            text: format!("first words of sender {index}"),
            client_message_id: format!("first-{index}"),
        };
        let request = as_user(request, sender);
        burst.spawn(async move { (index, chat.send_message(request).await.map(tonic::Response::into_inner)) });
    }
    let mut outcomes = Vec::with_capacity(SENDERS);
    while let Some(joined) = burst.join_next().await {
        outcomes.push(joined.unwrap());
    }

    // Assert: nobody was refused, every message was stored as its room's first and reached
    // the watcher.
    let mut unavailable: HashMap<&str, usize> = HashMap::new();
    for (_, outcome) in &outcomes {
        if let Err(status) = outcome
            && status.code() == Code::Unavailable
        {
            *unavailable.entry(status.message()).or_default() += 1;
        }
    }
    assert_eq!(unavailable, HashMap::new(), "first-time senders answered UNAVAILABLE");
    for (index, outcome) in outcomes {
        let message = outcome.unwrap_or_else(|status| panic!("sender {index}: {status:?}")).message.unwrap();
        assert_eq!(message.seq, 1, "sender {index}");
    }
    for (index, stream) in streams.iter_mut().enumerate() {
        assert_eq!(next_message(stream).await.unwrap().text, format!("first words of sender {index}"));
    }

    // room-svc heard that every room is in use, in a few calls rather than one per room.
    let now = svc_kit::clock::Clock::now_ms(app.stack.clock.as_ref());
    for (index, (sender, room_id)) in senders.iter().enumerate() {
        svc_kit::testing::eventually(&format!("room {index}'s activity reaching room-svc"), async || {
            let request = as_user(proto::room::v1::GetRoomRequest { room_id: room_id.clone() }, sender);
            let room = app.rooms().get_room(request).await.unwrap().into_inner().room.unwrap();
            room.last_active_time.as_ref().map(proto::ms_from_timestamp) == Some(now)
        })
        .await;
    }
    let metrics = app.peers.metrics().await;
    let calls: f64 = ["RecordActivity", "BatchRecordActivity"]
        .iter()
        .filter_map(|method| {
            let name = format!("xiaowo_grpc_requests_total{{code=\"OK\",method=\"{method}\"");
            metrics.lines().find(|line| line.starts_with(&name))?.rsplit(' ').next()?.parse::<f64>().ok()
        })
        .sum();
    let a_tenth = f64::from(u16::try_from(SENDERS / 10).unwrap());
    assert!((2.0..=a_tenth).contains(&calls), "{calls} activity calls for {SENDERS} rooms");
}

/// Every frame but heartbeats up to and including the message "end".
async fn frames_until_end(stream: &mut Streaming<pb::WatchMessagesResponse>) -> Vec<Event> {
    let mut frames = Vec::new();
    loop {
        let event = next_change(stream).await.unwrap();
        let end = matches!(&event, Event::Message(message) if message.text == "end");
        frames.push(event);
        if end {
            return frames;
        }
    }
}

#[tokio::test]
async fn a_message_reaches_each_other_watcher_as_one_frame_while_everyone_acknowledges() {
    // Arrange: Ana, Bo, Cy and Di in one room, all watching; Bo's and Cy's clients report
    // received and read after every message, as clients do.
    let app = TestApp::start().await;
    let [ana, bo, cy, di] = [app.user("Ana").await, app.user("Bo").await, app.user("Cy").await, app.user("Di").await];
    let room_id = app.room(&ana, &[&bo, &cy, &di]).await;
    let channel = app.chat_server().channel();
    let mut ana_stream = watch_caught_up(channel.clone(), ana.clone(), room_id.clone()).await;
    let mut bo_stream = watch_caught_up(channel.clone(), bo.clone(), room_id.clone()).await;
    let mut cy_stream = watch_caught_up(channel.clone(), cy.clone(), room_id.clone()).await;
    let mut di_stream = watch_caught_up(channel.clone(), di.clone(), room_id.clone()).await;
    let acknowledge = |user: &User, seq: i64| {
        let request = pb::UpdateCursorRequest { room_id: room_id.clone(), received_seq: seq, read_seq: seq };
        let (mut chat, request) = (ChatServiceClient::new(channel.clone()), as_user(request, user));
        async move { chat.update_cursor(request).await.unwrap() }
    };

    // Act: Ana sends three messages; each is acknowledged by Bo and Cy before the next. A last
    // message closes the exchange: everything published before it reaches a stream first.
    for text in ["one", "two", "three"] {
        let seq = app.say(&ana, &room_id, text).await;
        acknowledge(&bo, seq).await;
        acknowledge(&cy, seq).await;
    }
    app.say(&ana, &room_id, "end").await;

    // Assert: Di, who acknowledged nothing, got the four messages and nothing else; Bo got them
    // and his own cursors (for his other devices), never a status or anyone else's cursor.
    let texts = |frames: &[Event]| -> Vec<String> {
        frames
            .iter()
            .filter_map(|event| match event {
                Event::Message(message) => Some(message.text.clone()),
                _ => None,
            })
            .collect()
    };
    let di_frames = frames_until_end(&mut di_stream).await;
    assert_eq!(texts(&di_frames), ["one", "two", "three", "end"]);
    assert_eq!(di_frames.len(), 4, "one frame per message: {di_frames:?}");
    for (member, frames) in
        [(&bo, frames_until_end(&mut bo_stream).await), (&cy, frames_until_end(&mut cy_stream).await)]
    {
        assert_eq!(texts(&frames), ["one", "two", "three", "end"]);
        let mut own_cursors = 0;
        for frame in &frames {
            match frame {
                Event::Message(_) => {}
                Event::CursorUpdated(cursor) if cursor.user_id == member.user_id => own_cursors += 1,
                other => panic!("a watcher who is not the sender got {other:?}"),
            }
        }
        assert_eq!(own_cursors, 3, "each member hears their own three cursor moves: {frames:?}");
    }
    // Ana, the sender, still hears that her messages were delivered.
    let ana_frames = frames_until_end(&mut ana_stream).await;
    assert!(ana_frames.iter().any(|event| matches!(event, Event::MessageStatusChanged(_))), "{ana_frames:?}");
}
