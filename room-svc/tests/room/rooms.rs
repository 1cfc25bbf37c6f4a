//! room-svc end to end: real session-svc and room-svc on a loopback port over fresh SQLite files.

use std::time::Duration;

use crate::helpers::{START_MS, TestApp, User, as_admin, as_user, code, metric, next_change, violations};
use proto::room::v1 as pb;
use proto::session::v1 as session_pb;
use proto::session::v1::session_service_client::SessionServiceClient;
use tonic::{Code, Request};

fn minutes(count: u64) -> Duration {
    Duration::from_secs(60 * count)
}

#[tokio::test]
async fn create_get_and_list_with_pagination_and_ordering() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;

    let mut public_ids = Vec::new();
    for n in 0..5 {
        public_ids.push(app.open_room(&ana, &format!("  room {n}  ")).await.room_id);
        app.clock.advance(Duration::from_secs(1));
    }
    let unlisted = app
        .create_room(
            &ana,
            pb::CreateRoomRequest {
                name: "hidden".to_owned(),
                visibility: pb::Visibility::Unlisted.into(),
                control_mode: pb::ControlMode::Owner.into(),
                ..Default::default()
            },
        )
        .await;
    app.join(&bo, &public_ids[1], "").await.unwrap();

    // Newest activity first: Bo's join made room 1 the most recent.
    let mut listed = Vec::new();
    let mut page_token = String::new();
    let mut pages = 0;
    loop {
        let request = pb::ListRoomsRequest { page_size: 2, page_token: page_token.clone() };
        let response = app.rooms().list_rooms(as_user(request, &bo)).await.unwrap().into_inner();
        assert!(response.rooms.len() <= 2);
        listed.extend(response.rooms);
        pages += 1;
        if response.next_page_token.is_empty() {
            break;
        }
        page_token = response.next_page_token;
    }
    assert_eq!(pages, 3);
    let order: Vec<&str> = listed.iter().map(|room| room.room_id.as_str()).collect();
    let expected = [&public_ids[1], &public_ids[4], &public_ids[3], &public_ids[2], &public_ids[0]];
    assert_eq!(order, expected.map(String::as_str));
    assert_eq!(listed[0].member_count, 2);
    assert_eq!(listed[1].member_count, 1);
    assert_eq!(listed[4].name, "room 0", "names are trimmed");

    let got = app.get(&bo, &unlisted.room_id).await.unwrap();
    let room = got.room.unwrap();
    assert_eq!(got.role, pb::Role::Unspecified as i32);
    assert_eq!(room.visibility, pb::Visibility::Unlisted as i32);
    assert_eq!(room.control_mode, pb::ControlMode::Owner as i32);
    assert_eq!(room.status, pb::RoomStatus::Active as i32);
    assert_eq!(room.owner_id, ana.user_id);
    assert!(!room.has_password);
    assert_eq!(app.get(&ana, &unlisted.room_id).await.unwrap().role, pb::Role::Owner as i32);

    let mine = app
        .rooms()
        .list_my_rooms(as_user(pb::ListMyRoomsRequest { page_size: 10, page_token: String::new() }, &bo))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(mine.rooms.iter().map(|room| room.room_id.as_str()).collect::<Vec<_>>(), [public_ids[1].as_str()]);
    assert!(mine.next_page_token.is_empty());

    // Reported activity reorders the list; a closed room leaves it.
    app.clock.advance(Duration::from_secs(1));
    app.internal().record_activity(pb::RecordActivityRequest { room_id: public_ids[0].clone() }).await.unwrap();
    app.rooms().close_room(as_user(pb::CloseRoomRequest { room_id: public_ids[4].clone() }, &ana)).await.unwrap();
    let request = pb::ListRoomsRequest { page_size: 0, page_token: String::new() };
    let listed = app.rooms().list_rooms(as_user(request, &bo)).await.unwrap().into_inner().rooms;
    let order: Vec<&str> = listed.iter().map(|room| room.room_id.as_str()).collect();
    assert_eq!(order, [&public_ids[0], &public_ids[1], &public_ids[3], &public_ids[2]].map(String::as_str));

    let missing = uuid::Uuid::new_v4().to_string();
    assert_eq!(code(app.get(&bo, &missing).await), Code::NotFound);
    assert_eq!(code(app.join(&bo, &missing, "").await), Code::NotFound);
    let unknown_access =
        app.internal().check_access(pb::CheckAccessRequest { room_id: missing, user_id: bo.user_id.clone() }).await;
    assert_eq!(code(unknown_access), Code::NotFound);
}

