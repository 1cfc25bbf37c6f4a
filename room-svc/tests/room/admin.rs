//! The operator's room RPCs end to end: every room listed whatever its visibility, any room
//! closed, and the audit log filtered by action and read newest first.

use std::time::Duration;

use crate::helpers::{TestApp, as_admin, as_user, code, next_change, violations};
use proto::room::v1 as pb;
use proto::room::v1::watch_room_events_response::Event;
use tonic::{Code, Request};

async fn list_all(app: &TestApp, status: pb::RoomStatus, page_size: i32) -> Vec<pb::Room> {
    let mut rooms = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::RoomAdminServiceListRoomsRequest { status: status.into(), page_size, page_token };
        let response = app.admin().list_rooms(as_admin(request)).await.unwrap().into_inner();
        rooms.extend(response.rooms);
        if response.next_page_token.is_empty() {
            return rooms;
        }
        page_token = response.next_page_token;
    }
}

fn names(rooms: &[pb::Room]) -> Vec<&str> {
    rooms.iter().map(|room| room.name.as_str()).collect()
}

#[tokio::test]
async fn the_operator_sees_every_room_and_closes_any() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;
    let second = Duration::from_secs(1);
    let public = app.open_room(&ana, "public").await;
    app.clock.advance(second);
    let hidden = app
        .create_room(
            &bo,
            pb::CreateRoomRequest {
                name: "hidden".to_owned(),
                visibility: pb::Visibility::Unlisted.into(),
                password: "a secret password".to_owned(),
                ..Default::default()
            },
        )
        .await;
    app.clock.advance(second);
    let closed = app.open_room(&ana, "closed").await;
    app.rooms().close_room(as_user(pb::CloseRoomRequest { room_id: closed.room_id.clone() }, &ana)).await.unwrap();
    app.clock.advance(second);
    app.join(&ana, &hidden.room_id, "a secret password").await.unwrap();

    // Every room, newest activity first, the same whether read in one page or one at a time.
    let all = list_all(&app, pb::RoomStatus::Unspecified, 0).await;
    assert_eq!(names(&all), ["hidden", "closed", "public"]);
    assert_eq!(list_all(&app, pb::RoomStatus::Unspecified, 1).await, all);
    assert_eq!(names(&list_all(&app, pb::RoomStatus::Active, 0).await), ["hidden", "public"]);
    assert_eq!(names(&list_all(&app, pb::RoomStatus::Closed, 0).await), ["closed"]);
    assert_eq!(all[0].member_count, 2);
    assert!(all[0].has_password);
    // The public list still shows only the public room.
    let listed = app.rooms().list_rooms(as_user(pb::ListRoomsRequest::default(), &ana)).await.unwrap().into_inner();
    assert_eq!(names(&listed.rooms), ["public"]);

    // Watchers (sync-svc, chat-svc) hear the close as from the owner, with its own reason.
    let mut events = app.internal().watch_room_events(pb::WatchRoomEventsRequest {}).await.unwrap().into_inner();
    events.message().await.unwrap().unwrap();
    let close = pb::RoomAdminServiceCloseRoomRequest { room_id: hidden.room_id.clone() };
    let room = app.admin().close_room(as_admin(close.clone())).await.unwrap().into_inner().room.unwrap();
    assert_eq!(room.status(), pb::RoomStatus::Closed);
    assert!(room.close_time.is_some());
    let event = next_change(&mut events).await;
    assert_eq!(event.room_id, hidden.room_id);
    assert_eq!(event.event, Some(Event::RoomClosed(pb::RoomClosed { reason: pb::CloseReason::ClosedByAdmin.into() })));

    // The room is closed for its members too, and the close is audited with no acting user.
    assert_eq!(app.get(&bo, &hidden.room_id).await.unwrap().room.unwrap().status(), pb::RoomStatus::Closed);
    assert_eq!(code(app.join(&ana, &hidden.room_id, "a secret password").await), Code::FailedPrecondition);
    let row = app.audit(&hidden.room_id).await.pop().unwrap();
    assert_eq!((row.action.as_str(), row.user_id.as_str()), ("room.close", ""));
    assert_eq!(row.detail, r#"{"reason":"closed_by_admin"}"#);
    assert_eq!(names(&list_all(&app, pb::RoomStatus::Active, 0).await), ["public"]);

    // Closing twice, an unknown room, a garbled id.
    assert_eq!(code(app.admin().close_room(as_admin(close)).await), Code::FailedPrecondition);
    let unknown = pb::RoomAdminServiceCloseRoomRequest { room_id: uuid::Uuid::new_v4().to_string() };
    assert_eq!(code(app.admin().close_room(as_admin(unknown)).await), Code::NotFound);
    let garbled = pb::RoomAdminServiceCloseRoomRequest { room_id: "not-a-room".to_owned() };
    assert_eq!(violations(&app.admin().close_room(as_admin(garbled)).await.unwrap_err()), ["room_id"]);
    assert_eq!(app.audit_actions(&public.room_id).await, ["room.create"]);

    // Bad pages and filters name their fields.
    let bad = pb::RoomAdminServiceListRoomsRequest { status: 7, page_size: 101, page_token: "x".to_owned() };
    assert_eq!(violations(&app.admin().list_rooms(as_admin(bad)).await.unwrap_err()), ["status"]);
    let bad = pb::RoomAdminServiceListRoomsRequest { status: 0, page_size: 101, page_token: "x".to_owned() };
    assert_eq!(violations(&app.admin().list_rooms(as_admin(bad)).await.unwrap_err()), ["page_size", "page_token"]);

    // Only the operator: no token, or a viewer's session, is refused before anything happens.
    let public_close = pb::RoomAdminServiceCloseRoomRequest { room_id: public.room_id.clone() };
    assert_eq!(code(app.admin().close_room(Request::new(public_close.clone())).await), Code::Unauthenticated);
    assert_eq!(code(app.admin().close_room(as_user(public_close, &ana)).await), Code::PermissionDenied);
    let list = pb::RoomAdminServiceListRoomsRequest::default();
    assert_eq!(code(app.admin().list_rooms(as_user(list, &ana)).await), Code::PermissionDenied);
    assert_eq!(app.get(&ana, &public.room_id).await.unwrap().room.unwrap().status(), pb::RoomStatus::Active);
}

