//! The real `xiaowo` binary: `xiaowo up` on a free port answers health, reflection (through
//! the real grpcurl) and a session call, then exits cleanly on SIGTERM.

use std::process::Command;
use std::time::{Duration, Instant};

use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::helpers::{Up, grpcurl};

fn start_up() -> Up {
    crate::helpers::start_up(&["--shutdown-grace", "5s"], "smoke-admin", &[])
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
    let metrics = reqwest_metrics(&xiaowo.addr);
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

/// `GET /metrics` over a plain socket: the port also speaks ordinary HTTP/1.1.
fn reqwest_metrics(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
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