#[tokio::test]
async fn every_validation_failure_names_its_field() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let create = |request: pb::CreateRoomRequest| {
        let mut client = app.rooms();
        let request = as_user(request, &ana);
        async move { client.create_room(request).await.unwrap_err() }
    };
    let named = |name: &str| pb::CreateRoomRequest { name: name.to_owned(), ..Default::default() };

    assert_eq!(violations(&create(named("   ")).await), ["name"]);
    assert_eq!(violations(&create(named(&"x".repeat(65))).await), ["name"]);
    assert_eq!(violations(&create(named("tab\tname")).await), ["name"]);
    assert_eq!(violations(&create(named("bidi\u{202E}name")).await), ["name"]);
    let long_description = pb::CreateRoomRequest { description: "d".repeat(501), ..named("ok") };
    assert_eq!(violations(&create(long_description).await), ["description"]);
    let short_password = pb::CreateRoomRequest { password: "1234567".to_owned(), ..named("ok") };
    assert_eq!(violations(&create(short_password).await), ["password"]);
    let long_password = pb::CreateRoomRequest { password: "p".repeat(73), ..named("ok") };
    assert_eq!(violations(&create(long_password).await), ["password"]);
    let bad_enums = pb::CreateRoomRequest { visibility: 9, control_mode: 9, ..named("ok") };
    assert_eq!(violations(&create(bad_enums).await), ["control_mode", "visibility"]);
    let everything_wrong = pb::CreateRoomRequest {
        name: String::new(),
        description: "\u{0}".to_owned(),
        password: "x".to_owned(),
        ..Default::default()
    };
    assert_eq!(violations(&create(everything_wrong).await), ["description", "name", "password"]);
    // 64 characters of three bytes each is still a valid name: the limit counts characters.
    app.open_room(&ana, &"房".repeat(64)).await;

    let room = app.open_room(&ana, "valid").await;
    let status = app.get(&ana, "not-a-uuid").await.unwrap_err();
    assert_eq!(violations(&status), ["room_id"]);
    let status = app
        .rooms()
        .list_rooms(as_user(pb::ListRoomsRequest { page_size: 101, page_token: String::new() }, &ana))
        .await
        .unwrap_err();
    assert_eq!(violations(&status), ["page_size"]);
    let status = app
        .rooms()
        .list_rooms(as_user(pb::ListRoomsRequest { page_size: 5, page_token: "garbage".to_owned() }, &ana))
        .await
        .unwrap_err();
    assert_eq!(violations(&status), ["page_token"]);

    let update = |request: pb::UpdateRoomRequest| {
        let mut client = app.rooms();
        let request = as_user(request, &ana);
        async move { client.update_room(request).await.unwrap_err() }
    };
    let base = pb::UpdateRoomRequest { room_id: room.room_id.clone(), ..Default::default() };
    let both = pb::UpdateRoomRequest { password: Some("long enough".to_owned()), clear_password: true, ..base.clone() };
    assert_eq!(violations(&update(both).await), ["clear_password"]);
    assert_eq!(
        violations(&update(pb::UpdateRoomRequest { name: Some(String::new()), ..base.clone() }).await),
        ["name"]
    );
    assert_eq!(
        violations(&update(pb::UpdateRoomRequest { visibility: Some(0), control_mode: Some(7), ..base.clone() }).await),
        ["control_mode", "visibility"]
    );
    assert_eq!(
        violations(&update(pb::UpdateRoomRequest { password: Some("p".repeat(73)), ..base.clone() }).await),
        ["password"]
    );

    let bo = app.user("Bo").await;
    let status = app.set_role(&ana, &room.room_id, &bo, pb::Role::Unspecified).await.unwrap_err();
    assert_eq!(violations(&status), ["role"]);
    let status = app.set_role(&ana, &room.room_id, &bo, pb::Role::Owner).await.unwrap_err();
    assert_eq!(violations(&status), ["role"]);
    let status = app
        .rooms()
        .kick_member(as_user(pb::KickMemberRequest { room_id: "x".to_owned(), user_id: "y".to_owned() }, &ana))
        .await
        .unwrap_err();
    assert_eq!(violations(&status), ["room_id", "user_id"]);
    let status = app
        .internal()
        .check_access(pb::CheckAccessRequest { room_id: room.room_id.clone(), user_id: String::new() })
        .await;
    assert_eq!(violations(&status.unwrap_err()), ["user_id"]);
    let status = app
        .admin()
        .list_audit_logs(as_admin(pb::ListAuditLogsRequest { page_size: 501, ..Default::default() }))
        .await
        .unwrap_err();
    assert_eq!(violations(&status), ["page_size"]);

    let anonymous = app.rooms().create_room(Request::new(named("nobody"))).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let forged = as_user(named("forged"), &User { token: "0".repeat(64), user_id: String::new() });
    assert_eq!(app.rooms().create_room(forged).await.unwrap_err().code(), Code::Unauthenticated);
    // None of the refused requests left anything behind.
    assert_eq!(app.audit_actions(&room.room_id).await, ["room.create"]);
}

#[tokio::test]
async fn password_rooms_check_bytes_exactly() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;
    let password = format!("{}{}", "密".repeat(20), "a".repeat(12)); // 72 bytes
    assert_eq!(password.len(), 72);
    let room = app
        .create_room(
            &ana,
            pb::CreateRoomRequest { name: "locked".to_owned(), password: password.clone(), ..Default::default() },
        )
        .await;
    assert!(room.has_password);

    assert_eq!(code(app.join(&bo, &room.room_id, "").await), Code::PermissionDenied);
    assert_eq!(code(app.join(&bo, &room.room_id, "wrong password").await), Code::PermissionDenied);
    // One byte more than bcrypt reads: refused, never truncated to the real password.
    let status = app.join(&bo, &room.room_id, &format!("{password}x")).await.unwrap_err();
    assert_eq!(violations(&status), ["password"]);
    let joined = app.join(&bo, &room.room_id, &password).await.unwrap();
    assert_eq!(joined.member.unwrap().role, pb::Role::Member as i32);

    // Changing and clearing the password.
    let update = pb::UpdateRoomRequest {
        room_id: room.room_id.clone(),
        password: Some("new secret".to_owned()),
        ..Default::default()
    };
    app.rooms().update_room(as_user(update, &ana)).await.unwrap();
    let cy = app.user("Cy").await;
    assert_eq!(code(app.join(&cy, &room.room_id, &password).await), Code::PermissionDenied);
    app.join(&cy, &room.room_id, "new secret").await.unwrap();
    let clear = pb::UpdateRoomRequest { room_id: room.room_id.clone(), clear_password: true, ..Default::default() };
    let cleared = app.rooms().update_room(as_user(clear, &ana)).await.unwrap().into_inner().room.unwrap();
    assert!(!cleared.has_password);
    let dee = app.user("Dee").await;
    app.join(&dee, &room.room_id, "").await.unwrap();

    let audit = app.audit(&room.room_id).await;
    let updates: Vec<&str> =
        audit.iter().filter(|row| row.action == "room.update").map(|row| row.detail.as_str()).collect();
    assert_eq!(updates, [r#"{"password":"set"}"#, r#"{"password":"cleared"}"#]);
    assert!(audit.iter().all(|row| !row.detail.contains("secret") && !row.detail.contains(&password)));
}

#[tokio::test]
async fn wrong_passwords_are_limited_per_caller_and_per_address_but_never_for_members() {
    let app = TestApp::start_with(|config| {
        config.password_attempts_per_caller = 3;
        config.password_attempts_per_address = 5;
    })
    .await;
    let owner = app.user("Owner").await;
    let member = app.user("Member").await;
    let room = app
        .create_room(
            &owner,
            pb::CreateRoomRequest {
                name: "vault".to_owned(),
                password: "correct horse".to_owned(),
                ..Default::default()
            },
        )
        .await;
    app.join_from(&member, "198.51.100.9", &room.room_id, "correct horse").await.unwrap();

    // One caller: three wrong guesses, then even the right password is refused for now.
    let attacker = app.user("Mallory").await;
    let mallory_address = "203.0.113.66";
    for _ in 0..3 {
        let refused = app.join_from(&attacker, mallory_address, &room.room_id, "guess guess").await;
        assert_eq!(code(refused), Code::PermissionDenied);
    }
    let refused = app.join_from(&attacker, mallory_address, &room.room_id, "correct horse").await;
    assert_eq!(code(refused), Code::ResourceExhausted);

    // A new session from the same address gets the address's last two guesses, then it is
    // refused too: starting sessions does not buy more guesses.
    let second = app.user("Mallory again").await;
    for _ in 0..2 {
        let refused = app.join_from(&second, mallory_address, &room.room_id, "guess guess").await;
        assert_eq!(code(refused), Code::PermissionDenied);
    }
    let refused = app.join_from(&second, mallory_address, &room.room_id, "guess guess").await;
    let status = refused.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let retry = tonic_types::StatusExt::get_details_retry_info(&status).expect("a retry delay");
    assert!(retry.retry_delay.is_some_and(|delay| delay >= Duration::from_secs(1)), "{retry:?}");

    // A friend given the password, from elsewhere, gets in at once.
    let friend = app.user("Friend").await;
    app.join_from(&friend, "198.51.100.10", &room.room_id, "correct horse").await.unwrap();

    // Members are never locked out: rejoining needs no password and counts against nothing.
    for _ in 0..3 {
        let again = app.join_from(&member, mallory_address, &room.room_id, "").await.unwrap();
        assert_eq!(again.member.unwrap().user_id, member.user_id);
    }
    let access = app.access(&room.room_id, &member).await;
    assert_eq!(access.role, pb::Role::Member as i32);

    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "xiaowo_room_wrong_password_total"), 5.0);
    assert_eq!(metric(&metrics, "xiaowo_flood_limited_total"), 2.0);
    // Every wrong guess left an audit row naming the guesser, and the ones that used up a
    // caller's or the address's attempts say so; limited attempts (no guess checked) left none.
    let audit = app.audit(&room.room_id).await;
    let rows: Vec<(&str, &str, bool)> = audit
        .iter()
        .map(|row| (row.action.as_str(), row.user_id.as_str(), row.detail.contains("\"limit_reached\":true")))
        .collect();
    let (owner_id, member_id, friend_id) = (owner.user_id.as_str(), member.user_id.as_str(), friend.user_id.as_str());
    let (mallory, again) = (attacker.user_id.as_str(), second.user_id.as_str());
    assert_eq!(
        rows,
        [
            ("room.create", owner_id, false),
            ("member.join", member_id, false),
            ("member.join_refused", mallory, false),
            ("member.join_refused", mallory, false),
            ("member.join_refused", mallory, true),
            ("member.join_refused", again, false),
            ("member.join_refused", again, true),
            ("member.join", friend_id, false),
        ]
    );
}

