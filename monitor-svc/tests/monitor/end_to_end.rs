//! Scraping, aggregation, rules, alerts and their notifications, retention, and the API.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use monitor_svc::aggregate::Snapshot;
use monitor_svc::rules::RulesError;
use monitor_svc::{Monitor, ScrapeTarget};
use proto::monitor::v1 as pb;
use proto::monitor::v1::monitor_service_client::MonitorServiceClient;
use proto::session::v1 as session_pb;
use proto::session::v1::session_service_client::SessionServiceClient;
use serde_json::Value;
use svc_kit::clock::ManualClock;
use svc_kit::service::BuildError;
use tonic::transport::Channel;
use tonic::{Code, Request};
use tonic_types::StatusExt;
use xiaowo::node::{StartError, Target};
use xiaowo::testing::{ADMIN_TOKEN, Node, START_MS, Stack, any_port};

const WAIT: Duration = svc_kit::testing::PATIENCE;

/// A real session-svc to scrape (on the system clock), and the stack that holds its database.
async fn start_session() -> (Node, Stack) {
    let stack = Stack::new().await.on_system_clock();
    (stack.start(&[Target::Session]).await, stack)
}

/// Calls session-svc with a token it never issued, `count` times: refused authentications.
async fn refused_logins(session: &Node, count: usize) {
    let mut client = SessionServiceClient::new(session.channel());
    for _ in 0..count {
        let mut request = Request::new(session_pb::GetSessionRequest {});
        request.metadata_mut().insert("authorization", "Bearer not-a-real-token".parse().unwrap());
        let status = client.get_session(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
}

/// An HTTP server that records every POSTed JSON body with its path, answering 500 to the
/// first `failures` requests.
struct Receiver {
    url: String,
    posts: Arc<Mutex<Vec<(String, Value)>>>,
    failures_left: Arc<AtomicU32>,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ReceiverState {
    posts: Arc<Mutex<Vec<(String, Value)>>>,
    failures_left: Arc<AtomicU32>,
}

async fn record(State(state): State<ReceiverState>, Path(path): Path<String>, body: axum::body::Bytes) -> StatusCode {
    if state.failures_left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1)).is_ok() {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.posts.lock().unwrap().push((path, value));
    StatusCode::NO_CONTENT
}

impl Receiver {
    async fn start(failures: u32) -> Self {
        let posts = Arc::new(Mutex::new(Vec::new()));
        let failures_left = Arc::new(AtomicU32::new(failures));
        let state = ReceiverState { posts: Arc::clone(&posts), failures_left: Arc::clone(&failures_left) };
        let app = axum::Router::new().route("/{*path}", axum::routing::post(record)).with_state(state);
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { url, posts, failures_left, _server: server }
    }

    fn posts(&self, path: &str) -> Vec<Value> {
        self.posts.lock().unwrap().iter().filter(|(at, _)| at == path).map(|(_, body)| body.clone()).collect()
    }

    async fn wait_for(&self, path: &str, count: usize) -> Vec<Value> {
        tokio::time::timeout(WAIT, async {
            loop {
                let posts = self.posts(path);
                if posts.len() >= count {
                    return posts;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{count} posts to /{path} expected, got {:?}", self.posts(path)))
    }
}

/// aiosmtpd on a loopback port, recording messages to a file; killed when dropped.
struct SmtpServer {
    child: Child,
    port: u16,
    messages: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmtpServer {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let messages = dir.path().join("messages.jsonl");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_recorder.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&messages)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 with aiosmtpd (scripts/test.sh installs it)");
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
        assert_eq!(ready.trim(), "ready", "aiosmtpd did not start (pip install aiosmtpd)");
        Self { child, port, messages, _dir: dir }
    }

    fn messages(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.messages)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    async fn wait_for(&self, count: usize) -> Vec<Value> {
        tokio::time::timeout(WAIT, async {
            loop {
                let messages = self.messages();
                if messages.len() >= count {
                    return messages;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("{count} e-mails expected, got {:?}", self.messages()))
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct MonitorApp {
    server: Node,
    monitor: Arc<Monitor>,
    clock: Arc<ManualClock>,
    _stack: Stack,
}

fn test_config() -> monitor_svc::Config {
    let mut config: monitor_svc::Config = svc_kit::testing::from_env();
    // Rounds are run by the tests, at the manual clock's time.
    config.scrape_interval = Duration::from_secs(3600);
    config.scrape_timeout = Duration::from_secs(2);
    config.notify_attempts = 3;
    config.notify_backoff = Duration::from_millis(50);
    config.notify_timeout = Duration::from_secs(2);
    // Purges are run by the tests too: the background janitor's first purge, late on a busy
    // machine, would otherwise see the manual clock days ahead and delete what a test counts.
    config.janitor_interval = Duration::from_secs(3600);
    config.retention = Duration::from_secs(10 * 365 * 86_400);
    config
}

/// monitor-svc scraping `targets` (none: the defaults), with `rules` and `configure` applied,
/// on a manual clock; rounds are run by the test through the `Monitor` it exposes.
async fn start_monitor(
    targets: Vec<ScrapeTarget>,
    rules: Option<&str>,
    configure: impl FnOnce(&mut monitor_svc::Config),
) -> Result<MonitorApp, StartError> {
    let stack = Stack::new().await;
    let mut config = test_config();
    if let Some(rules) = rules {
        let path = stack.dir().join("rules.toml");
        std::fs::write(&path, rules).unwrap();
        config.rules_file = Some(path);
    }
    config.targets = targets;
    configure(&mut config);
    let server = stack.try_start(any_port(), &[Target::Monitor], None, |common| common.monitor = config).await?;
    let monitor = server.exposed::<Arc<Monitor>>();
    let clock = Arc::clone(&stack.clock);
    Ok(MonitorApp { server, monitor, clock, _stack: stack })
}

/// The rules error that stopped monitor-svc from starting.
fn rules_error(result: Result<MonitorApp, StartError>) -> RulesError {
    match result {
        Err(StartError::Build { service: "monitor", source: BuildError::Config(error) }) => {
            *error.downcast::<RulesError>().expect("a rules error")
        }
        Err(other) => panic!("not a rules error: {other}"),
        Ok(_) => panic!("monitor-svc started"),
    }
}

impl MonitorApp {
    fn client(&self) -> MonitorServiceClient<Channel> {
        MonitorServiceClient::new(self.server.channel())
    }

    async fn round_after(&self, elapsed: Duration) {
        self.clock.advance(elapsed);
        self.monitor.collect_once().await.unwrap();
    }

    async fn alerts(&self, state: pb::AlertState) -> Vec<pb::Alert> {
        let request = admin(pb::ListAlertsRequest { state: state.into(), page_size: 0, page_token: String::new() });
        self.client().list_alerts(request).await.unwrap().into_inner().alerts
    }
}

fn admin<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse().unwrap());
    request
}

fn target(name: &str, server: &Node) -> ScrapeTarget {
    ScrapeTarget { name: name.to_owned(), url: server.url.clone() }
}

/// `promtool check metrics` (Debian's `prometheus` package; scripts/test.sh installs it)
/// finds nothing wrong with an exposition page.
fn assert_promtool_accepts(page: &[u8]) {
    use std::io::Write;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool on PATH (apt-get install prometheus)");
    promtool.stdin.take().unwrap().write_all(page).unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn figure(overview: &pb::ServiceOverview, name: &str) -> f64 {
    *overview.figures.get(name).unwrap_or_else(|| panic!("{name} missing from {:?}", overview.figures))
}

const AUTH_BURST_RULES: &str = r#"
[[rules]]
name = "AuthFailureBurst"
metric = "xiaowo_auth_failures_total:rate"
service = "session"
comparison = ">"
threshold = 0.1
for = "30s"
severity = "critical"
message = "refused logins"
"#;

#[tokio::test]
async fn real_session_metrics_are_parsed_aggregated_stored_and_queried() {
    let (session, _session_dir) = start_session().await;
    let app = start_monitor(vec![target("session", &session)], None, |_| {}).await.unwrap();

    // The exposition of our own server parses, with the series the aggregation relies on.
    refused_logins(&session, 1).await;
    let body = monitor_svc::http::HttpClient::new()
        .get(&format!("{}/metrics", session.url), Duration::from_secs(5))
        .await
        .unwrap();
    let snapshot = Snapshot::parse(std::str::from_utf8(&body).unwrap(), START_MS).unwrap();
    assert_promtool_accepts(&body);
    for metric in [
        "xiaowo_grpc_requests_total",
        "xiaowo_grpc_request_duration_seconds",
        "xiaowo_auth_failures_total",
        "process_resident_memory_bytes",
    ] {
        assert!(snapshot.has(metric), "{metric} missing");
    }

    app.round_after(Duration::ZERO).await;
    refused_logins(&session, 20).await;
    app.round_after(Duration::from_secs(10)).await;

    let overview = app.client().get_overview(admin(pb::GetOverviewRequest {})).await.unwrap().into_inner();
    let [status] = overview.services.as_slice() else { panic!("one target expected") };
    assert_eq!(status.service, "session");
    assert!(status.up);
    assert_eq!(proto::ms_from_timestamp(status.last_scrape_time.as_ref().unwrap()), START_MS + 10_000);
    // 20 refused calls in 10 s (the counter only counts ours).
    assert!((figure(status, "xiaowo_auth_failures_total:rate") - 2.0).abs() < 1e-9);
    // At least those 20 calls, all UNAUTHENTICATED, plus the scrape-free gRPC calls.
    assert!(figure(status, "requests_per_second") >= 2.0);
    // Refused callers are not server errors; they are counted as refusals.
    assert!(figure(status, "error_ratio").abs() < 1e-9);
    assert!(figure(status, "refused_per_second") >= 2.0);
    assert!(figure(status, "resident_memory_bytes") > 0.0);
    assert!(figure(status, "latency_p99_seconds") > 0.0);
    assert!(figure(status, "xiaowo_sessions_live") >= 0.0);
    // The scrape's own connection at least.
    assert!(figure(status, "xiaowo_open_connections") >= 1.0);

    let query = |metric: &str, step_secs: i64| {
        admin(pb::QueryMetricRequest {
            service: "session".to_owned(),
            metric: metric.to_owned(),
            start_time: Some(proto::timestamp_from_ms(START_MS)),
            end_time: Some(proto::timestamp_from_ms(START_MS + 60_000)),
            step: Some(prost_types::Duration { seconds: step_secs, nanos: 0 }),
        })
    };
    let up = app.client().query_metric(query("up", 5)).await.unwrap().into_inner().points;
    let times: Vec<i64> = up.iter().map(|point| proto::ms_from_timestamp(point.time.as_ref().unwrap())).collect();
    assert_eq!(times, [START_MS, START_MS + 10_000]);
    assert!(up.iter().all(|point| (point.value - 1.0).abs() < f64::EPSILON));
    // One bucket spanning both rounds averages them.
    let averaged = app.client().query_metric(query("up", 60)).await.unwrap().into_inner().points;
    assert_eq!(averaged.len(), 1);
    let rate = app.client().query_metric(query("xiaowo_auth_failures_total:rate", 5)).await.unwrap().into_inner();
    assert_eq!(rate.points.len(), 1, "a rate needs two scrapes");

    // No times: the last hour as of the monitor's clock, in buckets of a minute.
    let last_hour =
        admin(pb::QueryMetricRequest { service: "session".to_owned(), metric: "up".to_owned(), ..Default::default() });
    let recent = app.client().query_metric(last_hour).await.unwrap().into_inner().points;
    let now = START_MS + 10_000;
    let times: Vec<i64> = recent.iter().map(|point| proto::ms_from_timestamp(point.time.as_ref().unwrap())).collect();
    assert!(!times.is_empty(), "the scrapes of the last hour");
    assert!(
        times.iter().all(|at| (now - 3_600_000..=now).contains(at) && (at - (now - 3_600_000)) % 60_000 == 0),
        "{times:?}"
    );
}

#[tokio::test]
async fn a_burst_goes_pending_then_firing_then_resolved_and_is_sent_everywhere() {
    let (session, _session_dir) = start_session().await;
    let receiver = Receiver::start(0).await;
    let smtp = SmtpServer::start();
    let app = start_monitor(vec![target("session", &session)], Some(AUTH_BURST_RULES), |config| {
        config.webhook_url = Some(format!("{}/hook", receiver.url));
        config.sms_gateway_url = Some(format!("{}/sms", receiver.url));
        config.sms_to = vec!["+8613800000000".to_owned()];
        config.smtp_server = Some(format!("127.0.0.1:{}", smtp.port));
        config.smtp_to = vec!["ops@example.org".to_owned()];
    })
    .await
    .unwrap();
    let mut stream = app.client().watch_alerts(admin(pb::WatchAlertsRequest {})).await.unwrap().into_inner();

    app.round_after(Duration::ZERO).await;
    refused_logins(&session, 5).await;
    app.round_after(Duration::from_secs(10)).await;
    let pending = app.alerts(pb::AlertState::Pending).await;
    assert_eq!(pending.len(), 1, "0.5 refusals/s holds, but not yet for 30 s");
    assert!(receiver.posts("hook").is_empty(), "nobody is told about a pending alert");

    refused_logins(&session, 5).await;
    app.round_after(Duration::from_secs(30)).await;
    let firing = app.alerts(pb::AlertState::Firing).await;
    let [alert] = firing.as_slice() else { panic!("one firing alert expected, got {firing:?}") };
    assert_eq!((alert.rule.as_str(), alert.service.as_str()), ("AuthFailureBurst", "session"));
    assert_eq!(alert.severity(), pb::Severity::Critical);
    assert_eq!(proto::ms_from_timestamp(alert.fire_time.as_ref().unwrap()), START_MS + 40_000);

    let hooks = receiver.wait_for("hook", 1).await;
    assert_eq!(hooks[0]["status"], "firing");
    assert_eq!(hooks[0]["rule"], "AuthFailureBurst");
    assert_eq!(hooks[0]["alert_id"], alert.alert_id);
    let sms = receiver.wait_for("sms", 1).await;
    assert_eq!(sms[0]["to"][0], "+8613800000000");
    let mails = smtp.wait_for(1).await;
    assert_eq!(mails[0]["to"][0], "ops@example.org");
    assert!(mails[0]["data"].as_str().unwrap().contains("AuthFailureBurst"));

    // Still bursting: no second notification while it stays firing.
    refused_logins(&session, 10).await;
    app.round_after(Duration::from_secs(10)).await;
    // Quiet again: resolved, and that is announced once.
    app.round_after(Duration::from_secs(10)).await;
    let hooks = receiver.wait_for("hook", 2).await;
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    assert_eq!(hooks[1]["status"], "resolved");
    smtp.wait_for(2).await;
    let resolved = app.alerts(pb::AlertState::Resolved).await;
    assert_eq!(resolved.len(), 1);
    assert_eq!(proto::ms_from_timestamp(resolved[0].resolve_time.as_ref().unwrap()), START_MS + 60_000);
    assert!(app.alerts(pb::AlertState::Firing).await.is_empty());

    // The stream saw every change, in order.
    let mut states = Vec::new();
    for _ in 0..3 {
        let message = tokio::time::timeout(WAIT, stream.message()).await.unwrap().unwrap().unwrap();
        assert!(!message.snapshot);
        states.push(message.alert.unwrap().state());
    }
    assert_eq!(states, [pb::AlertState::Pending, pb::AlertState::Firing, pb::AlertState::Resolved]);

    // Every delivery was recorded.
    let deliveries = app.monitor.deliveries(alert.alert_id).await.unwrap();
    tokio::time::timeout(WAIT, async {
        while app.monitor.deliveries(alert.alert_id).await.unwrap().len() < 6 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("6 deliveries expected, got {deliveries:?}"));
    let deliveries = app.monitor.deliveries(alert.alert_id).await.unwrap();
    assert!(deliveries.iter().all(|(_, _, delivered)| *delivered), "{deliveries:?}");

    // The stream ends when the server shuts down.
    app.server.stop().await;
    let end = tokio::time::timeout(WAIT, stream.message()).await.expect("stream ended");
    assert!(!matches!(end, Ok(Some(_))), "no more alerts after shutdown");
}

#[tokio::test]
async fn a_target_going_down_raises_an_alert_and_the_overview_shows_it() {
    let (session, _session_dir) = start_session().await;
    let receiver = Receiver::start(0).await;
    let rules = r#"
[[rules]]
name = "TargetDown"
metric = "up"
comparison = "<"
threshold = 1
severity = "critical"
message = "down"
"#;
    let app = start_monitor(vec![target("session", &session)], Some(rules), |config| {
        config.webhook_url = Some(format!("{}/hook", receiver.url));
    })
    .await
    .unwrap();
    app.round_after(Duration::ZERO).await;
    assert!(app.alerts(pb::AlertState::Unspecified).await.is_empty());

    session.stop().await;
    app.round_after(Duration::from_secs(15)).await;

    let overview = app.client().get_overview(admin(pb::GetOverviewRequest {})).await.unwrap().into_inner();
    assert!(!overview.services[0].up);
    assert!((figure(&overview.services[0], "up")).abs() < f64::EPSILON);
    let [alert] = overview.firing_alerts.as_slice() else { panic!("one firing alert expected") };
    assert_eq!(alert.rule, "TargetDown");
    let hooks = receiver.wait_for("hook", 1).await;
    assert_eq!(hooks[0]["status"], "firing");
    assert_eq!(hooks[0]["service"], "session");
}

#[tokio::test]
async fn a_failing_channel_is_retried_and_recorded_without_holding_up_collection() {
    let (session, _session_dir) = start_session().await;
    // The webhook answers 500 twice, then accepts; nothing listens on the SMTP port.
    let receiver = Receiver::start(2).await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let rules = AUTH_BURST_RULES.replace("for = \"30s\"", "for = \"0s\"");
    let app = start_monitor(vec![target("session", &session)], Some(&rules), |config| {
        config.webhook_url = Some(format!("{}/hook", receiver.url));
        config.smtp_server = Some(format!("127.0.0.1:{closed_port}"));
        config.smtp_to = vec!["ops@example.org".to_owned()];
    })
    .await
    .unwrap();

    app.round_after(Duration::ZERO).await;
    refused_logins(&session, 5).await;
    app.round_after(Duration::from_secs(10)).await;
    // Collection carries on while deliveries are retried.
    app.round_after(Duration::from_secs(10)).await;
    let [alert] = app.alerts(pb::AlertState::Unspecified).await.try_into().unwrap();

    let hooks = receiver.wait_for("hook", 1).await;
    assert_eq!(hooks[0]["status"], "firing");
    assert_eq!(receiver.failures_left.load(Ordering::SeqCst), 0, "two failed tries came first");
    let deliveries = tokio::time::timeout(WAIT, async {
        loop {
            let deliveries = app.monitor.deliveries(alert.alert_id).await.unwrap();
            if deliveries.len() >= 3 {
                return deliveries;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    let outcome = |channel: &str, event: &str| {
        deliveries.iter().find(|(at, what, _)| at == channel && what == event).map(|(_, _, delivered)| *delivered)
    };
    assert_eq!(outcome("webhook", "firing"), Some(true));
    assert_eq!(outcome("email", "firing"), Some(false));
    assert_eq!(outcome("webhook", "resolved"), Some(true));
}

#[tokio::test]
async fn retention_deletes_old_rows() {
    let (session, _session_dir) = start_session().await;
    let app = start_monitor(vec![target("session", &session)], None, |_| {}).await.unwrap();
    app.round_after(Duration::ZERO).await;
    app.round_after(Duration::from_secs(8 * 86_400)).await;
    let all = || app.monitor.raw_samples("session", "up", 0, i64::MAX);
    assert_eq!(all().await.unwrap().len(), 2);

    let deleted = app.monitor.purge(Duration::from_secs(7 * 86_400)).await.unwrap();
    assert!(deleted > 0);
    let kept = all().await.unwrap();
    assert_eq!(kept, [(START_MS + 8 * 86_400_000, 1.0)]);
}

#[tokio::test]
async fn invalid_rule_files_are_refused_naming_the_problem() {
    let bad_threshold = AUTH_BURST_RULES.replace("comparison = \">\"", "comparison = \"more\"");
    // A service must be a scrape target or a domain: "nowhere" is neither.
    let unknown_service = AUTH_BURST_RULES.replace("service = \"session\"", "service = \"nowhere\"");
    let result = start_monitor(Vec::new(), Some(&unknown_service), |_| {}).await;
    assert!(matches!(rules_error(result), RulesError::Invalid { field: "service", .. }));

    let targets = vec![ScrapeTarget { name: "session".to_owned(), url: "http://127.0.0.1:9".to_owned() }];
    let result = start_monitor(targets.clone(), Some(&bad_threshold), |_| {}).await;
    assert!(matches!(rules_error(result), RulesError::Invalid { field: "comparison", .. }));

    let unknown_metric = AUTH_BURST_RULES.replace("xiaowo_auth_failures_total:rate", "xiaowo_no_such_thing");
    let result = start_monitor(targets.clone(), Some(&unknown_metric), |_| {}).await;
    assert!(matches!(rules_error(result), RulesError::Invalid { field: "metric", .. }));

    let result = start_monitor(targets, Some("[[rules]]\nname = 3\n"), |_| {}).await;
    assert!(matches!(rules_error(result), RulesError::Syntax { .. }));
}

#[tokio::test]
async fn calls_need_the_admin_token_and_valid_arguments() {
    let (session, _session_dir) = start_session().await;
    let app = start_monitor(vec![target("session", &session)], None, |_| {}).await.unwrap();
    let mut client = app.client();

    let status = client.list_rules(pb::ListRulesRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let mut wrong = Request::new(pb::GetOverviewRequest {});
    wrong.metadata_mut().insert("authorization", "Bearer nope".parse().unwrap());
    assert_eq!(client.get_overview(wrong).await.unwrap_err().code(), Code::PermissionDenied);

    let rules = client.list_rules(admin(pb::ListRulesRequest {})).await.unwrap().into_inner().rules;
    let down = rules.iter().find(|rule| rule.name == "TargetDown").expect("default rules");
    assert_eq!(down.comparison(), pb::Comparison::Less);
    assert_eq!(down.for_duration.as_ref().unwrap().seconds, 30);

    let bad_query = admin(pb::QueryMetricRequest {
        service: "nowhere".to_owned(),
        metric: "no_such_metric".to_owned(),
        start_time: Some(proto::timestamp_from_ms(START_MS)),
        end_time: Some(proto::timestamp_from_ms(START_MS - 1)),
        step: Some(prost_types::Duration { seconds: 0, nanos: 1000 }),
    });
    let status = client.query_metric(bad_query).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let mut fields: Vec<String> = status
        .get_details_bad_request()
        .unwrap()
        .field_violations
        .into_iter()
        .map(|violation| violation.field)
        .collect();
    fields.sort();
    assert_eq!(fields, ["end_time", "metric", "service", "step"]);

    let too_many = admin(pb::QueryMetricRequest {
        service: "session".to_owned(),
        metric: "up".to_owned(),
        start_time: Some(proto::timestamp_from_ms(START_MS)),
        end_time: Some(proto::timestamp_from_ms(START_MS + 86_400_000)),
        step: Some(prost_types::Duration { seconds: 1, nanos: 0 }),
    });
    assert_eq!(client.query_metric(too_many).await.unwrap_err().code(), Code::InvalidArgument);

    for (page_size, page_token) in [(501, ""), (-1, ""), (10, "abc")] {
        let request = admin(pb::ListAlertsRequest { state: 0, page_size, page_token: page_token.to_owned() });
        assert_eq!(client.list_alerts(request).await.unwrap_err().code(), Code::InvalidArgument);
    }
    let unknown_state = admin(pb::ListAlertsRequest { state: 42, page_size: 0, page_token: String::new() });
    assert_eq!(client.list_alerts(unknown_state).await.unwrap_err().code(), Code::InvalidArgument);
}
