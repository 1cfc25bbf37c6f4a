//! The real `xiaowo` binary: `xiaowo up` on a free port answers health, reflection (through
//! the real grpcurl) and a session call, then exits cleanly on SIGTERM.

use std::process::Command;
use std::time::{Duration, Instant};

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{Up, grpcurl};

fn start_up() -> Up {
    // The access log on the console (its `stderr` alias), where the test reads it.
    crate::helpers::start_up(&["--shutdown-grace", "5s", "--access-log", "stderr"], "smoke-admin", &[])
}

#[tokio::test]
async fn up_serves_health_reflection_and_sessions_then_stops_on_sigterm() {
    let mut xiaowo = start_up();
    let url = format!("http://{}", xiaowo.addr);

    let mut health = HealthClient::new(svc_kit::peer::channel(&url, Duration::from_secs(5)).unwrap());
    for service in ["", "xiaowo.session.v1.SessionService"] {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest { service: service.to_owned() })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service:?}");
    }

    let services = grpcurl(&["-plaintext", &xiaowo.addr, "list"]);
    for expected in
        ["xiaowo.session.v1.SessionService", "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"]
    {
        assert!(services.lines().any(|line| line == expected), "{expected} missing from:\n{services}");
    }
    let created = grpcurl(&[
        "-plaintext",
        "-d",
        r#"{"display_name": "smoke"}"#,
        &xiaowo.addr,
        "xiaowo.session.v1.SessionService/CreateSession",
    ]);
    assert!(created.contains("\"displayName\": \"smoke\""), "{created}");
    // The port also speaks ordinary HTTP/1.1.
    let (status, metrics) = http_get(&xiaowo.addr, "/metrics", "");
    assert_eq!(status, 200, "{metrics}");
    assert!(metrics.contains("xiaowo_grpc_requests_total{code=\"OK\",method=\"CreateSession\""), "{metrics}");
    // The access log has the call, with its status, latency and peer.
    let access = xiaowo.process.wait_for_log(&[
        "xiaowo::access",
        "method=CreateSession",
        "OK",
        "latency_ms=",
        "peer=127.0.0.1:",
    ]);
    assert!(access.is_some(), "no access log line for CreateSession");

    drop(health);
    let pid = xiaowo.process.child().id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = xiaowo.process.child().try_wait().unwrap() {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "no exit within the grace period");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "exit status {status:?}");
}