/// The outside walk's finding: after five sessions sent 5–6 wrong passwords each, a newcomer
/// with the right password was refused. The room's own limit now holds back and refuses only
/// wrong answers; the right password always gets in.
#[tokio::test]
async fn a_room_being_guessed_at_still_lets_in_whoever_has_the_password() {
    let app = TestApp::start_with(|config| config.password_attempts_per_room = 5).await;
    let owner = app.user("Owner").await;
    let room = app
        .create_room(
            &owner,
            pb::CreateRoomRequest {
                name: "vault".to_owned(),
                password: "correct horse".to_owned(),
                ..Default::default()
            },
        )
        .await;
    // Five guessers, each from its own address, within their own limits: the room's five
    // wrong answers go, then wrong answers are refused as a flood.
    let mut outcomes = Vec::new();
    for index in 0..5 {
        let guesser = app.user(&format!("Guesser {index}")).await;
        for _ in 0..2 {
            let answer = app.join_from(&guesser, &format!("203.0.113.{index}"), &room.room_id, "guess guess").await;
            outcomes.push(code(answer));
        }
    }
    let denied = outcomes.iter().filter(|outcome| **outcome == Code::PermissionDenied).count();
    let exhausted = outcomes.iter().filter(|outcome| **outcome == Code::ResourceExhausted).count();
    assert_eq!((denied, exhausted), (5, 5), "{outcomes:?}");

    // The friend with the password gets in while the room is guarded, first try.
    let friend = app.user("Friend").await;
    let joined = app.join_from(&friend, "198.51.100.10", &room.room_id, "correct horse").await.unwrap();
    assert_eq!(joined.member.unwrap().user_id, friend.user_id);
    // And a wrong answer from a fresh session and address is still refused.
    let late = app.user("Late guesser").await;
    let refused = app.join_from(&late, "203.0.113.99", &room.room_id, "guess guess").await;
    assert_eq!(code(refused), Code::ResourceExhausted);
}

#[tokio::test]
async fn creating_rooms_is_limited_per_session_per_address_and_open_rooms_per_owner() {
    let app = TestApp::start_with(|config| {
        config.creates_per_caller = 3;
        config.creates_per_address = 5;
        config.max_open_per_owner = 2;
    })
    .await;
    // Open rooms per owner: two, then refused until one closes.
    let ana = app.user("Ana").await;
    let first = app.create_from(&ana, "198.51.100.1", "one").await.unwrap();
    app.create_from(&ana, "198.51.100.1", "two").await.unwrap();
    let status = app.create_from(&ana, "198.51.100.1", "three").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let retry = tonic_types::StatusExt::get_details_retry_info(&status).expect("a retry delay");
    // The idle janitor closes the least active room after the idle timeout (1 h by default).
    assert!(retry.retry_delay.is_some_and(|delay| delay > Duration::from_secs(60)), "{retry:?}");
    app.rooms().close_room(as_user(pb::CloseRoomRequest { room_id: first.room_id.clone() }, &ana)).await.unwrap();
    // Per session: the third create of the hour is the last (the refused one took nothing).
    app.create_from(&ana, "198.51.100.1", "three").await.unwrap();
    let status = app.create_from(&ana, "198.51.100.1", "four").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(tonic_types::StatusExt::get_details_retry_info(&status).is_some());

    // Per address: new sessions from the same address share its five.
    let bo = app.user("Bo").await;
    app.create_from(&bo, "198.51.100.1", "five").await.unwrap();
    let cy = app.user("Cy").await;
    app.create_from(&cy, "198.51.100.1", "six").await.unwrap();
    let status = app.create_from(&cy, "198.51.100.1", "seven").await.unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    // Someone elsewhere is not affected.
    let dee = app.user("Dee").await;
    app.create_from(&dee, "198.51.100.2", "elsewhere").await.unwrap();

    // Nothing refused was written: three rooms listed for the owners above, plus Dee's.
    let request = pb::ListRoomsRequest { page_size: 100, page_token: String::new() };
    let public = app.rooms().list_rooms(as_user(request, &dee)).await.unwrap().into_inner().rooms;
    let mut names: Vec<_> = public.iter().map(|room| room.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["elsewhere", "five", "six", "three", "two"]);
}

