//! `WatchRoomEvents` end to end: what sync-svc and chat-svc hear when rooms change.

use std::time::Duration;

use crate::helpers::{TestApp, as_user};
use proto::room::v1 as pb;
use proto::room::v1::watch_room_events_response::Event;
use tonic::Streaming;

async fn subscribe(app: &TestApp) -> Streaming<pb::WatchRoomEventsResponse> {
    let mut stream = app.internal().watch_room_events(pb::WatchRoomEventsRequest {}).await.unwrap().into_inner();
    // The first message says the subscription is live: nothing after it can be missed.
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(first.event, Some(Event::Heartbeat(pb::Heartbeat {})));
    assert!(first.event_time.is_some());
    stream
}

/// The next event that is not a heartbeat, as `(room_id, event)`.
async fn next_event(stream: &mut Streaming<pb::WatchRoomEventsResponse>) -> (String, Event) {
    let message = crate::helpers::next_change(stream).await;
    (message.room_id, message.event.expect("message with an event"))
}

#[tokio::test]
async fn membership_changes_kicks_and_closes_reach_every_watcher_in_order() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;
    let cy = app.user("Cy").await;
    let room = app.open_room(&ana, "watched").await;
    let room_id = room.room_id.clone();
    let mut first = subscribe(&app).await;
    let mut second = subscribe(&app).await;

    app.join(&bo, &room_id, "").await.unwrap();
    app.join(&cy, &room_id, "").await.unwrap();
    app.set_role(&ana, &room_id, &bo, pb::Role::Moderator).await.unwrap();
    let update = pb::UpdateRoomRequest {
        room_id: room_id.clone(),
        control_mode: Some(pb::ControlMode::Moderators.into()),
        ..Default::default()
    };
    app.rooms().update_room(as_user(update, &ana)).await.unwrap();
    let kick = pb::KickMemberRequest { room_id: room_id.clone(), user_id: cy.user_id.clone() };
    app.rooms().kick_member(as_user(kick, &bo)).await.unwrap();
    app.rooms().leave_room(as_user(pb::LeaveRoomRequest { room_id: room_id.clone() }, &bo)).await.unwrap();
    app.rooms().close_room(as_user(pb::CloseRoomRequest { room_id: room_id.clone() }, &ana)).await.unwrap();

    let expected = [
        Event::MemberJoined(pb::MemberJoined { user_id: bo.user_id.clone() }),
        Event::MemberJoined(pb::MemberJoined { user_id: cy.user_id.clone() }),
        Event::RoleChanged(pb::RoleChanged { user_id: bo.user_id.clone(), role: pb::Role::Moderator.into() }),
        Event::RoomUpdated(pb::RoomUpdated { control_mode: pb::ControlMode::Moderators.into() }),
        Event::MemberRemoved(pb::MemberRemoved {
            user_id: cy.user_id.clone(),
            reason: pb::RemovalReason::Kicked.into(),
        }),
        Event::MemberRemoved(pb::MemberRemoved { user_id: bo.user_id.clone(), reason: pb::RemovalReason::Left.into() }),
        Event::RoomClosed(pb::RoomClosed { reason: pb::CloseReason::ClosedByOwner.into() }),
    ];
    for stream in [&mut first, &mut second] {
        for event in &expected {
            assert_eq!(next_event(stream).await, (room_id.clone(), event.clone()));
        }
    }
}

#[tokio::test]
async fn an_owner_leaving_last_announces_the_hand_over_and_the_close() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;
    let room = app.open_room(&ana, "short-lived").await;
    app.join(&bo, &room.room_id, "").await.unwrap();
    let mut events = subscribe(&app).await;

    app.rooms().leave_room(as_user(pb::LeaveRoomRequest { room_id: room.room_id.clone() }, &ana)).await.unwrap();
    app.rooms().leave_room(as_user(pb::LeaveRoomRequest { room_id: room.room_id.clone() }, &bo)).await.unwrap();

    let left = pb::RemovalReason::Left.into();
    assert_eq!(
        next_event(&mut events).await.1,
        Event::MemberRemoved(pb::MemberRemoved { user_id: ana.user_id, reason: left })
    );
    assert_eq!(
        next_event(&mut events).await.1,
        Event::RoleChanged(pb::RoleChanged { user_id: bo.user_id.clone(), role: pb::Role::Owner.into() })
    );
    assert_eq!(
        next_event(&mut events).await.1,
        Event::MemberRemoved(pb::MemberRemoved { user_id: bo.user_id, reason: left })
    );
    assert_eq!(
        next_event(&mut events).await.1,
        Event::RoomClosed(pb::RoomClosed { reason: pb::CloseReason::Empty.into() })
    );
}

#[tokio::test]
async fn heartbeats_keep_coming_on_a_quiet_stream() {
    let app = TestApp::start_with(|config| config.heartbeat_interval = Duration::from_millis(50)).await;
    let mut events = subscribe(&app).await;
    for _ in 0..3 {
        let message = tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap().unwrap();
        assert_eq!(message.event, Some(Event::Heartbeat(pb::Heartbeat {})));
        assert!(message.room_id.is_empty());
    }
}