/// The value of the first `"field": "value"` in grpcurl's JSON output.
fn json_string(output: &str, field: &str) -> String {
    let marker = format!("\"{field}\": \"");
    let start = output.find(&marker).unwrap_or_else(|| panic!("{field} missing from:\n{output}")) + marker.len();
    output[start..].split('"').next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn up_creates_lists_and_joins_rooms_over_grpcurl() {
    let xiaowo = start_up();
    let addr = xiaowo.addr.as_str();
    let session = |name: &str| {
        let created = grpcurl(&[
            "-plaintext",
            "-d",
            &format!(r#"{{"display_name": "{name}"}}"#),
            addr,
            "xiaowo.session.v1.SessionService/CreateSession",
        ]);
        format!("authorization: Bearer {}", json_string(&created, "token"))
    };
    let (ana, bo) = (session("Ana"), session("Bo"));

    let created = grpcurl(&[
        "-plaintext",
        "-H",
        &ana,
        "-d",
        r#"{"name": "Movie night", "password": "popcorn!", "control_mode": "CONTROL_MODE_MODERATORS"}"#,
        addr,
        "xiaowo.room.v1.RoomService/CreateRoom",
    ]);
    let room_id = json_string(&created, "roomId");

    let listed =
        grpcurl(&["-plaintext", "-H", &bo, "-d", r#"{"page_size": 10}"#, addr, "xiaowo.room.v1.RoomService/ListRooms"]);
    assert_eq!(json_string(&listed, "roomId"), room_id);
    assert!(listed.contains("\"hasPassword\": true"), "{listed}");
    assert!(listed.contains("\"memberCount\": 1"), "{listed}");

    let wrong = Command::new("grpcurl")
        .args(["-plaintext", "-H", &bo, "-d", &format!(r#"{{"room_id": "{room_id}", "password": "nachos!!"}}"#), addr])
        .arg("xiaowo.room.v1.RoomService/JoinRoom")
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("PermissionDenied"));

    let joined = grpcurl(&[
        "-plaintext",
        "-H",
        &bo,
        "-d",
        &format!(r#"{{"room_id": "{room_id}", "password": "popcorn!"}}"#),
        addr,
        "xiaowo.room.v1.RoomService/JoinRoom",
    ]);
    assert!(joined.contains("\"role\": \"ROLE_MEMBER\""), "{joined}");
    assert!(joined.contains("\"displayName\": \"Bo\""), "{joined}");
    let members = grpcurl(&[
        "-plaintext",
        "-H",
        &ana,
        "-d",
        &format!(r#"{{"room_id": "{room_id}"}}"#),
        addr,
        "xiaowo.room.v1.RoomService/ListMembers",
    ]);
    assert!(members.contains("\"displayName\": \"Ana\"") && members.contains("\"displayName\": \"Bo\""), "{members}");
}

/// `xiaowo up` over `data` with no admin token configured, the access log at its default.
fn start_first(data: &std::path::Path, web: &std::path::Path, args: &[&str]) -> (svc_kit::testing::Spawned, String) {
    let mut command = crate::helpers::xiaowo();
    command
        .args(["up", "--listen", "127.0.0.1:0", "--shutdown-grace", "2s"])
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .arg("--web-dir")
        .arg(web)
        .env_remove("XIAOWO_ADMIN_TOKEN")
        .env_remove("XIAOWO_ADMIN_TOKEN_FILE")
        .env_remove("XIAOWO_ACCESS_LOG");
    let process = svc_kit::testing::Spawned::start("xiaowo", command);
    let addr = process.next_addr().to_string();
    (process, addr)
}

/// A plain HTTP/1.1 GET of `path` with extra header lines; the status code and the body.
fn http_get(addr: &str, path: &str, headers: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}Connection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    (status, response)
}

/// The first start of a fresh install: the admin token is made in the data directory (mode
/// 0600, kept across restarts), the banner says what to open and where the token, the data
/// and the logs are; an admin call without the token names its file; the access log goes to
/// its file and not the console; `/metrics` is served to this host and the admin token only,
/// unless `--metrics-public`.
#[tokio::test]
async fn a_first_start_makes_the_admin_token_and_says_where_everything_is() {
    let data = tempfile::tempdir().unwrap();
    let web = tempfile::tempdir().unwrap();
    std::fs::write(web.path().join("index.html"), "<!doctype html><title>xiaowo</title>").unwrap();
    let (first, addr) = start_first(data.path(), web.path(), &[]);
    let data_dir = std::fs::canonicalize(data.path()).unwrap();
    let token_path = data_dir.join("admin.token");
    let access_path = data_dir.join("logs").join("access.log");

    for parts in [
        vec!["Open", &format!("http://{addr}")],
        vec!["Admin", &format!("http://{addr}/admin"), &token_path.display().to_string(), "created now"],
        vec!["Data", &data_dir.display().to_string()],
        vec!["Services", "session, room, sync, chat, monitor"],
        vec!["Logs", &access_path.display().to_string()],
    ] {
        assert!(first.wait_for_log(&parts).is_some(), "no banner line with {parts:?}");
    }
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&token_path).unwrap().permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_path).unwrap().trim().to_owned();
    assert!(token.len() >= 32, "a strong token: {token:?}");

    let channel = svc_kit::peer::channel(&format!("http://{addr}"), Duration::from_secs(5)).unwrap();
    let mut admin = proto::session::v1::session_admin_service_client::SessionAdminServiceClient::new(channel);
    let list = || proto::session::v1::ListSessionsRequest { page_size: 10, ..Default::default() };
    let refused = admin.list_sessions(list()).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    assert_eq!(refused.message(), format!("admin token required (see {})", token_path.display()));
    let mut wrong = tonic::Request::new(list());
    wrong.metadata_mut().insert("authorization", "Bearer not-the-token".parse().unwrap());
    let wrong = admin.list_sessions(wrong).await.unwrap_err();
    assert_eq!(wrong.code(), tonic::Code::PermissionDenied);
    assert!(wrong.message().contains(&token_path.display().to_string()), "{}", wrong.message());
    let mut allowed = tonic::Request::new(list());
    allowed.metadata_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    admin.list_sessions(allowed).await.unwrap();

    // Every call is in the access log file, none on the console.
    svc_kit::testing::eventually("ListSessions in the access log file", async || {
        std::fs::read_to_string(&access_path).is_ok_and(|log| {
            log.lines().filter(|line| line.contains("method=ListSessions")).count() == 3
                && log.contains("code=\"PERMISSION_DENIED\"")
        })
    })
    .await;
    // Had they gone to the console, the file would not hold them; nor does the console.
    assert_eq!(first.logged(&["xiaowo::access"]), None, "an access line on the console");

    // /metrics: this host, or the admin token. A client a trusted proxy on this host forwards
    // is someone else.
    assert_eq!(http_get(&addr, "/metrics", "").0, 200);
    let (status, body) = http_get(&addr, "/metrics", "X-Forwarded-For: 203.0.113.9\r\n");
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("--metrics-public"), "{body}");
    let bearer = format!("X-Forwarded-For: 203.0.113.9\r\nAuthorization: Bearer {token}\r\n");
    assert_eq!(http_get(&addr, "/metrics", &bearer).0, 200);
    drop(first);

    // A restart keeps the token, says so without "created now", and --metrics-public opens
    // /metrics to everyone.
    let (again, addr) = start_first(data.path(), web.path(), &["--metrics-public"]);
    let admin_line = again.wait_for_log(&["Admin", &token_path.display().to_string()]).unwrap();
    assert!(!admin_line.contains("created now"), "{admin_line}");
    assert_eq!(std::fs::read_to_string(&token_path).unwrap().trim(), token);
    assert_eq!(http_get(&addr, "/metrics", "X-Forwarded-For: 203.0.113.9\r\n").0, 200);
}