#[tokio::test]
async fn joining_twice_is_idempotent_and_full_rooms_refuse() {
    let app = TestApp::start_with(|config| config.max_members = 2).await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;
    let room = app.open_room(&ana, "small").await;

    let first = app.join(&bo, &room.room_id, "").await.unwrap();
    app.clock.advance(minutes(1));
    let second = app.join(&bo, &room.room_id, "").await.unwrap();
    assert_eq!(first.member, second.member);
    assert_eq!(second.room.unwrap().member_count, 2);
    // The owner "joining" their own room keeps them owner.
    assert_eq!(app.join(&ana, &room.room_id, "").await.unwrap().member.unwrap().role, pb::Role::Owner as i32);
    assert_eq!(app.audit_actions(&room.room_id).await, ["room.create", "member.join"]);

    let cy = app.user("Cy").await;
    assert_eq!(code(app.join(&cy, &room.room_id, "").await), Code::ResourceExhausted);
}

/// The permission matrix through the RPCs that enforce it: every action, by every role, under
/// every control mode, each in a fresh room.
#[tokio::test]
async fn permission_matrix_over_the_rpcs() {
    #[derive(Debug, Clone, Copy)]
    enum Act {
        ListMembers,
        Rename,
        ChangeControlMode,
        Promote,
        KickMember,
        KickModerator,
        Transfer,
        Close,
        Control,
        Moderate,
    }
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Who {
        Owner,
        Moderator,
        Member,
        Outsider,
    }
    let app = TestApp::start().await;
    let owner = app.user("Owner").await;
    let moderator = app.user("Moderator").await;
    let member = app.user("Member").await;
    let target = app.user("Target").await;
    let outsider = app.user("Outsider").await;
    let modes = [pb::ControlMode::Everyone, pb::ControlMode::Moderators, pb::ControlMode::Owner];
    let acts = [
        Act::ListMembers,
        Act::Rename,
        Act::ChangeControlMode,
        Act::Promote,
        Act::KickMember,
        Act::KickModerator,
        Act::Transfer,
        Act::Close,
        Act::Control,
        Act::Moderate,
    ];
    let everyone = [Who::Owner, Who::Moderator, Who::Member, Who::Outsider];

    // Who may, written out: only playback control depends on the mode.
    let allowed = |act: Act, mode: pb::ControlMode| -> &'static [Who] {
        match act {
            Act::ListMembers => &[Who::Owner, Who::Moderator, Who::Member],
            Act::Rename | Act::KickMember | Act::Moderate => &[Who::Owner, Who::Moderator],
            Act::ChangeControlMode | Act::Promote | Act::KickModerator | Act::Transfer | Act::Close => &[Who::Owner],
            Act::Control => match mode {
                pb::ControlMode::Everyone => &[Who::Owner, Who::Moderator, Who::Member],
                pb::ControlMode::Moderators => &[Who::Owner, Who::Moderator],
                _ => &[Who::Owner],
            },
        }
    };

    let mut cases = 0;
    for mode in modes {
        for act in acts {
            for who in everyone {
                let room = app
                    .create_room(
                        &owner,
                        pb::CreateRoomRequest {
                            name: format!("{act:?}"),
                            control_mode: mode.into(),
                            ..Default::default()
                        },
                    )
                    .await;
                let room_id = room.room_id.clone();
                for user in [&moderator, &member, &target] {
                    app.join(user, &room_id, "").await.unwrap();
                }
                app.set_role(&owner, &room_id, &moderator, pb::Role::Moderator).await.unwrap();
                let actor = match who {
                    Who::Owner => &owner,
                    Who::Moderator => &moderator,
                    Who::Member => &member,
                    Who::Outsider => &outsider,
                };
                let mut rooms = app.rooms();
                let request_room = room_id.clone();
                let outcome = match act {
                    Act::ListMembers => {
                        code(rooms.list_members(as_user(pb::ListMembersRequest { room_id: request_room }, actor)).await)
                    }
                    Act::Rename => code(
                        rooms
                            .update_room(as_user(
                                pb::UpdateRoomRequest {
                                    room_id: request_room,
                                    name: Some("renamed".to_owned()),
                                    ..Default::default()
                                },
                                actor,
                            ))
                            .await,
                    ),
                    Act::ChangeControlMode => {
                        let other = if mode == pb::ControlMode::Owner {
                            pb::ControlMode::Everyone
                        } else {
                            pb::ControlMode::Owner
                        };
                        code(
                            rooms
                                .update_room(as_user(
                                    pb::UpdateRoomRequest {
                                        room_id: request_room,
                                        control_mode: Some(other.into()),
                                        ..Default::default()
                                    },
                                    actor,
                                ))
                                .await,
                        )
                    }
                    Act::Promote => code(app.set_role(actor, &request_room, &target, pb::Role::Moderator).await),
                    Act::KickMember | Act::KickModerator => {
                        let kicked = if matches!(act, Act::KickMember) { &target } else { &moderator };
                        let request = pb::KickMemberRequest { room_id: request_room, user_id: kicked.user_id.clone() };
                        code(rooms.kick_member(as_user(request, actor)).await)
                    }
                    Act::Transfer => {
                        let request =
                            pb::TransferOwnershipRequest { room_id: request_room, user_id: target.user_id.clone() };
                        code(rooms.transfer_ownership(as_user(request, actor)).await)
                    }
                    Act::Close => {
                        code(rooms.close_room(as_user(pb::CloseRoomRequest { room_id: request_room }, actor)).await)
                    }
                    Act::Control => {
                        if app.access(&room_id, actor).await.can_control {
                            Code::Ok
                        } else {
                            Code::PermissionDenied
                        }
                    }
                    Act::Moderate => {
                        if app.access(&room_id, actor).await.can_moderate {
                            Code::Ok
                        } else {
                            Code::PermissionDenied
                        }
                    }
                };
                let expected = if allowed(act, mode).contains(&who) { Code::Ok } else { Code::PermissionDenied };
                assert_eq!(outcome, expected, "{act:?} by {who:?} under {mode:?}");
                // A refused action changed nothing and wrote no audit row.
                if expected != Code::Ok {
                    let actions = app.audit_actions(&room_id).await;
                    assert_eq!(actions.last().map(String::as_str), Some("member.set_role"), "{act:?} by {who:?}");
                }
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 3 * 10 * 4);
    let denied = metric(&app.metrics().await, "xiaowo_permission_denied_total");
    assert!(denied >= 60.0, "refusals are counted: {denied}");
}

#[tokio::test]
async fn kicked_members_stay_out_for_the_ban_window() {
    let app = TestApp::start_with(|config| config.kick_ban = minutes(10)).await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;
    let room = app.open_room(&ana, "strict").await;
    app.join(&bo, &room.room_id, "").await.unwrap();

    let kick = pb::KickMemberRequest { room_id: room.room_id.clone(), user_id: bo.user_id.clone() };
    app.rooms().kick_member(as_user(kick.clone(), &ana)).await.unwrap();
    assert_eq!(app.access(&room.room_id, &bo).await.role, pb::Role::Unspecified as i32);
    // Kicking someone who is no longer in the room.
    assert_eq!(code(app.rooms().kick_member(as_user(kick, &ana)).await), Code::NotFound);

    assert_eq!(code(app.join(&bo, &room.room_id, "").await), Code::PermissionDenied);
    app.clock.advance(minutes(10) - Duration::from_millis(1));
    assert_eq!(code(app.join(&bo, &room.room_id, "").await), Code::PermissionDenied);
    app.clock.advance(Duration::from_millis(1));
    let rejoined = app.join(&bo, &room.room_id, "").await.unwrap();
    assert_eq!(rejoined.member.unwrap().role, pb::Role::Member as i32);

    let kick_row = app.audit(&room.room_id).await.into_iter().find(|row| row.action == "member.kick").unwrap();
    assert_eq!(kick_row.user_id, ana.user_id);
    assert_eq!(kick_row.target_user_id, bo.user_id);
}

#[tokio::test]
async fn an_owner_who_leaves_hands_over_and_the_last_one_out_closes() {
    let app = TestApp::start().await;
    let owner = app.user("Owner").await;
    let early_member = app.user("Early").await;
    let late_moderator = app.user("Late").await;
    let last_member = app.user("Last").await;
    let room = app.open_room(&owner, "relay").await;
    let room_id = room.room_id.clone();
    for user in [&early_member, &late_moderator, &last_member] {
        app.clock.advance(Duration::from_secs(1));
        app.join(user, &room_id, "").await.unwrap();
    }
    app.set_role(&owner, &room_id, &late_moderator, pb::Role::Moderator).await.unwrap();
    let leave = |user: &User| {
        let mut client = app.rooms();
        let request = as_user(pb::LeaveRoomRequest { room_id: room_id.clone() }, user);
        async move { client.leave_room(request).await }
    };

    // A moderator outranks a member who has been there longer.
    leave(&owner).await.unwrap();
    let state = app.get(&late_moderator, &room_id).await.unwrap();
    assert_eq!(state.role, pb::Role::Owner as i32);
    assert_eq!(state.room.unwrap().owner_id, late_moderator.user_id);
    assert_eq!(code(leave(&owner).await), Code::FailedPrecondition, "not a member any more");

    // No moderator left: the longest-standing member.
    leave(&late_moderator).await.unwrap();
    assert_eq!(app.get(&early_member, &room_id).await.unwrap().role, pb::Role::Owner as i32);
    leave(&last_member).await.unwrap();
    leave(&early_member).await.unwrap();

    let closed = app.get(&owner, &room_id).await.unwrap().room.unwrap();
    assert_eq!(closed.status, pb::RoomStatus::Closed as i32);
    assert_eq!(closed.member_count, 0);
    assert!(closed.close_time.is_some());
    assert_eq!(code(app.join(&owner, &room_id, "").await), Code::FailedPrecondition);
    let access = app.access(&room_id, &early_member).await;
    assert_eq!(access.status, pb::RoomStatus::Closed as i32);
    assert!(!access.can_control && !access.can_moderate);

    let audit = app.audit(&room_id).await;
    let transfers: Vec<(&str, &str)> = audit
        .iter()
        .filter(|row| row.action == "room.transfer_ownership")
        .map(|row| (row.user_id.as_str(), row.target_user_id.as_str()))
        .collect();
    assert_eq!(
        transfers,
        [
            (owner.user_id.as_str(), late_moderator.user_id.as_str()),
            (late_moderator.user_id.as_str(), early_member.user_id.as_str())
        ]
    );
    assert_eq!(audit.last().unwrap().action, "room.close");
    assert_eq!(audit.last().unwrap().detail, r#"{"reason":"empty"}"#);
}

#[tokio::test]
async fn transfer_makes_the_old_owner_a_moderator() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;
    let room = app.open_room(&ana, "handover").await;
    app.join(&bo, &room.room_id, "").await.unwrap();

    let to_self = pb::TransferOwnershipRequest { room_id: room.room_id.clone(), user_id: ana.user_id.clone() };
    assert_eq!(code(app.rooms().transfer_ownership(as_user(to_self, &ana)).await), Code::FailedPrecondition);
    let stranger = app.user("Stranger").await;
    let to_stranger = pb::TransferOwnershipRequest { room_id: room.room_id.clone(), user_id: stranger.user_id.clone() };
    assert_eq!(code(app.rooms().transfer_ownership(as_user(to_stranger, &ana)).await), Code::NotFound);

    let request = pb::TransferOwnershipRequest { room_id: room.room_id.clone(), user_id: bo.user_id.clone() };
    let room_after = app.rooms().transfer_ownership(as_user(request, &ana)).await.unwrap().into_inner().room.unwrap();
    assert_eq!(room_after.owner_id, bo.user_id);
    assert_eq!(app.access(&room.room_id, &ana).await.role, pb::Role::Moderator as i32);
    assert_eq!(app.access(&room.room_id, &bo).await.role, pb::Role::Owner as i32);
    // The owner's role moves only through a transfer.
    assert_eq!(code(app.set_role(&bo, &room.room_id, &bo, pb::Role::Member).await), Code::FailedPrecondition);
}

#[tokio::test]
async fn idle_rooms_are_closed_by_the_janitor_on_the_injected_clock() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let idle = app.open_room(&ana, "idle").await;
    let busy = app.open_room(&ana, "busy").await;
    let mut events = app.internal().watch_room_events(pb::WatchRoomEventsRequest {}).await.unwrap().into_inner();
    assert!(matches!(
        events.message().await.unwrap().unwrap().event,
        Some(pb::watch_room_events_response::Event::Heartbeat(_))
    ));

    app.clock.advance(minutes(59));
    app.internal().record_activity(pb::RecordActivityRequest { room_id: busy.room_id.clone() }).await.unwrap();
    app.clock.advance(minutes(2));

    // The janitor runs every 50 ms; give it a bounded while.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let status = app.get(&ana, &idle.room_id).await.unwrap().room.unwrap().status;
        if status == pb::RoomStatus::Closed as i32 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "idle room not closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(app.get(&ana, &busy.room_id).await.unwrap().room.unwrap().status, pb::RoomStatus::Active as i32);

    let event = next_change(&mut events).await;
    assert_eq!(event.room_id, idle.room_id);
    assert_eq!(
        event.event,
        Some(pb::watch_room_events_response::Event::RoomClosed(pb::RoomClosed {
            reason: pb::CloseReason::Idle.into()
        }))
    );
    let close = app.audit(&idle.room_id).await.pop().unwrap();
    assert_eq!((close.action.as_str(), close.user_id.as_str()), ("room.close", ""));
    assert!(close.detail.contains(r#""reason":"idle""#));
    assert_eq!(
        code(app.internal().record_activity(pb::RecordActivityRequest { room_id: idle.room_id.clone() }).await),
        Code::FailedPrecondition
    );
    // The gauge is recounted right after the janitor's pass.
    while metric(&app.metrics().await, "xiaowo_rooms_active") != 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "active rooms gauge not updated");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The room that reported activity goes the same way once it, too, is idle long enough.
    app.clock.advance(minutes(60));
    let event = next_change(&mut events).await;
    assert_eq!(event.room_id, busy.room_id);
}

#[tokio::test]
async fn every_mutation_is_audited_and_refusals_are_not() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo").await;
    let cy = app.user("Cy").await;
    let room = app.open_room(&ana, "audited").await;
    let room_id = room.room_id.clone();
    app.join(&bo, &room_id, "").await.unwrap();
    app.join(&cy, &room_id, "").await.unwrap();
    let rename = pb::UpdateRoomRequest {
        room_id: room_id.clone(),
        name: Some("renamed".to_owned()),
        visibility: Some(pb::Visibility::Unlisted.into()),
        ..Default::default()
    };
    app.rooms().update_room(as_user(rename, &ana)).await.unwrap();
    app.set_role(&ana, &room_id, &bo, pb::Role::Moderator).await.unwrap();
    app.rooms()
        .kick_member(as_user(pb::KickMemberRequest { room_id: room_id.clone(), user_id: cy.user_id.clone() }, &bo))
        .await
        .unwrap();
    app.rooms()
        .transfer_ownership(as_user(
            pb::TransferOwnershipRequest { room_id: room_id.clone(), user_id: bo.user_id.clone() },
            &ana,
        ))
        .await
        .unwrap();
    app.rooms().leave_room(as_user(pb::LeaveRoomRequest { room_id: room_id.clone() }, &ana)).await.unwrap();

    // Refused: wrong role, bad input, unknown member, a banned rejoin; none leaves a row.
    let as_member =
        pb::UpdateRoomRequest { room_id: room_id.clone(), name: Some("mine".to_owned()), ..Default::default() };
    assert_eq!(code(app.rooms().update_room(as_user(as_member, &cy)).await), Code::PermissionDenied);
    let invalid = pb::UpdateRoomRequest { room_id: room_id.clone(), name: Some(String::new()), ..Default::default() };
    assert_eq!(code(app.rooms().update_room(as_user(invalid, &bo)).await), Code::InvalidArgument);
    assert_eq!(code(app.set_role(&bo, &room_id, &ana, pb::Role::Moderator).await), Code::NotFound);
    assert_eq!(code(app.join(&cy, &room_id, "").await), Code::PermissionDenied);
    // A no-op update changes nothing and records nothing.
    let same =
        pb::UpdateRoomRequest { room_id: room_id.clone(), name: Some("renamed".to_owned()), ..Default::default() };
    app.rooms().update_room(as_user(same, &bo)).await.unwrap();

    app.rooms().close_room(as_user(pb::CloseRoomRequest { room_id: room_id.clone() }, &bo)).await.unwrap();
    assert_eq!(
        code(app.rooms().close_room(as_user(pb::CloseRoomRequest { room_id: room_id.clone() }, &bo)).await),
        Code::FailedPrecondition
    );

    let audit = app.audit(&room_id).await;
    let rows: Vec<(&str, &str, &str)> =
        audit.iter().map(|row| (row.action.as_str(), row.user_id.as_str(), row.target_user_id.as_str())).collect();
    let (ana_id, bo_id, cy_id) = (ana.user_id.as_str(), bo.user_id.as_str(), cy.user_id.as_str());
    assert_eq!(
        rows,
        [
            ("room.create", ana_id, ""),
            ("member.join", bo_id, ""),
            ("member.join", cy_id, ""),
            ("room.update", ana_id, ""),
            ("member.set_role", ana_id, bo_id),
            ("member.kick", bo_id, cy_id),
            ("room.transfer_ownership", ana_id, bo_id),
            ("member.leave", ana_id, ""),
            ("room.close", bo_id, ""),
        ]
    );
    assert_eq!(audit[3].detail, r#"{"name":"renamed","visibility":"unlisted"}"#);
    assert!(audit.iter().all(|row| row.room_id == room_id && row.create_time.is_some()));

    // Filters: by user (actor or target), by time range, and paginated.
    let by_user = pb::ListAuditLogsRequest { user_id: cy.user_id.clone(), ..Default::default() };
    let cy_rows = app.admin().list_audit_logs(as_admin(by_user)).await.unwrap().into_inner().audit_logs;
    assert_eq!(cy_rows.iter().map(|row| row.action.as_str()).collect::<Vec<_>>(), ["member.join", "member.kick"]);
    let future =
        pb::ListAuditLogsRequest { start_time: Some(proto::timestamp_from_ms(START_MS + 1)), ..Default::default() };
    assert!(app.admin().list_audit_logs(as_admin(future)).await.unwrap().into_inner().audit_logs.is_empty());
    let mut paged = Vec::new();
    let mut page_token = String::new();
    loop {
        let request =
            pb::ListAuditLogsRequest { room_id: room_id.clone(), page_size: 4, page_token, ..Default::default() };
        let response = app.admin().list_audit_logs(as_admin(request)).await.unwrap().into_inner();
        paged.extend(response.audit_logs);
        if response.next_page_token.is_empty() {
            break;
        }
        page_token = response.next_page_token;
    }
    assert_eq!(paged, audit);

    // Admin access needs the admin token.
    let no_token = app.admin().list_audit_logs(Request::new(pb::ListAuditLogsRequest::default())).await;
    assert_eq!(code(no_token), Code::Unauthenticated);
    let user_token = app.admin().list_audit_logs(as_user(pb::ListAuditLogsRequest::default(), &ana)).await;
    assert_eq!(code(user_token), Code::PermissionDenied);
}

#[tokio::test]
async fn members_carry_display_names_from_session_svc() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let bo = app.user("Bo 🎬").await;
    let cy = app.user("Cy").await;
    let room = app.open_room(&ana, "names").await;
    app.clock.advance(Duration::from_secs(1));
    app.join(&cy, &room.room_id, "").await.unwrap();
    app.clock.advance(Duration::from_secs(1));
    app.join(&bo, &room.room_id, "").await.unwrap();
    app.set_role(&ana, &room.room_id, &bo, pb::Role::Moderator).await.unwrap();

    let list = |user: &User| {
        let mut client = app.rooms();
        let request = as_user(pb::ListMembersRequest { room_id: room.room_id.clone() }, user);
        async move { client.list_members(request).await }
    };
    let members = list(&cy).await.unwrap().into_inner().members;
    let seen: Vec<(&str, &str, i32)> =
        members.iter().map(|member| (member.user_id.as_str(), member.display_name.as_str(), member.role)).collect();
    assert_eq!(
        seen,
        [
            (ana.user_id.as_str(), "Ana", pb::Role::Owner as i32),
            (bo.user_id.as_str(), "Bo 🎬", pb::Role::Moderator as i32),
            (cy.user_id.as_str(), "Cy", pb::Role::Member as i32),
        ]
    );
    assert_eq!(members[2].join_time, Some(proto::timestamp_from_ms(START_MS + 1000)));

    // A renamed session shows its new name; an ended one shows none.
    let mut sessions = SessionServiceClient::new(app.server.channel());
    sessions
        .update_display_name(as_user(session_pb::UpdateDisplayNameRequest { display_name: "Cyrus".to_owned() }, &cy))
        .await
        .unwrap();
    sessions.end_session(as_user(session_pb::EndSessionRequest {}, &bo)).await.unwrap();
    let members = list(&ana).await.unwrap().into_inner().members;
    let names: Vec<&str> = members.iter().map(|member| member.display_name.as_str()).collect();
    assert_eq!(names, ["Ana", "", "Cyrus"]);

    let outsider = app.user("Outsider").await;
    assert_eq!(code(list(&outsider).await), Code::PermissionDenied);
}

