//! Sessions: tokens, cookies, sliding and absolute expiry, the janitor, logout and
//! revocation, validation of names, admin listing, display names, flood limits.

use std::time::Duration;

use proto::session::v1 as pb;
use svc_kit::testing::{violations, with_bearer};
use tonic::{Code, Request};
use xiaowo::testing::as_admin;

use crate::helpers::{App, START_MS};

impl App {
    /// Everything stored: the files' bytes on SQLite, every row as text on PostgreSQL.
    async fn database_bytes(&self) -> Vec<u8> {
        if svc_kit::testing::on_postgres() {
            use sea_orm::{ConnectionTrait, Statement};
            let db = self.database().await;
            let rows = db
                .query_all_raw(Statement::from_string(
                    db.get_database_backend(),
                    "SELECT CAST(s AS TEXT) AS row_text FROM user_sessions s",
                ))
                .await
                .unwrap();
            return rows.iter().flat_map(|row| row.try_get::<String>("", "row_text").unwrap().into_bytes()).collect();
        }
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(self.stack.dir()).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                bytes.extend(std::fs::read(path).unwrap());
            }
        }
        bytes
    }

    /// Every row's id, read straight from the database.
    async fn stored_user_ids(&self) -> Vec<String> {
        use sea_orm::{ConnectionTrait, Statement};
        let db = self.database().await;
        let rows = db
            .query_all_raw(Statement::from_string(db.get_database_backend(), "SELECT session_id FROM user_sessions"))
            .await
            .unwrap();
        rows.iter().map(|row| row.try_get::<String>("", "session_id").unwrap()).collect()
    }
}

/// session-svc with a janitor that runs every 50 ms.
async fn start() -> App {
    start_with(|_| {}).await
}

async fn start_with(configure: impl FnOnce(&mut session_svc::Config)) -> App {
    App::start_with(|config| {
        config.janitor_interval = Duration::from_millis(50);
        configure(config);
    })
    .await
}

async fn list_all(app: &App) -> Vec<pb::Session> {
    app.admin()
        .list_sessions(as_admin(pb::ListSessionsRequest { page_size: 0, page_token: String::new() }))
        .await
        .unwrap()
        .into_inner()
        .sessions
}

#[tokio::test]
async fn tokens_are_random_unique_and_never_stored() {
    let app = start().await;

    let first = app.create("Ana").await;
    let second = app.create("Ana").await;

    assert_ne!(first.token, second.token);
    assert_ne!(first.session.as_ref().unwrap().user_id, second.session.as_ref().unwrap().user_id);
    assert!(first.token.len() >= 32, "at least 128 bits of hex");
    let stored = app.database_bytes().await;
    for token in [&first.token, &second.token] {
        let needle = token.as_bytes();
        assert!(!stored.windows(needle.len()).any(|window| window == needle), "raw token found in the database files");
        let hash = svc_kit::auth::token_hash(token);
        assert!(stored.windows(hash.len()).any(|window| window == hash.as_bytes()), "token hash stored");
    }
    assert_eq!(app.who_am_i(&second.token).await.unwrap().display_name, "Ana");
}

#[tokio::test]
async fn cookie_attributes_follow_the_transport() {
    let app = start().await;
    let create = |host: &'static str, proto: Option<&'static str>| {
        let mut client = app.public();
        async move {
            let mut request = Request::new(pb::CreateSessionRequest { display_name: "Bo".to_owned() });
            request.metadata_mut().insert("host", host.parse().unwrap());
            if let Some(proto) = proto {
                request.metadata_mut().insert("x-forwarded-proto", proto.parse().unwrap());
            }
            let response = client.create_session(request).await.unwrap();
            let cookie = response.metadata().get("set-cookie").unwrap().to_str().unwrap().to_owned();
            (cookie, response.into_inner().token)
        }
    };

    let (local, token) = create("localhost:8080", None).await;
    assert_eq!(
        local,
        format!("__Host-xiaowo_session={token}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict; Secure", 90 * 86_400)
    );
    let (https, _) = create("watch.example", Some("https")).await;
    assert!(https.starts_with("__Host-xiaowo_session=") && https.ends_with("; Secure"));
    let (plain, token) = create("watch.example:8080", None).await;
    assert!(plain.starts_with(&format!("xiaowo_session={token};")));
    assert!(plain.contains("HttpOnly") && plain.contains("SameSite=Strict") && plain.contains("Path=/"));
    assert!(!plain.contains("Secure"));

    // The cookie alone authenticates, and logging out clears it.
    let mut request = Request::new(pb::EndSessionRequest {});
    request.metadata_mut().insert("cookie", format!("theme=dark; xiaowo_session={token}").parse().unwrap());
    request.metadata_mut().insert("host", "watch.example".parse().unwrap());
    let response = app.public().end_session(request).await.unwrap();
    let cleared = response.metadata().get("set-cookie").unwrap().to_str().unwrap();
    assert!(cleared.starts_with("xiaowo_session=;") && cleared.contains("Max-Age=0"));
    assert_eq!(app.who_am_i(&token).await.unwrap_err().code(), Code::Unauthenticated);
}