#[tokio::test]
async fn the_audit_log_filters_by_action_and_reads_newest_first() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;
    let mut room_ids = Vec::new();
    for name in ["one", "two", "three"] {
        let room = app.open_room(&ana, name).await;
        app.join(&bo, &room.room_id, "").await.unwrap();
        room_ids.push(room.room_id);
    }

    let joins = pb::ListAuditLogsRequest { action: "member.join".to_owned(), ..Default::default() };
    let rows = app.admin().list_audit_logs(as_admin(joins)).await.unwrap().into_inner().audit_logs;
    assert!(rows.iter().all(|row| row.action == "member.join" && row.user_id == bo.user_id));
    assert_eq!(rows.iter().map(|row| row.room_id.as_str()).collect::<Vec<_>>(), room_ids);

    // Newest first, a page at a time: the same rows as oldest first, reversed.
    let oldest_first = pb::ListAuditLogsRequest::default();
    let forwards = app.admin().list_audit_logs(as_admin(oldest_first)).await.unwrap().into_inner().audit_logs;
    assert_eq!(forwards.len(), 6);
    let mut backwards = Vec::new();
    let mut page_token = String::new();
    loop {
        let request = pb::ListAuditLogsRequest { newest_first: true, page_size: 4, page_token, ..Default::default() };
        let response = app.admin().list_audit_logs(as_admin(request)).await.unwrap().into_inner();
        backwards.extend(response.audit_logs);
        if response.next_page_token.is_empty() {
            break;
        }
        page_token = response.next_page_token;
    }
    backwards.reverse();
    assert_eq!(backwards, forwards);

    // Combined with the room filter; an action the log never records is refused by name.
    let request = pb::ListAuditLogsRequest {
        room_id: room_ids[1].clone(),
        action: "room.create".to_owned(),
        ..Default::default()
    };
    let rows = app.admin().list_audit_logs(as_admin(request)).await.unwrap().into_inner().audit_logs;
    assert_eq!(
        rows.iter().map(|row| (row.action.as_str(), row.room_id.as_str())).collect::<Vec<_>>(),
        [("room.create", room_ids[1].as_str())]
    );
    let unknown = pb::ListAuditLogsRequest { action: "room.drop".to_owned(), page_size: -1, ..Default::default() };
    assert_eq!(violations(&app.admin().list_audit_logs(as_admin(unknown)).await.unwrap_err()), ["action", "page_size"]);
}
