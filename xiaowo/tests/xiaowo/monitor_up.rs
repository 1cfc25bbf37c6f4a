//! The monitoring loop end to end on the real binary: `xiaowo up` with a low threshold, load on
//! session-svc (refused logins), and the alert arrives by webhook and e-mail (a real aiosmtpd),
//! shows as firing over the real grpcurl, then resolves once the load stops.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use proto::session::v1 as session_pb;
use proto::session::v1::session_service_client::SessionServiceClient;
use svc_kit::testing::{PATIENCE, eventually};

use crate::helpers::grpcurl;

const ADMIN: &str = "monitor-e2e-admin";

struct Process {
    child: Child,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `(path, body)` of every request received.
type Recorded = Arc<Mutex<Vec<(String, String)>>>;

/// A plain HTTP/1.1 server on a loopback port that records the path and body of every request.
fn http_recorder() -> (String, Recorded) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&requests);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                continue;
            }
            let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_owned();
            let mut length = 0;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).is_err() || header.trim().is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':')
                    && name.eq_ignore_ascii_case("content-length")
                {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            recorded.lock().unwrap().push((path, String::from_utf8_lossy(&body).into_owned()));
            let _ = reader.get_mut().write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
        }
    });
    (url, requests)
}

/// monitor-svc's aiosmtpd recorder (scripts/test.sh installs aiosmtpd).
fn smtp_recorder(messages: &std::path::Path) -> (Process, u16) {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../monitor-svc/tests/smtp_recorder.py");
    let mut child = Command::new("python3")
        .arg(script)
        .arg(port.to_string())
        .arg(messages)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "ready", "aiosmtpd did not start");
    (Process { child }, port)
}

