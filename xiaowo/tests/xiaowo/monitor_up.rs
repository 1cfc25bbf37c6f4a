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