#[tokio::test]
async fn concurrent_joins_never_overfill_a_room_or_fail_internally() {
    let app = TestApp::start_with(|config| config.max_members = 10).await;
    let owner = app.user("Owner").await;
    let room = app.open_room(&owner, "crowded").await;
    let mut users = Vec::new();
    for n in 0..24 {
        users.push(app.user(&format!("guest {n}")).await);
    }

    let joins = users.iter().map(|user| app.join(user, &room.room_id, ""));
    let outcomes: Vec<Code> = futures_util::future::join_all(joins).await.into_iter().map(code).collect();

    assert_eq!(outcomes.iter().filter(|outcome| **outcome == Code::Ok).count(), 9);
    assert!(outcomes.iter().all(|outcome| matches!(outcome, Code::Ok | Code::ResourceExhausted)), "{outcomes:?}");
    let got = app.get(&owner, &room.room_id).await.unwrap().room.unwrap();
    assert_eq!(got.member_count, 10);
    let joins_audited = app.audit_actions(&room.room_id).await.iter().filter(|action| *action == "member.join").count();
    assert_eq!(joins_audited, 9);
}

#[tokio::test]
async fn my_membership_says_what_the_caller_may_do_in_the_room() {
    let app = TestApp::start().await;
    let (ana, bo, cy, outsider) =
        (app.user("Ana").await, app.user("Bo").await, app.user("Cy").await, app.user("Out").await);
    let request = pb::CreateRoomRequest {
        name: "film".to_owned(),
        control_mode: pb::ControlMode::Moderators.into(),
        ..Default::default()
    };
    let room = app.create_room(&ana, request).await;
    app.join(&bo, &room.room_id, "").await.unwrap();
    app.join(&cy, &room.room_id, "").await.unwrap();
    app.set_role(&ana, &room.room_id, &bo, pb::Role::Moderator).await.unwrap();
    let mine = |user: &User, room_id: &str| {
        let mut client = app.rooms();
        let request = as_user(pb::GetMyMembershipRequest { room_id: room_id.to_owned() }, user);
        async move { client.get_my_membership(request).await.map(tonic::Response::into_inner) }
    };
    let may = |membership: &pb::GetMyMembershipResponse| {
        (membership.can_control, membership.can_moderate, membership.can_manage)
    };

    let owner = mine(&ana, &room.room_id).await.unwrap();
    let member = owner.member.as_ref().unwrap();
    assert_eq!((member.user_id.as_str(), member.display_name.as_str()), (ana.user_id.as_str(), "Ana"));
    assert_eq!(member.role(), pb::Role::Owner);
    assert_eq!(proto::ms_from_timestamp(member.join_time.as_ref().unwrap()), START_MS);
    assert_eq!(may(&owner), (true, true, true));
    let moderator = mine(&bo, &room.room_id).await.unwrap();
    assert_eq!(moderator.member.as_ref().unwrap().role(), pb::Role::Moderator);
    assert_eq!(may(&moderator), (true, true, false));
    // Under MODERATORS control, a plain member may only watch.
    assert_eq!(may(&mine(&cy, &room.room_id).await.unwrap()), (false, false, false));

    assert_eq!(code(mine(&outsider, &room.room_id).await), Code::NotFound);
    assert_eq!(violations(&mine(&ana, "not-a-room").await.unwrap_err()), ["room_id"]);
    let anonymous = app.rooms().get_my_membership(pb::GetMyMembershipRequest { room_id: room.room_id.clone() }).await;
    assert_eq!(code(anonymous), Code::Unauthenticated);

    // A closed room lets nobody do anything any more.
    app.rooms().close_room(as_user(pb::CloseRoomRequest { room_id: room.room_id.clone() }, &ana)).await.unwrap();
    assert_eq!(may(&mine(&ana, &room.room_id).await.unwrap()), (false, false, false));
}

