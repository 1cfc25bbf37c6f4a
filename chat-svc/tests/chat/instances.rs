//! Two chat-svc instances on one database (a SQLite file in WAL mode, or PostgreSQL when
//! `XIAOWO_TEST_POSTGRES` is set), as two hosts behind a balancer run them: senders racing
//! through both get sequence numbers that are unique and gap-free, a retry is idempotent
//! whichever instance it reaches, and either instance replays the one order the database holds.

use crate::helpers::{TestApp, as_user, replayed};
use proto::chat::v1 as pb;
use proto::chat::v1::chat_service_client::ChatServiceClient;
use tokio::task::JoinSet;
use tonic::transport::Channel;

const SENDERS: usize = 4;
const MESSAGES_PER_SENDER: usize = 25;

/// Everything `room_id` holds, replayed through `client` from the start: (seq, text) in order.
async fn replay(
    client: &mut ChatServiceClient<Channel>,
    user: &crate::helpers::User,
    room_id: &str,
) -> Vec<(i64, String)> {
    let request = pb::WatchMessagesRequest { room_id: room_id.to_owned(), after_seq: Some(0) };
    let mut stream = client.watch_messages(as_user(request, user)).await.unwrap().into_inner();
    let (messages, _latest) = replayed(&mut stream).await;
    messages.into_iter().map(|message| (message.seq, message.text)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sequence_numbers_stay_unique_and_gap_free_across_instances() {
    let app = TestApp::start().await;
    let second = app.spawn_chat().await;
    let instances = [app.chat(), ChatServiceClient::new(second.channel())];
    let owner = app.user("Owner").await;
    let mut members = Vec::new();
    for index in 0..SENDERS {
        members.push(app.user(&format!("M{index}")).await);
    }
    let room_id = app.room(&owner, &members.iter().collect::<Vec<_>>()).await;

    let mut sends = JoinSet::new();
    for (index, member) in members.iter().enumerate() {
        for n in 0..MESSAGES_PER_SENDER {
            // Neighbouring sends go to different instances, so both allocate in the room at once.
            let mut client = instances[(index + n) % 2].clone();
            let (member, room_id) = (member.clone(), room_id.clone());
            sends.spawn(async move {
                let request = pb::SendMessageRequest {
                    room_id,
                    text: format!("{index}/{n}"),
                    client_message_id: format!("c{n}"),
                };
                let message =
                    client.send_message(as_user(request, &member)).await.unwrap().into_inner().message.unwrap();
                (message.seq, message.text)
            });
        }
    }
    let mut acknowledged = Vec::new();
    while let Some(sent) = sends.join_next().await {
        acknowledged.push(sent.unwrap());
    }
    acknowledged.sort_unstable();

    let total = i64::try_from(SENDERS * MESSAGES_PER_SENDER).unwrap();
    let seqs: Vec<i64> = acknowledged.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(seqs, (1..=total).collect::<Vec<_>>(), "unique and gap-free across both instances");
    for mut client in instances {
        assert_eq!(replay(&mut client, &owner, &room_id).await, acknowledged, "one stored order, as acknowledged");
    }
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retry_on_the_other_instance_returns_the_original() {
    let app = TestApp::start().await;
    let second = app.spawn_chat().await;
    let instances = [app.chat(), ChatServiceClient::new(second.channel())];
    let owner = app.user("Owner").await;
    let room_id = app.room(&owner, &[]).await;

    const MESSAGES: i64 = 10;
    for n in 1..=MESSAGES {
        // The same message (same client message id) reaches both instances at once, as a
        // client's retry after a lost answer would when the balancer picks another instance.
        let mut answers = JoinSet::new();
        for client in &instances {
            let (mut client, owner, room_id) = (client.clone(), owner.clone(), room_id.clone());
            answers.spawn(async move {
                let request =
                    pb::SendMessageRequest { room_id, text: format!("m{n}"), client_message_id: format!("retry-{n}") };
                client.send_message(as_user(request, &owner)).await.unwrap().into_inner().message.unwrap()
            });
        }
        let first = answers.join_next().await.unwrap().unwrap();
        let other = answers.join_next().await.unwrap().unwrap();
        assert_eq!((first.seq, &first.text), (other.seq, &other.text), "both answers are the one stored message");
        assert_eq!(first.seq, n, "no number was spent on the duplicate");
    }
    for mut client in instances {
        let stored = replay(&mut client, &owner, &room_id).await;
        assert_eq!(stored, (1..=MESSAGES).map(|n| (n, format!("m{n}"))).collect::<Vec<_>>());
    }
    second.stop().await;
}

/// Delivery is decided by the database: members acknowledging the same messages through both
/// instances at once mark each delivered exactly once, and either instance's history agrees.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledgements_through_either_instance_make_messages_delivered_once() {
    let app = TestApp::start().await;
    let second = app.spawn_chat().await;
    let instances = [app.chat(), ChatServiceClient::new(second.channel())];
    let (ana, bo, cy) = (app.user("Ana").await, app.user("Bo").await, app.user("Cy").await);
    let room_id = app.room(&ana, &[&bo, &cy]).await;
    for n in 1..=5 {
        app.say(&ana, &room_id, &format!("m{n}")).await;
    }
    // Ana's own acknowledgement, through the second instance, delivers nothing of hers.
    let request = pb::UpdateCursorRequest { room_id: room_id.clone(), received_seq: 5, read_seq: 5 };
    instances[1].clone().update_cursor(as_user(request, &ana)).await.unwrap();
    let statuses = |client: ChatServiceClient<Channel>| {
        let (ana, room_id) = (ana.clone(), room_id.clone());
        async move {
            let request = pb::ListMessagesRequest { room_id, before_seq: 0, page_size: 0 };
            let mut client = client;
            let history = client.list_messages(as_user(request, &ana)).await.unwrap().into_inner();
            history.messages.into_iter().map(|message| message.status).collect::<Vec<_>>()
        }
    };
    assert_eq!(statuses(instances[0].clone()).await, vec![pb::MessageStatus::Stored as i32; 5]);

    // Bo and Cy acknowledge overlapping ranges through different instances at the same time.
    let mut acks = JoinSet::new();
    for (member, client, received_seq) in [(&bo, &instances[0], 3), (&cy, &instances[1], 5)] {
        let (member, mut client, room_id) = (member.clone(), client.clone(), room_id.clone());
        acks.spawn(async move {
            let request = pb::UpdateCursorRequest { room_id, received_seq, read_seq: 0 };
            client.update_cursor(as_user(request, &member)).await.unwrap();
        });
    }
    while let Some(done) = acks.join_next().await {
        done.unwrap();
    }
    for client in instances {
        assert_eq!(statuses(client).await, vec![pb::MessageStatus::Delivered as i32; 5]);
    }
    second.stop().await;
}