#[tokio::test]
async fn idle_expiry_slides_with_use() {
    let app = start_with(|config| {
        config.idle_timeout = Duration::from_secs(3600);
        config.absolute_lifetime = Duration::from_secs(10 * 3600);
    })
    .await;
    let used = app.create("Used").await.token;
    let idle = app.create("Idle").await.token;

    for _ in 0..3 {
        app.advance(Duration::from_secs(50 * 60));
        let session = app.who_am_i(&used).await.unwrap();
        assert_eq!(proto::ms_from_timestamp(&session.expire_time.unwrap()), app.now_ms() + 3_600_000);
    }

    assert_eq!(app.who_am_i(&idle).await.unwrap_err().code(), Code::Unauthenticated);
}

#[tokio::test]
async fn uses_within_a_minute_are_not_written_again() {
    let app = start_with(|config| config.idle_timeout = Duration::from_secs(3600)).await;
    let token = app.create("Chatty").await.token;
    let created_expiry = app.now_ms() + 3_600_000;

    // Within the write granularity (a minute here) a validation reads and writes nothing: the
    // stored slide, and so the answer, stay as they were.
    app.advance(Duration::from_secs(59));
    let session = app.who_am_i(&token).await.unwrap();
    assert_eq!(proto::ms_from_timestamp(&session.expire_time.unwrap()), created_expiry);

    // Past it the slide is written again.
    app.advance(Duration::from_secs(2));
    let session = app.who_am_i(&token).await.unwrap();
    assert_eq!(proto::ms_from_timestamp(&session.expire_time.unwrap()), app.now_ms() + 3_600_000);
}