#[tokio::test]
async fn batch_check_access_answers_each_pair_as_check_access_does() {
    // Arrange: an open room with its owner and a member, a closed room, an unknown room.
    let app = TestApp::start().await;
    let [ana, bo, cy] = [app.user("Ana").await, app.user("Bo").await, app.user("Cy").await];
    let open = app.open_room(&ana, "open").await.room_id;
    app.join(&bo, &open, "").await.unwrap();
    let closed = app.open_room(&ana, "closed").await.room_id;
    app.join(&cy, &closed, "").await.unwrap();
    app.rooms().close_room(as_user(pb::CloseRoomRequest { room_id: closed.clone() }, &ana)).await.unwrap();
    let missing = uuid::Uuid::new_v4().to_string();
    let pair = |room_id: &str, user: &User| pb::CheckAccessRequest {
        room_id: room_id.to_owned(),
        user_id: user.user_id.clone(),
    };
    let checks = vec![
        pair(&open, &ana),
        pair(&open, &bo),
        pair(&open, &cy),
        pair(&closed, &cy),
        pair(&missing, &bo),
        pair(&open, &bo),
    ];

    // Act
    let request = pb::BatchCheckAccessRequest { checks: checks.clone() };
    let results = app.access_internal().batch_check_access(request).await.unwrap().into_inner().results;

    // Assert: in order, each what CheckAccess answers alone; the unknown room per pair.
    assert_eq!(results.len(), checks.len());
    for (check, result) in checks.into_iter().zip(results) {
        let alone = app.internal().check_access(check).await;
        let expected = match alone {
            Ok(response) => pb::check_access_result::Outcome::Access(response.into_inner()),
            Err(status) => {
                assert_eq!(status.code(), Code::NotFound);
                pb::check_access_result::Outcome::RoomNotFound(true)
            }
        };
        assert_eq!(result.outcome, Some(expected));
    }
    let owner = app.internal().check_access(pair(&open, &ana)).await.unwrap().into_inner();
    assert_eq!((owner.role(), owner.can_moderate), (pb::Role::Owner, true));
    let outsider = app.internal().check_access(pair(&open, &cy)).await.unwrap().into_inner();
    assert_eq!((outsider.role(), outsider.can_control), (pb::Role::Unspecified, false));
    let in_closed = app.internal().check_access(pair(&closed, &cy)).await.unwrap().into_inner();
    assert_eq!((in_closed.status(), in_closed.can_control), (pb::RoomStatus::Closed, false));
}

