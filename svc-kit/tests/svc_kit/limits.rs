//! The server's connection and stream limits under exhaustion: a connection full of open
//! streams makes only its own further calls wait, a client address over its connection limit
//! is refused and counted, and everyone else is served throughout. A real server on a loopback
//! port, reached through real HTTP/2 connections; its health service's `Watch` stream is the
//! long-lived call.

use std::net::SocketAddr;
use std::time::Duration;

use svc_kit::server::{Assembly, ServerConfig};
use svc_kit::testing::TestServer;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const PATIENCE: Duration = Duration::from_secs(10);

async fn server(configure: impl FnOnce(&mut ServerConfig)) -> TestServer {
    let mut config: ServerConfig = svc_kit::testing::from_env();
    config.shutdown_grace = Duration::from_secs(1);
    configure(&mut config);
    let assembly =
        Assembly::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config, CancellationToken::new()).await.unwrap();
    TestServer::spawn(assembly)
}

/// One HTTP/2 connection, opened now.
async fn connection(server: &TestServer) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(server.url.clone()).unwrap().connect_timeout(PATIENCE).connect().await
}

async fn check(channel: &Channel) -> Result<HealthCheckResponse, tonic::Status> {
    let mut client = HealthClient::new(channel.clone());
    let call = client.check(HealthCheckRequest { service: String::new() });
    Ok(tokio::time::timeout(PATIENCE, call)
        .await
        .map_err(|_| tonic::Status::deadline_exceeded("no answer"))??
        .into_inner())
}

async fn open_watch(channel: &Channel) -> tonic::Streaming<HealthCheckResponse> {
    let mut client = HealthClient::new(channel.clone());
    let mut stream = client.watch(HealthCheckRequest { service: String::new() }).await.unwrap().into_inner();
    stream.message().await.unwrap().expect("the current status first");
    stream
}

/// `GET /metrics` over a fresh HTTP/1.1 connection; empty when the connection is refused.
async fn metrics(server: &TestServer) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!("GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", server.addr);
    let mut body = String::new();
    if let Ok(mut stream) = tokio::net::TcpStream::connect(server.addr).await
        && stream.write_all(request.as_bytes()).await.is_ok()
        && stream.read_to_string(&mut body).await.is_err()
    {
        body.clear();
    }
    body
}

#[tokio::test]
async fn a_connection_full_of_streams_waits_alone_while_other_connections_are_served() {
    let server = server(|config| config.max_concurrent_streams = 4).await;
    let crowded = connection(&server).await.unwrap();
    let mut watches = Vec::new();
    for _ in 0..4 {
        watches.push(open_watch(&crowded).await);
    }

    let fifth = tokio::spawn({
        let crowded = crowded.clone();
        async move { check(&crowded).await }
    });
    let other = connection(&server).await.unwrap();
    assert!(check(&other).await.is_ok(), "another connection is served while one is full");
    // The other connection's answer came first; the fifth call on the full one is still waiting.
    assert!(!fifth.is_finished(), "the fifth stream waits for one of the four to end");

    drop(watches.pop());
    let answered = tokio::time::timeout(PATIENCE, fifth).await.expect("served once a stream ended").unwrap();
    assert!(answered.is_ok(), "{answered:?}");
}

#[tokio::test]
async fn connections_over_the_per_address_limit_are_refused_counted_and_the_rest_served() {
    let server = server(|config| config.max_connections_per_ip = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let channel = connection(&server).await.unwrap();
        check(&channel).await.unwrap();
        held.push(channel);
    }

    // The fourth connection from the same address is closed at once: its call cannot succeed.
    let refused = match connection(&server).await {
        Ok(channel) => check(&channel).await.expect_err("a fourth connection is not served"),
        Err(error) => tonic::Status::from_error(Box::new(error)),
    };
    // The client only sees its connection closed: tonic reports that as UNAVAILABLE or CANCELLED.
    assert!(matches!(refused.code(), tonic::Code::Unavailable | tonic::Code::Cancelled), "{refused:?}");
    for channel in &held {
        assert!(check(channel).await.is_ok(), "connections within the limit are still served");
    }

    // A closed connection gives its place back (the server notices the close shortly).
    drop(held.pop());
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let page = loop {
        let page = tokio::time::timeout(Duration::from_secs(1), metrics(&server)).await.unwrap_or_default();
        if page.contains("xiaowo_connections_refused_total") {
            break page;
        }
        assert!(tokio::time::Instant::now() < deadline, "no free place after a connection closed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let refused_total = page
        .lines()
        .find_map(|line| line.strip_prefix("xiaowo_connections_refused_total "))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .unwrap();
    assert!(refused_total >= 1, "the refusal is counted");
}
