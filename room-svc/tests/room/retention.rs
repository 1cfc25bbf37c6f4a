//! Retention in room-svc: closed rooms (with members and bans) and audit rows are deleted
//! exactly when they are past their periods, counted in `xiaowo_retention_pruned_total`, while
//! requests keep being served during a prune of thousands of rows.

use std::time::Duration;

use crate::helpers::{START_MS, TestApp, User, as_admin, as_user, code};
use proto::room::v1 as pb;
use svc_kit::clock::Clock;
use svc_kit::retention::RetentionConfig;
use tonic::Code;

const CLOSED_ROOMS: Duration = Duration::from_secs(10 * 86_400);
const AUDIT_LOGS: Duration = Duration::from_secs(20 * 86_400);
/// Rooms created and closed at the start, so that a prune runs many batches.
const BULK_ROOMS: usize = 1000;

fn policy() -> RetentionConfig {
    RetentionConfig {
        closed_rooms: CLOSED_ROOMS,
        audit_logs: AUDIT_LOGS,
        interval: Duration::from_millis(50),
        batch: 25,
        ..RetentionConfig::keep_everything()
    }
}

/// `xiaowo_retention_pruned_total` for room-svc's `table`.
fn pruned(metrics: &str, table: &str) -> u64 {
    svc_kit::testing::pruned(metrics, "room", table)
}

/// Waits until a retention pass as of the clock's current time has finished; the metrics text
/// at that point.
async fn pass_done(app: &TestApp) -> String {
    svc_kit::testing::retention_pass_done(app.server.addr, "room", app.clock.now_ms()).await
}

async fn close(app: &TestApp, owner: &User, room_id: &str) {
    let request = pb::CloseRoomRequest { room_id: room_id.to_owned() };
    app.rooms().close_room(as_user(request, owner)).await.unwrap();
}

/// Audit rows written in `[start, end)`, through the admin API.
async fn audit_rows_between(app: &TestApp, start: i64, end: i64) -> usize {
    let mut count = 0;
    let mut page_token = String::new();
    loop {
        let request = pb::ListAuditLogsRequest {
            start_time: Some(proto::timestamp_from_ms(start)),
            end_time: Some(proto::timestamp_from_ms(end)),
            page_size: 500,
            page_token,
            ..Default::default()
        };
        let response = app.admin().list_audit_logs(as_admin(request)).await.unwrap().into_inner();
        count += response.audit_logs.len();
        if response.next_page_token.is_empty() {
            return count;
        }
        page_token = response.next_page_token;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_rooms_and_audit_rows_are_pruned_exactly_past_their_periods() {
    let app = TestApp::start_with_retention(|_| {}, policy()).await;
    let owner = app.user("owner").await;
    let guest = app.user("guest").await;
    let kicked = app.user("kicked").await;

    // At START_MS: a room with a member and a ban, and many more, all closed.
    let old = app.open_room(&owner, "old").await;
    app.join(&guest, &old.room_id, "").await.unwrap();
    app.join(&kicked, &old.room_id, "").await.unwrap();
    let kick = pb::KickMemberRequest { room_id: old.room_id.clone(), user_id: kicked.user_id.clone() };
    app.rooms().kick_member(as_user(kick, &owner)).await.unwrap();
    close(&app, &owner, &old.room_id).await;
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let (server, owner) = (app.server.channel(), owner.clone());
        tasks.spawn(async move {
            let mut rooms = proto::room::v1::room_service_client::RoomServiceClient::new(server);
            for index in (worker..BULK_ROOMS).step_by(4) {
                let create = pb::CreateRoomRequest { name: format!("bulk {index}"), ..Default::default() };
                let room = rooms.create_room(as_user(create, &owner)).await.unwrap().into_inner().room.unwrap();
                let close = pb::CloseRoomRequest { room_id: room.room_id };
                rooms.close_room(as_user(close, &owner)).await.unwrap();
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let old_audit_rows = audit_rows_between(&app, START_MS, START_MS + 1).await;
    // At least the create and close of each bulk room.
    assert!(old_audit_rows > 2 * BULK_ROOMS);
    let old_room_actions = app.audit_actions(&old.room_id).await;

    // One millisecond later: a room closed just inside the period at the next boundary.
    app.clock.advance(Duration::from_millis(1));
    let newer = app.open_room(&owner, "newer").await;
    close(&app, &owner, &newer.room_id).await;

    // Exactly one period after `old` closed: still kept.
    app.clock.advance(CLOSED_ROOMS - Duration::from_millis(1));
    let metrics = pass_done(&app).await;
    assert_eq!(pruned(&metrics, "rooms"), 0);
    assert_eq!(code(app.get(&owner, &old.room_id).await), Code::Ok);

    // One millisecond more: `old` and the bulk rooms go with their members and the ban, while
    // requests keep being answered; `newer` stays.
    let visitor = app.user("visitor").await;
    let lobby = app.open_room(&visitor, "lobby").await;
    app.clock.advance(Duration::from_millis(1));
    let mut served = 0;
    let metrics = loop {
        let request = pb::GetRoomRequest { room_id: lobby.room_id.clone() };
        app.rooms().get_room(as_user(request, &visitor)).await.unwrap();
        let join = app.join(&guest, &lobby.room_id, "").await.unwrap();
        assert!(join.member.is_some());
        served += 1;
        let metrics = app.metrics().await;
        if svc_kit::testing::last_retention_pass_ms(&metrics, "room").is_some_and(|done| done >= app.clock.now_ms()) {
            break metrics;
        }
    };
    assert!(served > 0);
    assert_eq!(pruned(&metrics, "rooms"), 1 + BULK_ROOMS as u64);
    assert_eq!(pruned(&metrics, "room_members"), 2 + BULK_ROOMS as u64);
    assert_eq!(pruned(&metrics, "room_bans"), 1);
    assert_eq!(pruned(&metrics, "audit_logs"), 0);
    assert_eq!(code(app.get(&visitor, &old.room_id).await), Code::NotFound);
    assert_eq!(code(app.get(&visitor, &newer.room_id).await), Code::Ok);
    assert_eq!(code(app.get(&visitor, &lobby.room_id).await), Code::Ok);
    // The audit trail of a deleted room outlives it until its own period.
    assert_eq!(app.audit_actions(&old.room_id).await, old_room_actions);

    // Exactly one audit period after the first rows: kept; one millisecond later: gone,
    // and only those. By then `newer` is past its period too.
    app.clock.advance(AUDIT_LOGS - CLOSED_ROOMS - Duration::from_millis(1));
    let metrics = pass_done(&app).await;
    assert_eq!(pruned(&metrics, "audit_logs"), 0);
    app.clock.advance(Duration::from_millis(1));
    let metrics = pass_done(&app).await;
    assert_eq!(pruned(&metrics, "audit_logs"), old_audit_rows as u64);
    assert_eq!(audit_rows_between(&app, START_MS, START_MS + 1).await, 0);
    assert_eq!(app.audit_actions(&newer.room_id).await, ["room.create", "room.close"]);
    assert!(!app.audit_actions(&lobby.room_id).await.is_empty());
    assert_eq!(pruned(&metrics, "rooms"), 2 + BULK_ROOMS as u64);
    assert_eq!(code(app.get(&visitor, &newer.room_id).await), Code::NotFound);
    // `lobby` went idle and was closed well within the period.
    assert_eq!(code(app.get(&visitor, &lobby.room_id).await), Code::Ok);
}