#[tokio::test]
async fn batch_check_access_refuses_empty_oversized_and_malformed_batches() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let open = app.open_room(&ana, "open").await.room_id;
    let good = pb::CheckAccessRequest { room_id: open, user_id: ana.user_id.clone() };
    let refused = |checks: Vec<pb::CheckAccessRequest>| {
        let mut internal = app.access_internal();
        async move { internal.batch_check_access(pb::BatchCheckAccessRequest { checks }).await.unwrap_err() }
    };

    assert_eq!(violations(&refused(Vec::new()).await), ["checks"]);
    assert_eq!(violations(&refused(vec![good.clone(); 501]).await), ["checks"]);
    let malformed = pb::CheckAccessRequest { room_id: "x".to_owned(), user_id: String::new() };
    assert_eq!(violations(&refused(vec![good.clone(), malformed]).await), ["checks[1].room_id", "checks[1].user_id"]);
    let full = pb::BatchCheckAccessRequest { checks: vec![good.clone(); 500] };
    let full = app.access_internal().batch_check_access(full).await.unwrap().into_inner();
    assert_eq!(full.results.len(), 500);
    // Internal: without the internal token, nothing is answered.
    let mut anyone =
        pb::room_access_internal_service_client::RoomAccessInternalServiceClient::new(app.server.channel());
    let unauthenticated = anyone.batch_check_access(pb::BatchCheckAccessRequest { checks: vec![good] }).await;
    assert_eq!(code(unauthenticated), Code::Unauthenticated);
}