#[tokio::test]
async fn absolute_lifetime_caps_any_amount_of_use() {
    let app = start_with(|config| {
        config.idle_timeout = Duration::from_secs(3600);
        config.absolute_lifetime = Duration::from_secs(2 * 3600);
    })
    .await;
    let token = app.create("Busy").await.token;

    app.advance(Duration::from_secs(55 * 60));
    app.who_am_i(&token).await.unwrap();
    app.advance(Duration::from_secs(55 * 60));
    let session = app.who_am_i(&token).await.unwrap();
    assert_eq!(proto::ms_from_timestamp(&session.expire_time.unwrap()), START_MS + 2 * 3_600_000);
    app.advance(Duration::from_secs(11 * 60));

    let status = app.who_am_i(&token).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let validated =
        app.internal().validate_session(app.stack.internal(pb::ValidateSessionRequest { token })).await.unwrap_err();
    assert_eq!(validated.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn janitor_deletes_expired_rows() {
    let app = start_with(|config| config.idle_timeout = Duration::from_secs(60)).await;
    let expiring = app.create("Gone").await.session.unwrap().user_id;
    app.advance(Duration::from_secs(61));
    let staying = app.create("Here").await.session.unwrap().user_id;

    let mut stored = app.stored_user_ids().await;
    for _ in 0..100 {
        if !stored.contains(&expiring) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        stored = app.stored_user_ids().await;
    }

    assert_eq!(stored, vec![staying]);
}

/// `xiaowo_sessions_live` as the service's `/metrics` page says now.
async fn sessions_live(app: &App) -> f64 {
    let page = svc_kit::testing::metrics_page(app.node.addr).await;
    svc_kit::testing::metric(&page, "xiaowo_sessions_live").unwrap()
}

#[tokio::test]
async fn logout_and_revoke_end_the_session() {
    // Counted at start, and no janitor pass within the test: every later figure comes from
    // the starts and ends themselves.
    let app = start_with(|config| config.janitor_interval = Duration::from_secs(3600)).await;
    assert_eq!(sessions_live(&app).await, 0.0);
    let leaving = app.create("Leaving").await.token;
    let revoked = app.create("Revoked").await;
    assert_eq!(sessions_live(&app).await, 2.0);

    app.public().end_session(with_bearer(pb::EndSessionRequest {}, &leaving)).await.unwrap();
    assert_eq!(sessions_live(&app).await, 1.0);
    let user_id = revoked.session.unwrap().user_id;
    app.admin().revoke_session(as_admin(pb::RevokeSessionRequest { user_id: user_id.clone() })).await.unwrap();
    assert_eq!(sessions_live(&app).await, 0.0);

    assert_eq!(app.who_am_i(&leaving).await.unwrap_err().code(), Code::Unauthenticated);
    assert_eq!(app.who_am_i(&revoked.token).await.unwrap_err().code(), Code::Unauthenticated);
    let again = app.admin().revoke_session(as_admin(pb::RevokeSessionRequest { user_id })).await;
    assert_eq!(again.unwrap_err().code(), Code::NotFound);
    let garbled = pb::RevokeSessionRequest { user_id: "not-a-user-id".to_owned() };
    let garbled = app.admin().revoke_session(as_admin(garbled)).await.unwrap_err();
    assert_eq!(garbled.code(), Code::InvalidArgument, "{garbled:?}");
    let twice = app.public().end_session(with_bearer(pb::EndSessionRequest {}, &leaving)).await;
    assert_eq!(twice.unwrap_err().code(), Code::Unauthenticated);
}

#[tokio::test]
async fn bad_display_names_name_the_field() {
    let app = start().await;
    let token = app.create("Fine").await.token;

    for bad in ["", "   ", &"x".repeat(33), "tab\there", "nul\0", "line\nbreak", "\u{202E}evil"] {
        let status =
            app.public().create_session(pb::CreateSessionRequest { display_name: bad.to_owned() }).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{bad:?}");
        assert_eq!(violations(&status), vec!["display_name"], "{bad:?}");

        let rename = app
            .public()
            .update_display_name(with_bearer(pb::UpdateDisplayNameRequest { display_name: bad.to_owned() }, &token))
            .await
            .unwrap_err();
        assert_eq!(rename.code(), Code::InvalidArgument);
    }
    assert_eq!(app.who_am_i(&token).await.unwrap().display_name, "Fine", "nothing changed");
    assert_eq!(list_all(&app).await.len(), 1, "nothing half-created");

    let renamed = app
        .public()
        .update_display_name(with_bearer(pb::UpdateDisplayNameRequest { display_name: " 小窝 ".to_owned() }, &token))
        .await
        .unwrap();
    assert_eq!(renamed.into_inner().session.unwrap().display_name, "小窝");
}

#[tokio::test]
async fn missing_and_garbage_tokens_are_unauthenticated() {
    let app = start().await;

    let missing = app.public().get_session(pb::GetSessionRequest {}).await.unwrap_err();
    let garbage = app.who_am_i("not-a-token").await.unwrap_err();
    let mut bad_cookie = Request::new(pb::GetSessionRequest {});
    bad_cookie.metadata_mut().insert("cookie", "xiaowo_session=deadbeef".parse().unwrap());
    let cookie = app.public().get_session(bad_cookie).await.unwrap_err();
    let internal = app
        .internal()
        .validate_session(app.stack.internal(pb::ValidateSessionRequest { token: String::new() }))
        .await
        .unwrap_err();

    for status in [missing, garbage, cookie, internal] {
        assert_eq!(status.code(), Code::Unauthenticated);
    }
}

#[tokio::test]
async fn admin_rpcs_need_the_admin_token() {
    let app = start().await;
    let user = app.create("User").await;
    let list = || pb::ListSessionsRequest { page_size: 10, page_token: String::new() };

    let anonymous = app.admin().list_sessions(list()).await.unwrap_err();
    let as_user = app.admin().list_sessions(with_bearer(list(), &user.token)).await.unwrap_err();
    let revoke_as_user = app
        .admin()
        .revoke_session(with_bearer(pb::RevokeSessionRequest { user_id: user.session.unwrap().user_id }, &user.token))
        .await
        .unwrap_err();

    assert_eq!(anonymous.code(), Code::Unauthenticated);
    assert_eq!(as_user.code(), Code::PermissionDenied);
    assert_eq!(revoke_as_user.code(), Code::PermissionDenied);
    assert_eq!(app.who_am_i(&user.token).await.unwrap().display_name, "User");
}

#[tokio::test]
async fn admin_list_pages_newest_first() {
    let app = start().await;
    let mut created = Vec::new();
    for index in 0..5 {
        created.push(app.create(&format!("user{index}")).await.session.unwrap().user_id);
        app.advance(Duration::from_secs(1));
    }
    created.reverse();

    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = app
            .admin()
            .list_sessions(as_admin(pb::ListSessionsRequest { page_size: 2, page_token }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.sessions.len() <= 2);
        seen.extend(page.sessions.into_iter().map(|session| session.user_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    assert_eq!(seen, created);

    let bad = app
        .admin()
        .list_sessions(as_admin(pb::ListSessionsRequest { page_size: 2, page_token: "garbage".to_owned() }))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violations(&bad), vec!["page_token"]);
}

#[tokio::test]
async fn display_names_in_one_batch() {
    let app = start().await;
    let ana = app.create("Ana").await.session.unwrap().user_id;
    let bo = app.create("Bo").await.session.unwrap().user_id;

    let names = app
        .internal()
        .batch_get_display_names(app.stack.internal(pb::BatchGetDisplayNamesRequest {
            user_ids: vec![ana.clone(), bo.clone(), "00000000-0000-0000-0000-000000000000".to_owned()],
        }))
        .await
        .unwrap()
        .into_inner()
        .display_names;

    assert_eq!(names.len(), 2);
    assert_eq!(names[&ana], "Ana");
    assert_eq!(names[&bo], "Bo");
}

#[tokio::test]
async fn session_creation_is_flood_limited() {
    let app = start_with(|config| {
        config.create_burst = 3;
        config.create_per_minute = 1;
    })
    .await;
    for _ in 0..3 {
        app.create("ok").await;
    }

    let limited = app.public().create_session(pb::CreateSessionRequest { display_name: "more".to_owned() }).await;

    assert_eq!(limited.unwrap_err().code(), Code::ResourceExhausted);
    assert_eq!(list_all(&app).await.len(), 3);
}