fn alerts_in_state(addr: &str, state: &str) -> String {
    let auth = format!("authorization: Bearer {ADMIN}");
    let body = format!(r#"{{"state": "{state}"}}"#);
    grpcurl(&["-plaintext", "-H", &auth, "-d", &body, addr, "xiaowo.monitor.v1.MonitorService/ListAlerts"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_fires_an_alert_by_webhook_and_email_visible_over_grpcurl_then_it_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        r#"
[[rules]]
name = "RefusedLoginBurst"
metric = "xiaowo_auth_failures_total:rate"
comparison = ">"
threshold = 5
for = "2s"
severity = "critical"
message = "refused logins under load"
"#,
    )
    .unwrap();
    let (receiver, posts) = http_recorder();
    let messages = dir.path().join("mail.jsonl");
    let (_smtp, smtp_port) = smtp_recorder(&messages);

    let up = crate::helpers::start_up(
        &[
            "--shutdown-grace",
            "2s",
            "--monitor-scrape-interval",
            "1s",
            "--monitor-notify-backoff",
            "100ms",
            "--monitor-rules",
            rules.to_str().unwrap(),
            "--monitor-webhook-url",
            &format!("{receiver}/hook"),
            "--monitor-smtp-server",
            &format!("127.0.0.1:{smtp_port}"),
            "--monitor-smtp-to",
            "ops@example.org",
        ],
        ADMIN,
        &[],
    );
    let addr = up.addr.clone();

    // Load: refused logins as fast as one client goes, until told to stop (bounded in time).
    let stop = Arc::new(AtomicBool::new(false));
    let channel = svc_kit::peer::channel(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();
    let load = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            let mut client = SessionServiceClient::new(channel);
            let started = Instant::now();
            while !stop.load(Ordering::SeqCst) && started.elapsed() < PATIENCE * 2 {
                let mut request = tonic::Request::new(session_pb::GetSessionRequest {});
                request.metadata_mut().insert("authorization", "Bearer wrong-token".parse().unwrap());
                let status = client.get_session(request).await.unwrap_err();
                assert_eq!(status.code(), tonic::Code::Unauthenticated);
            }
        }
    });

    let mut firing = String::new();
    eventually("a firing alert", async || {
        firing = alerts_in_state(&addr, "ALERT_STATE_FIRING");
        firing.contains("RefusedLoginBurst")
    })
    .await;
    assert!(firing.contains(r#""service": "xiaowo""#), "{firing}");
    // The all-in-one process is one target; its domains are reported apart as well.
    let auth = format!("authorization: Bearer {ADMIN}");
    let overview = grpcurl(&["-plaintext", "-H", &auth, &addr, "xiaowo.monitor.v1.MonitorService/GetOverview"]);
    for service in [r#""service": "xiaowo""#, r#""service": "session""#] {
        assert!(overview.contains(service), "{service} missing from {overview}");
    }
    let hooks = |status: &str| {
        let needle = format!(r#""status":"{status}""#);
        posts.lock().unwrap().iter().filter(|(path, body)| path == "/hook" && body.contains(&needle)).count()
    };
    let mails = || std::fs::read_to_string(&messages).map(|text| text.lines().count()).unwrap_or(0);
    eventually("the webhook", async || hooks("firing") == 1).await;
    eventually("the e-mail", async || mails() >= 1).await;

    stop.store(true, Ordering::SeqCst);
    load.await.unwrap();
    let mut resolved = String::new();
    eventually("the alert to resolve", async || {
        resolved = alerts_in_state(&addr, "ALERT_STATE_RESOLVED");
        resolved.contains("RefusedLoginBurst")
    })
    .await;
    assert!(resolved.contains("resolveTime"), "{resolved}");
    eventually("the resolve webhook", async || hooks("resolved") == 1).await;
    eventually("the resolve e-mail", async || mails() >= 2).await;
    assert_eq!(hooks("firing"), 1, "a firing alert is announced once");
}

/// `message` with this file's admin token.
fn admin<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {ADMIN}").parse().unwrap());
    request
}

/// The rules that judge callers' outcomes and the server's faults. Latency and memory depend on
/// the machine the test runs on, not on what callers do, and are left out.
const OUTCOME_RULES: [&str; 7] = [
    "TargetDown",
    "AuthFailureBurst",
    "PermissionDeniedBurst",
    "WrongPasswordBurst",
    "FloodLimitBurst",
    "HighErrorRatio",
    "RefusalSpike",
];

/// An hour of two people watching together, played 120 times faster through the real binary
/// with the default rules: first visits without a session, a wrong password, a member clicking
/// a control only moderators have, page reloads that close streams, chat with read receipts,
/// status reports and clock samples. Expected outcomes are not errors: no rule about outcomes
/// or faults so much as goes pending, while the refusals are counted as refusals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_of_two_people_watching_together_raises_no_alert() {
    use proto::chat::v1 as chat_pb;
    use proto::chat::v1::chat_service_client::ChatServiceClient;
    use proto::monitor::v1 as monitor_pb;
    use proto::monitor::v1::monitor_service_client::MonitorServiceClient;
    use proto::room::v1 as room_pb;
    use proto::room::v1::room_service_client::RoomServiceClient;
    use proto::sync::v1 as sync_pb;
    use proto::sync::v1::sync_service_client::SyncServiceClient;
    use svc_kit::testing::with_bearer;

    let up = crate::helpers::start_up(
        &[
            "--shutdown-grace",
            "2s",
            "--monitor-scrape-interval",
            "1s",
            "--room-bcrypt-cost",
            "4",
            // Time runs 120 times faster for the people, so their per-second allowances do too.
            "--sync-commands-per-second",
            "300",
            "--sync-command-burst",
            "1200",
            "--chat-flood-per-second",
            "60",
            "--chat-flood-burst",
            "300",
        ],
        ADMIN,
        &[],
    );
    let channel = svc_kit::peer::channel(&format!("http://{}", up.addr), Duration::from_secs(10)).unwrap();
    // Every alert change from the start: a pending alert that clears before it fires shows here.
    let mut changes = MonitorServiceClient::new(channel.clone())
        .watch_alerts(admin(monitor_pb::WatchAlertsRequest {}))
        .await
        .unwrap()
        .into_inner();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = tokio::spawn({
        let seen = Arc::clone(&seen);
        async move {
            while let Ok(Some(change)) = changes.message().await {
                if let Some(alert) = change.alert {
                    seen.lock().unwrap().push(format!("{} {:?} value {}", alert.rule, alert.state(), alert.value));
                }
            }
        }
    });

    let sessions = SessionServiceClient::new(channel.clone());
    let rooms = RoomServiceClient::new(channel.clone());
    let sync = SyncServiceClient::new(channel.clone());
    let chat = ChatServiceClient::new(channel.clone());
    // Minute 0: two first visits (no session yet), then sessions, a room with a password and
    // moderators-only controls, a mistyped password, the right one.
    let mut tokens = Vec::new();
    for name in ["Ana", "Bo"] {
        let first_visit = sessions.clone().get_session(session_pb::GetSessionRequest {}).await.unwrap_err();
        assert_eq!(first_visit.code(), tonic::Code::Unauthenticated);
        let request = session_pb::CreateSessionRequest { display_name: name.to_owned() };
        tokens.push(sessions.clone().create_session(request).await.unwrap().into_inner().token);
    }
    let (ana, bo) = (tokens[0].clone(), tokens[1].clone());
    let create = room_pb::CreateRoomRequest {
        name: "Friday film".to_owned(),
        password: "popcorn!".to_owned(),
        control_mode: room_pb::ControlMode::Moderators as i32,
        ..Default::default()
    };
    let room_id =
        rooms.clone().create_room(with_bearer(create, &ana)).await.unwrap().into_inner().room.unwrap().room_id;
    let join = |password: &str| room_pb::JoinRoomRequest { room_id: room_id.clone(), password: password.to_owned() };
    let mistyped = rooms.clone().join_room(with_bearer(join("popcorn"), &bo)).await.unwrap_err();
    assert_eq!(mistyped.code(), tonic::Code::PermissionDenied);
    rooms.clone().join_room(with_bearer(join("popcorn!"), &bo)).await.unwrap();
    let change = sync_pb::ChangeMediaRequest {
        room_id: room_id.clone(),
        url: "https://example.org/film.mp4".to_owned(),
        title: "Film".to_owned(),
        duration_ms: 5_400_000,
        ..Default::default()
    };
    let changed = sync.clone().change_media(with_bearer(change, &ana)).await.unwrap().into_inner();
    let mut version = changed.state.unwrap().version;

    // Each person's open page: the room stream and the chat stream, dropped on a reload.
    let open_page = |token: &str| {
        let (mut sync, mut chat, token, room_id) = (sync.clone(), chat.clone(), token.to_owned(), room_id.clone());
        async move {
            let room = sync.watch_room(with_bearer(sync_pb::WatchRoomRequest { room_id: room_id.clone() }, &token));
            let messages =
                chat.watch_messages(with_bearer(chat_pb::WatchMessagesRequest { room_id, after_seq: Some(0) }, &token));
            (room.await.unwrap().into_inner(), messages.await.unwrap().into_inner())
        }
    };
    let mut pages = vec![open_page(&ana).await, open_page(&bo).await];
    let mut last_seq = 0;
    // Each minute of the hour takes half a second: the hour, 30 s.
    let mut minutes = tokio::time::interval(Duration::from_millis(500));
    for minute in 0..60 {
        minutes.tick().await;
        for token in [&ana, &bo] {
            // A status report every 5 s and a clock sample every 30 s.
            for _ in 0..12 {
                let report = sync_pb::ReportStatusRequest {
                    room_id: room_id.clone(),
                    state: sync_pb::PlayerState::Ready as i32,
                    offset_ms: 12,
                    round_trip_ms: 3,
                    ..Default::default()
                };
                sync.clone().report_status(with_bearer(report, token)).await.unwrap();
            }
            for _ in 0..2 {
                sync.clone().get_clock(sync_pb::GetClockRequest {}).await.unwrap();
            }
        }
        // Ana pauses, resumes or seeks every other minute; Bo talks, Ana reads.
        if minute % 2 == 0 {
            let (room_id, expected_version) = (room_id.clone(), version);
            let mut sync = sync.clone();
            let state = match minute % 6 {
                0 => {
                    let pause = sync_pb::PauseRequest { room_id, expected_version, ..Default::default() };
                    sync.pause(with_bearer(pause, &ana)).await.unwrap().into_inner().state
                }
                2 => {
                    let play = sync_pb::PlayRequest { room_id, expected_version, start_time: None };
                    sync.play(with_bearer(play, &ana)).await.unwrap().into_inner().state
                }
                _ => {
                    let seek = sync_pb::SeekRequest { room_id, expected_version, position_ms: minute * 60_000 };
                    sync.seek(with_bearer(seek, &ana)).await.unwrap().into_inner().state
                }
            };
            version = state.unwrap().version;
        }
        let said = chat_pb::SendMessageRequest {
            room_id: room_id.clone(),
            text: format!("minute {minute}"),
            client_message_id: format!("bo-{minute}"),
        };
        last_seq = chat.clone().send_message(with_bearer(said, &bo)).await.unwrap().into_inner().message.unwrap().seq;
        let cursor =
            chat_pb::UpdateCursorRequest { room_id: room_id.clone(), received_seq: last_seq, read_seq: last_seq };
        chat.clone().update_cursor(with_bearer(cursor, &ana)).await.unwrap();
        // Twice an hour Bo reaches for a control only moderators have.
        if minute == 10 || minute == 40 {
            let seek = sync_pb::SeekRequest { room_id: room_id.clone(), expected_version: version, position_ms: 1_000 };
            let refused = sync.clone().seek(with_bearer(seek, &bo)).await.unwrap_err();
            assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        }
        // Every quarter of an hour Bo reloads the page: both his streams close, he comes back.
        if minute % 15 == 14 {
            drop(pages.pop());
            sessions.clone().get_session(with_bearer(session_pb::GetSessionRequest {}, &bo)).await.unwrap();
            pages.push(open_page(&bo).await);
        }
    }
    assert_eq!(last_seq, 60);
    drop(pages);

    // Three more scrapes after the hour, so that its last seconds are judged too.
    let mut monitor = MonitorServiceClient::new(channel.clone());
    let scrape_count = |overview: &monitor_pb::GetOverviewResponse| {
        overview
            .services
            .iter()
            .find(|service| service.service == "xiaowo")
            .and_then(|service| service.last_scrape_time)
    };
    let hour_over =
        scrape_count(&monitor.get_overview(admin(monitor_pb::GetOverviewRequest {})).await.unwrap().into_inner());
    let mut later = 0;
    eventually("three scrapes after the hour", async || {
        let now =
            scrape_count(&monitor.get_overview(admin(monitor_pb::GetOverviewRequest {})).await.unwrap().into_inner());
        if now != hour_over {
            later += 1;
        }
        later >= 3
    })
    .await;
    let raised: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|change| OUTCOME_RULES.iter().any(|rule| change.starts_with(&format!("{rule} "))))
        .cloned()
        .collect();
    assert_eq!(raised, Vec::<String>::new(), "alerts during a normal hour");
    recorder.abort();

    // The refusals were seen, as refusals; none of them, nor the closed streams, as errors.
    let series = |metric: &str| {
        let request = monitor_pb::QueryMetricRequest {
            service: "xiaowo".to_owned(),
            metric: metric.to_owned(),
            step: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
            ..Default::default()
        };
        let mut monitor = monitor.clone();
        async move { monitor.query_metric(admin(request)).await.unwrap().into_inner().points }
    };
    let refused = series("refused_per_second").await;
    assert!(refused.iter().any(|point| point.value > 0.0), "refusals counted: {refused:?}");
    let errors = series("error_ratio").await;
    assert!(!errors.is_empty() && errors.iter().all(|point| point.value == 0.0), "server errors: {errors:?}");
}