/// Activity for many rooms in one call: the open ones stay open past the idle limit, closed and
/// unknown ones are skipped without failing the rest, and bad batches are refused whole.
#[tokio::test]
async fn batch_record_activity_keeps_the_open_rooms_named_open_and_skips_the_rest() {
    let app = TestApp::start().await;
    let ana = app.user("Ana").await;
    let busy: Vec<String> = [app.open_room(&ana, "busy 1").await, app.open_room(&ana, "busy 2").await]
        .into_iter()
        .map(|room| room.room_id)
        .collect();
    let idle = app.open_room(&ana, "idle").await.room_id;
    let closed = app.open_room(&ana, "closed").await.room_id;
    app.rooms().close_room(as_user(pb::CloseRoomRequest { room_id: closed.clone() }, &ana)).await.unwrap();
    let unknown = uuid::Uuid::new_v4().to_string();

    app.clock.advance(minutes(59));
    let room_ids = vec![busy[0].clone(), closed.clone(), unknown, busy[1].clone(), busy[0].clone()];
    app.access_internal().batch_record_activity(pb::BatchRecordActivityRequest { room_ids }).await.unwrap();
    app.clock.advance(minutes(2));
    svc_kit::testing::eventually("the idle room closed by the janitor", async || {
        app.get(&ana, &idle).await.unwrap().room.unwrap().status == pb::RoomStatus::Closed as i32
    })
    .await;
    for room_id in &busy {
        assert_eq!(app.get(&ana, room_id).await.unwrap().room.unwrap().status, pb::RoomStatus::Active as i32);
    }
    assert_eq!(app.get(&ana, &closed).await.unwrap().room.unwrap().status, pb::RoomStatus::Closed as i32);

    let refused = |room_ids: Vec<String>| {
        let mut internal = app.access_internal();
        async move { internal.batch_record_activity(pb::BatchRecordActivityRequest { room_ids }).await.unwrap_err() }
    };
    assert_eq!(violations(&refused(Vec::new()).await), ["room_ids"]);
    assert_eq!(violations(&refused(vec![busy[0].clone(); 501]).await), ["room_ids"]);
    assert_eq!(violations(&refused(vec![busy[0].clone(), "x".to_owned()]).await), ["room_ids[1]"]);
    let mut anyone =
        pb::room_access_internal_service_client::RoomAccessInternalServiceClient::new(app.server.channel());
    let unauthenticated = anyone.batch_record_activity(pb::BatchRecordActivityRequest { room_ids: busy }).await;
    assert_eq!(code(unauthenticated), Code::Unauthenticated);
}
