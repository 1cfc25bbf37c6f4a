//! Hostile input against the real `xiaowo up` binary (every service on one port, as a
//! single-machine install serves them): malformed and oversized protobuf, broken gRPC and
//! gRPC-web framing, wrong content types, SQL-injection strings in every text field, forged,
//! expired, revoked and borrowed tokens, members acting outside their room or role, password
//! guessing, cookie attributes, and the page's security headers. Plus a scan of the sources
//! proving that no query is built from raw strings outside a reviewed list.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use prost::Message;
use proto::chat::v1 as chat;
use proto::room::v1 as room;
use proto::session::v1 as session;
use proto::sync::v1 as sync;
use svc_kit::testing::{code, eventually, with_bearer};
use tonic::Code;
use tonic::transport::Channel;

use crate::helpers::Up;

const ADMIN_TOKEN: &str = "security-admin-token";
/// The request size limit the server is started with, so that "too large" is cheap to send.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Starts `xiaowo up` on port 0 with a stand-in web client and `extra` flags.
pub(crate) fn start_up(extra: &[&str]) -> Up {
    let max_message = MAX_MESSAGE_BYTES.to_string();
    let mut args = vec!["--shutdown-grace", "2s", "--max-message-bytes", &max_message];
    args.extend(["--session-create-burst", "1000", "--chat-flood-burst", "1000", "--sync-command-burst", "1000"]);
    args.extend(["--room-creates-per-caller", "0", "--room-max-open-per-owner", "0"]);
    args.extend(extra);
    crate::helpers::start_up(&args, ADMIN_TOKEN, &[("XIAOWO_LOG", "warn,xiaowo=info,svc_kit=info")])
}

impl Up {
    pub(crate) async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.addr)).unwrap().connect().await.unwrap()
    }
}

pub(crate) struct User {
    pub(crate) token: String,
    pub(crate) user_id: String,
}

pub(crate) async fn user(channel: &Channel, display_name: &str) -> User {
    let created = session::session_service_client::SessionServiceClient::new(channel.clone())
        .create_session(session::CreateSessionRequest { display_name: display_name.to_owned() })
        .await
        .unwrap()
        .into_inner();
    User { token: created.token, user_id: created.session.unwrap().user_id }
}

fn sessions(channel: &Channel) -> session::session_service_client::SessionServiceClient<Channel> {
    session::session_service_client::SessionServiceClient::new(channel.clone())
}
pub(crate) fn rooms(channel: &Channel) -> room::room_service_client::RoomServiceClient<Channel> {
    room::room_service_client::RoomServiceClient::new(channel.clone())
}
pub(crate) fn chats(channel: &Channel) -> chat::chat_service_client::ChatServiceClient<Channel> {
    chat::chat_service_client::ChatServiceClient::new(channel.clone())
}
pub(crate) fn syncs(channel: &Channel) -> sync::sync_service_client::SyncServiceClient<Channel> {
    sync::sync_service_client::SyncServiceClient::new(channel.clone())
}

pub(crate) async fn open_room(channel: &Channel, owner: &User, request: room::CreateRoomRequest) -> room::Room {
    rooms(channel).create_room(with_bearer(request, &owner.token)).await.unwrap().into_inner().room.unwrap()
}

pub(crate) async fn join(
    channel: &Channel,
    member: &User,
    room_id: &str,
    password: &str,
) -> Result<room::JoinRoomResponse, Code> {
    let request = room::JoinRoomRequest { room_id: room_id.to_owned(), password: password.to_owned() };
    rooms(channel)
        .join_room(with_bearer(request, &member.token))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| s.code())
}

async fn audit(channel: &Channel, room_id: &str) -> Vec<room::AuditLog> {
    let mut request = tonic::Request::new(room::ListAuditLogsRequest {
        room_id: room_id.to_owned(),
        page_size: 500,
        ..Default::default()
    });
    request.metadata_mut().insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse().unwrap());
    room::room_admin_service_client::RoomAdminServiceClient::new(channel.clone())
        .list_audit_logs(request)
        .await
        .unwrap()
        .into_inner()
        .audit_logs
}

/// A gRPC length-prefixed message: `flag`, the length it claims, then `payload`.
fn frame(flag: u8, claimed_len: u32, payload: &[u8]) -> Vec<u8> {
    let mut framed = vec![flag];
    framed.extend_from_slice(&claimed_len.to_be_bytes());
    framed.extend_from_slice(payload);
    framed
}

pub(crate) fn framed(payload: &[u8]) -> Vec<u8> {
    frame(0, u32::try_from(payload.len()).unwrap(), payload)
}

/// One HTTP/2 POST with exactly these bytes: the HTTP status and the `grpc-status` (from the
/// headers of a trailers-only answer, else from the trailers).
async fn raw_h2(up: &Up, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Option<i32>) {
    use tower::ServiceExt;
    let mut request =
        http::Request::builder().method("POST").uri(format!("http://{}{path}", up.addr)).header("te", "trailers");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let body = tonic::body::Body::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    let response = up.channel().await.oneshot(request.body(body).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let grpc_status = |headers: &http::HeaderMap| {
        headers.get("grpc-status").and_then(|value| value.to_str().ok()).and_then(|value| value.parse().ok())
    };
    if let Some(code) = grpc_status(response.headers()) {
        return (status, Some(code));
    }
    let collected = response.into_body().collect().await.unwrap();
    (status, collected.trailers().and_then(grpc_status))
}

/// One HTTP/1.1 exchange on a fresh connection: the status code and the `grpc-status` found
/// in the headers or in a gRPC-web trailer frame.
fn raw_h1(up: &Up, request: &[u8]) -> (u16, Option<i32>, String) {
    raw_h1_then(up, request, false)
}

/// [`raw_h1`], closing the write side after `request` when `end_input` (so that a body shorter
/// than announced ends at EOF).
fn raw_h1_then(up: &Up, request: &[u8], end_input: bool) -> (u16, Option<i32>, String) {
    let mut stream = TcpStream::connect(&up.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(request).unwrap();
    if end_input {
        let _ = stream.shutdown(Shutdown::Write);
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0);
    let lower = text.to_ascii_lowercase();
    let grpc_status = lower.find("grpc-status:").and_then(|at| {
        let digits: String =
            lower[at + "grpc-status:".len()..].trim_start().chars().take_while(char::is_ascii_digit).collect();
        digits.parse().ok()
    });
    (status, grpc_status, text)
}

fn grpc_web_post(up: &Up, path: &str, content_type: &str, body: &[u8], extra_headers: &str) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\nX-Grpc-Web: 1\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra_headers}\r\n",
        up.addr,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

const CREATE_SESSION: &str = "/xiaowo.session.v1.SessionService/CreateSession";
const CREATE_ROOM: &str = "/xiaowo.room.v1.RoomService/CreateRoom";
const SEND_MESSAGE: &str = "/xiaowo.chat.v1.ChatService/SendMessage";
const SEEK: &str = "/xiaowo.sync.v1.SyncService/Seek";
const GRPC: &[(&str, &str)] = &[("content-type", "application/grpc")];

/// Bytes that are not a protobuf message: field 1, length-delimited, with a length that runs
/// past the end of the buffer.
pub(crate) const NOT_PROTOBUF: &[u8] = &[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01];
/// A valid message whose string field 1 holds bytes that are not UTF-8.
const NOT_UTF8: &[u8] = &[0x0a, 0x03, 0xff, 0xfe, 0x41];

#[tokio::test]
async fn malformed_requests_get_clear_statuses_and_the_server_keeps_serving() {
    let up = start_up(&[]);
    let channel = up.channel().await;
    let ana = user(&channel, "Ana").await;
    let bearer = format!("Bearer {}", ana.token);
    let grpc_as_ana: &[(&str, &str)] = &[("content-type", "application/grpc"), ("authorization", &bearer)];
    let good_session = session::CreateSessionRequest { display_name: "Bo".to_owned() }.encode_to_vec();

    let mut observed = Vec::new();
    // Native gRPC over HTTP/2, for every service: undecodable bytes and bad UTF-8 are the caller's fault.
    for path in [CREATE_SESSION, CREATE_ROOM, SEND_MESSAGE, SEEK] {
        observed.push((
            format!("{path}: not protobuf"),
            raw_h2(&up, path, grpc_as_ana, framed(NOT_PROTOBUF)).await,
            Some(3),
        ));
        observed.push((format!("{path}: not UTF-8"), raw_h2(&up, path, grpc_as_ana, framed(NOT_UTF8)).await, Some(3)));
        // A length prefix beyond the limit is refused before anything is read.
        let oversized_claim = frame(0, 64 * 1024 * 1024, b"\x0a\x01a");
        observed.push((
            format!("{path}: claims 64 MiB"),
            raw_h2(&up, path, grpc_as_ana, oversized_claim).await,
            Some(8),
        ));
    }
    // A real message one byte over the limit.
    let over_limit = session::CreateSessionRequest { display_name: "x".repeat(MAX_MESSAGE_BYTES) }.encode_to_vec();
    observed.push((
        "message over the limit".to_owned(),
        raw_h2(&up, CREATE_SESSION, GRPC, framed(&over_limit)).await,
        Some(8),
    ));
    // Framing, all the caller's fault: a body that ends inside a message or its 5-byte prefix, a
    // compressed flag with no encoding, an unknown flag (INVALID_ARGUMENT, where tonic answers
    // INTERNAL), an encoding the server does not speak (UNIMPLEMENTED).
    let truncated = frame(0, 100, &good_session);
    observed.push(("truncated frame".to_owned(), raw_h2(&up, CREATE_SESSION, GRPC, truncated).await, Some(3)));
    observed.push(("half a header".to_owned(), raw_h2(&up, CREATE_SESSION, GRPC, vec![0, 0]).await, Some(3)));
    let compressed = frame(1, u32::try_from(good_session.len()).unwrap(), &good_session);
    observed.push(("compressed, no encoding".to_owned(), raw_h2(&up, CREATE_SESSION, GRPC, compressed).await, Some(3)));
    let bad_flag = frame(7, u32::try_from(good_session.len()).unwrap(), &good_session);
    observed.push(("unknown frame flag".to_owned(), raw_h2(&up, CREATE_SESSION, GRPC, bad_flag).await, Some(3)));
    let brotli = [("content-type", "application/grpc"), ("grpc-encoding", "br")];
    let compressed = frame(1, u32::try_from(good_session.len()).unwrap(), &good_session);
    observed.push((
        "unsupported encoding".to_owned(),
        raw_h2(&up, CREATE_SESSION, &brotli, compressed).await,
        Some(12),
    ));
    // Two messages where the RPC takes one: tonic answers the first and ignores the rest, so
    // the call runs once (checked below: one session named "Two").
    let one = session::CreateSessionRequest { display_name: "Two".to_owned() }.encode_to_vec();
    let mut two = framed(&one);
    two.extend(framed(&one));
    observed.push(("two messages for a unary call".to_owned(), raw_h2(&up, CREATE_SESSION, GRPC, two).await, Some(0)));
    observed.push((
        "unknown method".to_owned(),
        raw_h2(&up, "/xiaowo.session.v1.SessionService/DropTables", GRPC, framed(&good_session)).await,
        Some(12),
    ));

    // gRPC-web over HTTP/1.1, as browsers (and nginx) send it.
    let web = "application/grpc-web+proto";
    let h1 = |request: Vec<u8>| {
        let (status, grpc_status, _) = raw_h1(&up, &request);
        (status, grpc_status)
    };
    observed.push((
        "grpc-web: well-formed".to_owned(),
        h1(grpc_web_post(&up, CREATE_SESSION, web, &framed(&good_session), "")),
        Some(0),
    ));
    observed.push((
        "grpc-web: not protobuf".to_owned(),
        h1(grpc_web_post(&up, CREATE_SESSION, web, &framed(NOT_PROTOBUF), "")),
        Some(3),
    ));
    observed.push((
        "grpc-web: frame cut short".to_owned(),
        h1(grpc_web_post(&up, CREATE_SESSION, web, &frame(0, 100, &good_session), "")),
        Some(3),
    ));
    // The HTTP body itself ends before its Content-Length: the call fails, nothing is created.
    let mut cut = grpc_web_post(&up, CREATE_SESSION, web, &framed(&good_session), "");
    cut.truncate(cut.len() - 3);
    let (status, grpc_status, _) = raw_h1_then(&up, &cut, true);
    assert!(grpc_status.is_none_or(|code| code != 0), "a cut body must not succeed (HTTP {status}, {grpc_status:?})");
    observed.push((
        "grpc-web-text: not base64".to_owned(),
        h1(grpc_web_post(&up, CREATE_SESSION, "application/grpc-web-text", b"!!!not base64!!!", "")),
        Some(3),
    ));

    let mut failures = Vec::new();
    for (case, (http_status, grpc_status), expected) in &observed {
        println!("{case}: HTTP {http_status}, grpc-status {grpc_status:?}");
        if grpc_status != expected {
            failures
                .push(format!("{case}: expected grpc-status {expected:?}, got {grpc_status:?} (HTTP {http_status})"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");

    // Wrong content types are not gRPC at all: 415 over either protocol, no grpc-status needed.
    let (status, _) = raw_h2(&up, CREATE_SESSION, &[("content-type", "application/json")], b"{}".to_vec()).await;
    assert_eq!(status, 415, "JSON over HTTP/2");
    let (status, _, _) = raw_h1(&up, &grpc_web_post(&up, CREATE_SESSION, "text/plain", b"hello", ""));
    assert_eq!(status, 415, "text over HTTP/1.1");
    // Native gRPC needs HTTP/2: over HTTP/1.1 it is refused, not served.
    let native_over_h1 = grpc_web_post(&up, CREATE_SESSION, "application/grpc", &framed(&good_session), "");
    let (status, _, _) = raw_h1(&up, &native_over_h1);
    assert_eq!(status, 400, "native gRPC over HTTP/1.1");
    // Garbage instead of HTTP gets a 400 and a closed connection, not a crash.
    let (status, _, _) = raw_h1(&up, b"\x16\x03\x01\x02\x00GARBAGE\r\n\r\n");
    assert!(status == 400 || status == 0, "garbage request line: {status}");

    // Still serving: a well-formed call from a typed client succeeds, and none of the
    // malformed calls above created a session.
    let still =
        sessions(&channel).create_session(session::CreateSessionRequest { display_name: "Cy".to_owned() }).await;
    assert_eq!(code(still), Code::Ok);
    let mut list = tonic::Request::new(session::ListSessionsRequest { page_size: 500, ..Default::default() });
    list.metadata_mut().insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse().unwrap());
    let listed = session::session_admin_service_client::SessionAdminServiceClient::new(channel.clone())
        .list_sessions(list)
        .await
        .unwrap()
        .into_inner()
        .sessions;
    let mut names: Vec<_> = listed.iter().map(|session| session.display_name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["Ana", "Bo", "Cy", "Two"], "Ana, the one well-formed gRPC-web call (Bo), Cy, and Two once");
}

/// Text that shows nothing, or breaks a single line: every service refuses it with
/// INVALID_ARGUMENT naming the field, and nothing is stored.
#[tokio::test]
async fn invisible_names_and_messages_and_line_separators_are_refused_everywhere() {
    let up = start_up(&[]);
    let channel = up.channel().await;
    let ana = user(&channel, "Ana").await;
    let violation_fields = |status: tonic::Status| {
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        svc_kit::testing::violations(&status)
    };
    for name in ["\u{200b}\u{200b}", "a\u{2028}b", "\u{3164}"] {
        let created = sessions(&channel)
            .create_session(session::CreateSessionRequest { display_name: name.to_owned() })
            .await
            .unwrap_err();
        assert_eq!(violation_fields(created), ["display_name"], "{name:?}");
        let renamed = sessions(&channel)
            .update_display_name(with_bearer(
                session::UpdateDisplayNameRequest { display_name: name.to_owned() },
                &ana.token,
            ))
            .await
            .unwrap_err();
        assert_eq!(violation_fields(renamed), ["display_name"], "{name:?}");
    }
    let blank_room = room::CreateRoomRequest { name: "\u{200b}".to_owned(), ..Default::default() };
    let refused = rooms(&channel).create_room(with_bearer(blank_room, &ana.token)).await.unwrap_err();
    assert_eq!(violation_fields(refused), ["name"]);
    let room =
        open_room(&channel, &ana, room::CreateRoomRequest { name: "visible".to_owned(), ..Default::default() }).await;
    let blank_message = chat::SendMessageRequest {
        room_id: room.room_id.clone(),
        text: "\u{200b}\u{200b}\u{200b}".to_owned(),
        client_message_id: "blank".to_owned(),
    };
    let refused = chats(&channel).send_message(with_bearer(blank_message, &ana.token)).await.unwrap_err();
    assert_eq!(violation_fields(refused), ["text"]);
    // Ana's name is unchanged and the room holds no message.
    let me = sessions(&channel).get_session(with_bearer(session::GetSessionRequest {}, &ana.token)).await.unwrap();
    assert_eq!(me.into_inner().session.unwrap().display_name, "Ana");
    let history = chats(&channel)
        .list_messages(with_bearer(
            chat::ListMessagesRequest { room_id: room.room_id, before_seq: 0, page_size: 0 },
            &ana.token,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(history.messages.is_empty());
}

/// Classic injection strings; each must come back exactly as sent (TextRule trims, so none
/// starts or ends with whitespace).
const SQL_INJECTION: &[&str] = &[
    "'; DROP TABLE rooms; --",
    "\" OR \"\"=\"",
    "' OR '1'='1",
    "' OR 1=1 --",
    "1; DELETE FROM messages",
    "admin'--",
    "' UNION SELECT token_hash FROM sessions --",
    "%' AND 1=0 UNION SELECT sqlite_version() --",
    "Robert'); DROP TABLE sessions;--",
    "1' AND SLEEP(5)#",
    "'||(SELECT hex(randomblob(8)))||'",
    "x' AND (SELECT count(*) FROM sqlite_master) > 0 --",
    "\\'; ATTACH DATABASE '/tmp/x.db' AS x; --",
    "' ; PRAGMA key = 'x'; --",
    "$1 OR $2",
    "?; --",
    "`rooms`",
    "'\u{2019} OR 1=1 --",
    "%00' OR 1=1",
    "名前'); DROP TABLE room_members; --",
];

#[tokio::test]
async fn sql_injection_strings_are_stored_and_returned_verbatim() {
    let up = start_up(&[]);
    let channel = up.channel().await;
    let owner = user(&channel, "Owner").await;
    let guest = user(&channel, "Guest").await;

    for (index, payload) in SQL_INJECTION.iter().enumerate() {
        // Display names (at most 32 characters).
        let name: String = payload.chars().take(32).collect::<String>().trim().to_owned();
        let person = user(&channel, &name).await;
        let me =
            sessions(&channel).get_session(with_bearer(session::GetSessionRequest {}, &person.token)).await.unwrap();
        assert_eq!(me.into_inner().session.unwrap().display_name, name);
        let renamed = sessions(&channel)
            .update_display_name(with_bearer(
                session::UpdateDisplayNameRequest { display_name: name.clone() },
                &owner.token,
            ))
            .await
            .unwrap();
        assert_eq!(renamed.into_inner().session.unwrap().display_name, name);

        // Room name, description and password.
        let password = format!("{payload}-pw{index}");
        let created = open_room(
            &channel,
            &owner,
            room::CreateRoomRequest {
                name: (*payload).to_owned(),
                description: format!("{payload}\n{payload}"),
                password: password.clone(),
                ..Default::default()
            },
        )
        .await;
        let fetched = rooms(&channel)
            .get_room(with_bearer(room::GetRoomRequest { room_id: created.room_id.clone() }, &owner.token))
            .await
            .unwrap()
            .into_inner()
            .room
            .unwrap();
        assert_eq!(
            (fetched.name.as_str(), fetched.description.as_str()),
            (*payload, format!("{payload}\n{payload}").as_str())
        );
        // The password is compared, not interpreted: an injection that would make a string
        // comparison true does not open the room, the exact text does.
        assert_eq!(
            join(&channel, &person, &created.room_id, "' OR '1'='1").await.map(drop),
            Err(Code::PermissionDenied)
        );
        join(&channel, &person, &created.room_id, &password).await.unwrap();
        let members = rooms(&channel)
            .list_members(with_bearer(room::ListMembersRequest { room_id: created.room_id.clone() }, &owner.token))
            .await
            .unwrap()
            .into_inner()
            .members;
        assert!(members.iter().any(|member| member.user_id == person.user_id && member.display_name == name));

        // Chat text and a media title.
        let sent = chats(&channel)
            .send_message(with_bearer(
                chat::SendMessageRequest {
                    room_id: created.room_id.clone(),
                    text: (*payload).to_owned(),
                    client_message_id: format!("m{index}"),
                },
                &person.token,
            ))
            .await
            .unwrap()
            .into_inner();
        let history = chats(&channel)
            .list_messages(with_bearer(
                chat::ListMessagesRequest { room_id: created.room_id.clone(), ..Default::default() },
                &owner.token,
            ))
            .await
            .unwrap()
            .into_inner()
            .messages;
        assert_eq!(history.iter().map(|message| message.text.as_str()).collect::<Vec<_>>(), [*payload]);
        assert_eq!(sent.message.unwrap().text, *payload);
        let title: String = payload.chars().take(200).collect();
        let changed = syncs(&channel)
            .change_media(with_bearer(
                sync::ChangeMediaRequest {
                    room_id: created.room_id.clone(),
                    expected_version: 0,
                    url: "https://media.example/v.webm?q='OR'1'='1--".to_owned(),
                    title: title.clone(),
                    duration_ms: 60_000,
                    library_item_id: String::new(),
                },
                &owner.token,
            ))
            .await
            .unwrap()
            .into_inner();
        let media = changed.state.unwrap().timeline.unwrap().media.unwrap();
        assert_eq!(
            (media.title.as_str(), media.url.as_str()),
            (title.as_str(), "https://media.example/v.webm?q='OR'1'='1--")
        );

        // Identifier fields are checked, never passed on: an injection there is INVALID_ARGUMENT.
        let injected_id = room::GetRoomRequest { room_id: (*payload).to_owned() };
        assert_eq!(code(rooms(&channel).get_room(with_bearer(injected_id, &owner.token)).await), Code::InvalidArgument);
        let seek = sync::SeekRequest { room_id: (*payload).to_owned(), expected_version: 1, position_ms: 0 };
        assert_eq!(code(syncs(&channel).seek(with_bearer(seek, &owner.token)).await), Code::InvalidArgument);
    }

    // Admin filters and page tokens are parsed, not pasted into SQL.
    let mut audit_filter = tonic::Request::new(room::ListAuditLogsRequest {
        user_id: "' OR 1=1 --".to_owned(),
        page_token: "1.1 OR 1=1".to_owned(),
        ..Default::default()
    });
    audit_filter.metadata_mut().insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse().unwrap());
    let refused = room::room_admin_service_client::RoomAdminServiceClient::new(channel.clone())
        .list_audit_logs(audit_filter)
        .await;
    assert_eq!(code(refused), Code::InvalidArgument);
    let mut page =
        tonic::Request::new(session::ListSessionsRequest { page_token: "0.' OR '1'='1".to_owned(), page_size: 0 });
    page.metadata_mut().insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse().unwrap());
    let refused = session::session_admin_service_client::SessionAdminServiceClient::new(channel.clone())
        .list_sessions(page)
        .await;
    assert_eq!(code(refused), Code::InvalidArgument);

    // Every table is still there and whole: all rooms are listed with their names.
    let listed = rooms(&channel)
        .list_my_rooms(with_bearer(room::ListMyRoomsRequest { page_size: 100, ..Default::default() }, &owner.token))
        .await
        .unwrap()
        .into_inner()
        .rooms;
    let mut names: Vec<_> = listed.iter().map(|room| room.name.as_str()).collect();
    let mut expected = SQL_INJECTION.to_vec();
    names.sort_unstable();
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert_eq!(
        code(sessions(&channel).get_session(with_bearer(session::GetSessionRequest {}, &guest.token)).await),
        Code::Ok
    );
}

/// Raw-SQL entry points and SQL assembled with `format!`. A new use fails this test until it
/// is reviewed and listed in [`REVIEWED_RAW_SQL`] with the reason it is safe.
const RAW_SQL_MARKERS: &[&str] = &[
    "Statement::from_string",
    "from_sql_and_values",
    "execute_unprepared",
    "query_unchecked",
    "execute_raw",
    "query_one_raw",
    "query_all_raw",
    "raw_sql",
    "sqlcipher_key(",
    "execute(&format!",
    "prepare(&format!",
    "prepare_cached(",
    "query_row(&",
    "execute_batch(&",
];
const SQL_KEYWORDS: &[&str] =
    &["SELECT ", "INSERT ", "UPDATE ", "DELETE ", "CREATE ", "DROP ", "ALTER ", "PRAGMA ", "ATTACH "];

/// (file, text on the line, why it is safe).
const REVIEWED_RAW_SQL: &[(&str, &str, &str)] = &[
    ("svc-kit/src/db.rs", "from_sql_and_values", "a literal statement with a bound parameter"),
    ("svc-kit/src/db.rs", "CREATE SCHEMA IF NOT EXISTS", "the schema name is checked to be [a-z0-9_]+ first"),
    ("svc-kit/src/db.rs", "sqlcipher_key(format!", "the operator's key, quoted with '' doubled"),
    ("svc-kit/src/db.rs", "PRAGMA wal_checkpoint(PASSIVE)", "a constant pragma, no input"),
    ("svc-kit/src/db.rs", "prepare_cached(&statement.sql)", "a statement sea-orm built; its values are bound apart"),
    ("svc-kit/src/db.rs", "fallback.execute_raw(statement)", "the same statement, run on the pool"),
    (
        "sync-svc/src/store.rs",
        "execute_raw(write)",
        "the state write sea-orm's builder made (`state_write`), values bound",
    ),
    ("svc-kit/src/testing.rs", "from_sql_and_values", "test helper, bound parameter"),
    ("svc-kit/src/testing.rs", "query_one_raw(lookup)", "test helper, the bound statement above"),
    ("svc-kit/src/testing.rs", "CREATE DATABASE", "test helper, a generated database name"),
    ("xiaowo/src/backup.rs", "SELECT version FROM", "a table name read from sqlite_master, quotes removed"),
    ("xiaowo/src/backup.rs", "query_row(&query", "the query above"),
    (
        "sync-svc/src/migration/m0003_log_room_changes_in_the_database.rs",
        "execute_unprepared(sql)",
        "constant trigger definitions chosen by backend, no input",
    ),
];

#[test]
fn no_query_is_built_from_raw_strings_outside_the_reviewed_list() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let src = entry.unwrap().path().join("src");
        if src.is_dir() && src.parent().is_some_and(|crate_dir| crate_dir.join("Cargo.toml").is_file()) {
            collect_rust_files(&src, &mut sources);
        }
    }
    assert!(sources.len() > 50, "found the workspace's sources ({})", sources.len());
    let mut unreviewed = Vec::new();
    let mut seen = vec![false; REVIEWED_RAW_SQL.len()];
    for path in &sources {
        let relative = path.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
        let text = std::fs::read_to_string(path).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code_part = line.split("//").next().unwrap_or_default();
            let raw_api = RAW_SQL_MARKERS.iter().any(|marker| code_part.contains(marker));
            let formatted_sql =
                code_part.contains("format!(") && SQL_KEYWORDS.iter().any(|keyword| code_part.contains(keyword));
            if !raw_api && !formatted_sql {
                continue;
            }
            match REVIEWED_RAW_SQL.iter().position(|(file, snippet, _)| *file == relative && line.contains(snippet)) {
                Some(index) => seen[index] = true,
                None => unreviewed.push(format!("{relative}:{}: {}", number + 1, line.trim())),
            }
        }
    }
    assert!(unreviewed.is_empty(), "SQL built from strings, not reviewed: {unreviewed:#?}");
    // The scan itself works: every reviewed line is still found where it was listed.
    let stale: Vec<_> =
        REVIEWED_RAW_SQL.iter().zip(&seen).filter(|(_, seen)| !**seen).map(|(entry, _)| entry).collect();
    assert!(stale.is_empty(), "reviewed entries no longer found (remove them): {stale:?}");
}

fn collect_rust_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_rust_files(&path, out);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            out.push(path);
        }
    }
}

/// Polls `check` (bounded) until it returns true.
/// The codes a token gets from each service: session-svc, room-svc, chat-svc, sync-svc.
async fn codes_for(channel: &Channel, token: &str, room_id: &str) -> [Code; 4] {
    let session = code(sessions(channel).get_session(with_bearer(session::GetSessionRequest {}, token)).await);
    let room =
        code(rooms(channel).get_room(with_bearer(room::GetRoomRequest { room_id: room_id.to_owned() }, token)).await);
    let chat = code(
        chats(channel)
            .list_messages(with_bearer(
                chat::ListMessagesRequest { room_id: room_id.to_owned(), ..Default::default() },
                token,
            ))
            .await,
    );
    let sync = code(
        syncs(channel)
            .get_room_state(with_bearer(sync::GetRoomStateRequest { room_id: room_id.to_owned() }, token))
            .await,
    );
    [session, room, chat, sync]
}

const EVERYWHERE_UNAUTHENTICATED: [Code; 4] = [Code::Unauthenticated; 4];

#[tokio::test]
async fn forged_expired_revoked_and_borrowed_tokens_are_refused_by_every_service() {
    let up =
        start_up(&["--session-idle-timeout", "3s", "--room-session-cache-ttl", "1s", "--sync-session-cache-ttl", "1s"]);
    let channel = up.channel().await;
    let owner = user(&channel, "Owner").await;
    let room_id =
        open_room(&channel, &owner, room::CreateRoomRequest { name: "tokens".to_owned(), ..Default::default() })
            .await
            .room_id;
    assert_eq!(codes_for(&channel, &owner.token, &room_id).await, [Code::Ok; 4]);

    // Forged: well-formed but never issued, the right length, a user id instead of a token, a
    // token with a character changed, the admin token.
    let mut flipped = owner.token.clone().into_bytes();
    flipped[0] = if flipped[0] == b'a' { b'b' } else { b'a' };
    let forged = [
        "0".repeat(64),
        owner.user_id.clone(),
        String::from_utf8(flipped).unwrap(),
        format!("{}x", owner.token),
        ADMIN_TOKEN.to_owned(),
    ];
    for token in &forged {
        assert_eq!(codes_for(&channel, token, &room_id).await, EVERYWHERE_UNAUTHENTICATED, "{token}");
    }
    // A session token is not an admin token.
    let mut admin_call = tonic::Request::new(session::ListSessionsRequest::default());
    admin_call.metadata_mut().insert("authorization", format!("Bearer {}", owner.token).parse().unwrap());
    let admin = session::session_admin_service_client::SessionAdminServiceClient::new(channel.clone())
        .list_sessions(admin_call)
        .await;
    assert!(matches!(code(admin), Code::Unauthenticated | Code::PermissionDenied));

    // Revoked by an operator: refused everywhere, as soon as session-svc's change stream
    // reaches the services (or once their short validation caches expire, while it is down).
    let revoked = user(&channel, "Revoked").await;
    join(&channel, &revoked, &room_id, "").await.unwrap();
    assert_eq!(codes_for(&channel, &revoked.token, &room_id).await, [Code::Ok; 4]);
    let mut revoke = tonic::Request::new(session::RevokeSessionRequest { user_id: revoked.user_id.clone() });
    revoke.metadata_mut().insert("authorization", format!("Bearer {ADMIN_TOKEN}").parse().unwrap());
    session::session_admin_service_client::SessionAdminServiceClient::new(channel.clone())
        .revoke_session(revoke)
        .await
        .unwrap();
    eventually("a revoked token is refused everywhere", async || {
        codes_for(&channel, &revoked.token, &room_id).await == EVERYWHERE_UNAUTHENTICATED
    })
    .await;

    // Logged out: the same.
    let leaving = user(&channel, "Leaving").await;
    join(&channel, &leaving, &room_id, "").await.unwrap();
    sessions(&channel).end_session(with_bearer(session::EndSessionRequest {}, &leaving.token)).await.unwrap();
    assert_eq!(
        code(sessions(&channel).get_session(with_bearer(session::GetSessionRequest {}, &leaving.token)).await),
        Code::Unauthenticated
    );
    eventually("a logged-out token is refused everywhere", async || {
        codes_for(&channel, &leaving.token, &room_id).await == EVERYWHERE_UNAUTHENTICATED
    })
    .await;

    // Expired: idle longer than the idle timeout (3 s here).
    let idle = user(&channel, "Idle").await;
    join(&channel, &idle, &room_id, "").await.unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    eventually("an expired token is refused everywhere", async || {
        codes_for(&channel, &idle.token, &room_id).await == EVERYWHERE_UNAUTHENTICATED
    })
    .await;
}

#[tokio::test]
async fn members_cannot_act_in_other_rooms_or_beyond_their_role_and_guessing_is_limited_and_audited() {
    let up = start_up(&["--room-password-attempts-per-caller", "3", "--room-password-attempts-per-room", "50"]);
    let channel = up.channel().await;
    let ana = user(&channel, "Ana").await;
    let bo = user(&channel, "Bo").await;
    let mallory = user(&channel, "Mallory").await;
    let room_a =
        open_room(&channel, &ana, room::CreateRoomRequest { name: "A".to_owned(), ..Default::default() }).await.room_id;
    let room_b = open_room(
        &channel,
        &bo,
        room::CreateRoomRequest {
            name: "B".to_owned(),
            password: "the right one".to_owned(),
            control_mode: room::ControlMode::Owner.into(),
            ..Default::default()
        },
    )
    .await
    .room_id;
    join(&channel, &mallory, &room_a, "").await.unwrap();
    // Some content in room B to attack.
    let media = sync::ChangeMediaRequest {
        room_id: room_b.clone(),
        expected_version: 0,
        url: "https://media.example/b.webm".to_owned(),
        title: "b".to_owned(),
        duration_ms: 60_000,
        library_item_id: String::new(),
    };
    syncs(&channel).change_media(with_bearer(media, &bo.token)).await.unwrap();
    let said =
        chat::SendMessageRequest { room_id: room_b.clone(), text: "hi".to_owned(), client_message_id: "b1".to_owned() };
    chats(&channel).send_message(with_bearer(said, &bo.token)).await.unwrap();

    // Mallory, a member of A, acting in B (not a member): nothing works.
    let token = mallory.token.as_str();
    let in_b = [
        code(
            chats(&channel)
                .send_message(with_bearer(
                    chat::SendMessageRequest {
                        room_id: room_b.clone(),
                        text: "x".to_owned(),
                        client_message_id: "x1".to_owned(),
                    },
                    token,
                ))
                .await,
        ),
        code(
            chats(&channel)
                .list_messages(with_bearer(
                    chat::ListMessagesRequest { room_id: room_b.clone(), ..Default::default() },
                    token,
                ))
                .await,
        ),
        code(
            chats(&channel)
                .delete_message(with_bearer(chat::DeleteMessageRequest { room_id: room_b.clone(), seq: 1 }, token))
                .await,
        ),
        code(
            syncs(&channel)
                .seek(with_bearer(
                    sync::SeekRequest { room_id: room_b.clone(), expected_version: 1, position_ms: 5 },
                    token,
                ))
                .await,
        ),
        code(
            syncs(&channel)
                .get_room_state(with_bearer(sync::GetRoomStateRequest { room_id: room_b.clone() }, token))
                .await,
        ),
        code(
            rooms(&channel)
                .list_members(with_bearer(room::ListMembersRequest { room_id: room_b.clone() }, token))
                .await,
        ),
        code(
            rooms(&channel)
                .kick_member(with_bearer(
                    room::KickMemberRequest { room_id: room_b.clone(), user_id: bo.user_id.clone() },
                    token,
                ))
                .await,
        ),
        code(rooms(&channel).close_room(with_bearer(room::CloseRoomRequest { room_id: room_b.clone() }, token)).await),
        code(
            rooms(&channel)
                .update_room(with_bearer(
                    room::UpdateRoomRequest {
                        room_id: room_b.clone(),
                        name: Some("mine".to_owned()),
                        ..Default::default()
                    },
                    token,
                ))
                .await,
        ),
    ];
    assert_eq!(in_b, [Code::PermissionDenied; 9], "outsider in room B");

    // Mallory, a plain member of A, acting beyond that role.
    let beyond = [
        code(
            rooms(&channel)
                .kick_member(with_bearer(
                    room::KickMemberRequest { room_id: room_a.clone(), user_id: ana.user_id.clone() },
                    token,
                ))
                .await,
        ),
        code(
            rooms(&channel)
                .set_member_role(with_bearer(
                    room::SetMemberRoleRequest {
                        room_id: room_a.clone(),
                        user_id: mallory.user_id.clone(),
                        role: room::Role::Moderator.into(),
                    },
                    token,
                ))
                .await,
        ),
        code(
            rooms(&channel)
                .transfer_ownership(with_bearer(
                    room::TransferOwnershipRequest { room_id: room_a.clone(), user_id: mallory.user_id.clone() },
                    token,
                ))
                .await,
        ),
        code(rooms(&channel).close_room(with_bearer(room::CloseRoomRequest { room_id: room_a.clone() }, token)).await),
        code(
            rooms(&channel)
                .update_room(with_bearer(
                    room::UpdateRoomRequest {
                        room_id: room_a.clone(),
                        control_mode: Some(room::ControlMode::Everyone.into()),
                        ..Default::default()
                    },
                    token,
                ))
                .await,
        ),
        code(
            chats(&channel)
                .mute_member(with_bearer(
                    chat::MuteMemberRequest {
                        room_id: room_a.clone(),
                        user_id: ana.user_id.clone(),
                        duration: Some(prost_types::Duration { seconds: 60, nanos: 0 }),
                    },
                    token,
                ))
                .await,
        ),
        code(
            chats(&channel)
                .delete_message(with_bearer(chat::DeleteMessageRequest { room_id: room_a.clone(), seq: 1 }, token))
                .await,
        ),
    ];
    assert_eq!(beyond, [Code::PermissionDenied; 7], "member beyond their role");
    // Nothing changed in A: Ana is still the owner and Mallory a member.
    let members = rooms(&channel)
        .list_members(with_bearer(room::ListMembersRequest { room_id: room_a.clone() }, &ana.token))
        .await
        .unwrap()
        .into_inner()
        .members;
    let role_of = |user_id: &str| members.iter().find(|member| member.user_id == user_id).map(|member| member.role);
    assert_eq!(
        (role_of(&ana.user_id), role_of(&mallory.user_id)),
        (Some(room::Role::Owner.into()), Some(room::Role::Member.into()))
    );

    // Guessing B's password: three wrong guesses, then even the right one waits.
    for guess in ["password", "12345678", "the right on"] {
        assert_eq!(join(&channel, &mallory, &room_b, guess).await.map(drop), Err(Code::PermissionDenied));
    }
    assert_eq!(join(&channel, &mallory, &room_b, "the right one").await.map(drop), Err(Code::ResourceExhausted));
    // Ana owns A and kicks Mallory: audited with both parties.
    rooms(&channel)
        .kick_member(with_bearer(
            room::KickMemberRequest { room_id: room_a.clone(), user_id: mallory.user_id.clone() },
            &ana.token,
        ))
        .await
        .unwrap();

    let refused: Vec<(String, bool)> = audit(&channel, &room_b)
        .await
        .into_iter()
        .filter(|row| row.action == "member.join_refused")
        .map(|row| (row.user_id, row.detail.contains("\"limit_reached\":true")))
        .collect();
    let expected =
        [(mallory.user_id.clone(), false), (mallory.user_id.clone(), false), (mallory.user_id.clone(), true)];
    assert_eq!(refused, expected, "each wrong guess is audited, the one that used up the attempts says so");
    let kicks: Vec<(String, String)> = audit(&channel, &room_a)
        .await
        .into_iter()
        .filter(|row| row.action == "member.kick")
        .map(|row| (row.user_id, row.target_user_id))
        .collect();
    assert_eq!(kicks, [(ana.user_id.clone(), mallory.user_id.clone())]);
}

#[tokio::test]
async fn session_cookies_are_long_random_http_only_and_cleared_on_logout_and_pages_carry_a_csp() {
    let up = start_up(&[]);
    let create = session::CreateSessionRequest { display_name: "Browser".to_owned() }.encode_to_vec();
    let web = "application/grpc-web+proto";

    // Over plain HTTP on a loopback host (a browser accepts Secure there), and as nginx
    // forwards HTTPS: HttpOnly, SameSite=Strict, Path=/, Secure with the __Host- prefix.
    for forwarded in ["", "X-Forwarded-Proto: https\r\n"] {
        let (status, grpc_status, response) =
            raw_h1(&up, &grpc_web_post(&up, CREATE_SESSION, web, &framed(&create), forwarded));
        assert_eq!((status, grpc_status), (200, Some(0)), "{response}");
        let cookie = response
            .lines()
            .find_map(|line| line.strip_prefix("set-cookie: ").or_else(|| line.strip_prefix("Set-Cookie: ")))
            .unwrap_or_else(|| panic!("a Set-Cookie header: {response}"))
            .to_owned();
        let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
        let (name, token) = attributes[0].split_once('=').unwrap();
        assert_eq!(name, "__Host-xiaowo_session", "{cookie}");
        assert!(token.len() >= 32 && token.bytes().all(|byte| byte.is_ascii_hexdigit()), "≥128 bits of hex: {cookie}");
        for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
            assert!(attributes.contains(&attribute), "{attribute} in {cookie}");
        }
    }

    // Native gRPC over HTTP/2 names the host in `:authority`, not `Host`: on loopback the
    // cookie is just as Secure and __Host- prefixed (it was plain `xiaowo_session` before).
    let channel = up.channel().await;
    let created = sessions(&channel)
        .create_session(session::CreateSessionRequest { display_name: "Native".to_owned() })
        .await
        .unwrap();
    let cookie = created.metadata().get("set-cookie").unwrap().to_str().unwrap().to_owned();
    assert!(cookie.starts_with("__Host-xiaowo_session="), "{cookie}");
    assert!(cookie.split(';').map(str::trim).any(|attribute| attribute == "Secure"), "{cookie}");

    // Tokens are ≥128 bits and do not repeat.
    let mut tokens = std::collections::HashSet::new();
    for index in 0..50 {
        let token = user(&channel, &format!("u{index}")).await.token;
        assert!(token.len() >= 32 && hex_bits(&token) >= 128, "{token}");
        assert!(tokens.insert(token), "a token repeated");
    }

    // Logout clears the cookie (Max-Age=0) and the token stops working at once.
    let leaving = user(&channel, "Leaving").await;
    let logout = grpc_web_post(
        &up,
        "/xiaowo.session.v1.SessionService/EndSession",
        web,
        &framed(&[]),
        &format!("Cookie: __Host-xiaowo_session={}\r\n", leaving.token),
    );
    let (status, grpc_status, response) = raw_h1(&up, &logout);
    assert_eq!((status, grpc_status), (200, Some(0)), "{response}");
    let cleared =
        response.lines().any(|line| line.to_ascii_lowercase().starts_with("set-cookie:") && line.contains("Max-Age=0"));
    assert!(cleared, "{response}");
    assert_eq!(
        code(sessions(&channel).get_session(with_bearer(session::GetSessionRequest {}, &leaving.token)).await),
        Code::Unauthenticated
    );

    // The page and every client-side route carry the CSP header, and it forbids inline script.
    for path in ["/", "/index.html", "/room/anything"] {
        let (status, _, response) =
            raw_h1(&up, format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", up.addr).as_bytes());
        assert_eq!(status, 200, "{path}: {response}");
        let header = |name: &str| {
            response.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case(name).then(|| value.trim().to_owned())
            })
        };
        let policy = header("content-security-policy").unwrap_or_else(|| panic!("{path}: no CSP header: {response}"));
        let directive =
            |name: &str| policy.split(';').map(str::trim).find(|part| part.starts_with(name)).map(str::to_owned);
        assert_eq!(directive("script-src").as_deref(), Some("script-src 'self'"), "{policy}");
        assert_eq!(directive("object-src").as_deref(), Some("object-src 'none'"), "{policy}");
        assert_eq!(directive("frame-ancestors").as_deref(), Some("frame-ancestors 'none'"), "{policy}");
        assert!(!policy.contains("unsafe-inline") && !policy.contains("unsafe-eval"), "{policy}");
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"));
    }
}

/// Bits of randomness a hex token can hold.
fn hex_bits(token: &str) -> usize {
    token.bytes().filter(u8::is_ascii_hexdigit).count() * 4
}

#[tokio::test]
async fn rotating_a_session_replaces_its_token_and_keeps_the_user_and_their_rooms() {
    let up = start_up(&["--room-session-cache-ttl", "1s", "--sync-session-cache-ttl", "1s"]);
    let channel = up.channel().await;
    let owner = user(&channel, "Owner").await;
    let room_id =
        open_room(&channel, &owner, room::CreateRoomRequest { name: "mine".to_owned(), ..Default::default() })
            .await
            .room_id;

    // The web client rotates right after opening a room (becoming its owner), through the
    // cookie; the answer sets a new cookie with a new token.
    let rotate = grpc_web_post(
        &up,
        "/xiaowo.session.v1.SessionService/RotateSession",
        "application/grpc-web+proto",
        &framed(&[]),
        &format!("Cookie: __Host-xiaowo_session={}\r\n", owner.token),
    );
    let (status, grpc_status, response) = raw_h1(&up, &rotate);
    assert_eq!((status, grpc_status), (200, Some(0)), "{response}");
    let new_token = response
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: __Host-xiaowo_session="))
        .and_then(|rest| rest.split(';').next())
        .unwrap_or_else(|| panic!("a new session cookie: {response}"))
        .to_owned();
    assert!(new_token.len() >= 32 && new_token != owner.token);

    // The old token is dead at session-svc at once and everywhere once the short validation
    // caches expire; the new one is the same user, still the room's owner.
    let old = code(sessions(&channel).get_session(with_bearer(session::GetSessionRequest {}, &owner.token)).await);
    assert_eq!(old, Code::Unauthenticated);
    eventually("the old token is refused everywhere", async || {
        codes_for(&channel, &owner.token, &room_id).await == EVERYWHERE_UNAUTHENTICATED
    })
    .await;
    assert_eq!(codes_for(&channel, &new_token, &room_id).await, [Code::Ok; 4]);
    let me = sessions(&channel).get_session(with_bearer(session::GetSessionRequest {}, &new_token)).await.unwrap();
    assert_eq!(me.into_inner().session.unwrap().user_id, owner.user_id);
    let role = rooms(&channel)
        .get_room(with_bearer(room::GetRoomRequest { room_id: room_id.clone() }, &new_token))
        .await
        .unwrap()
        .into_inner()
        .role;
    assert_eq!(role, i32::from(room::Role::Owner));

    // A token that was rotated away cannot rotate again (nor can a forged one).
    let again = sessions(&channel).rotate_session(with_bearer(session::RotateSessionRequest {}, &owner.token)).await;
    assert_eq!(code(again), Code::Unauthenticated);
    let forged =
        sessions(&channel).rotate_session(with_bearer(session::RotateSessionRequest {}, &"f".repeat(64))).await;
    assert_eq!(code(forged), Code::Unauthenticated);
}

/// `xiaowo up` serves the internal APIs (session validation, display names, access checks,
/// activity, room events) on its one public port. They answer only the services of the
/// install, which present the internal token generated at start-up; anyone else, with no
/// token, a guessed one or their own session's bearer, is refused, while the normal flow that
/// goes through them (rooms asking session-svc, chat and sync asking room-svc and following
/// its events) keeps working.
#[tokio::test]
async fn internal_apis_on_the_public_port_refuse_callers_without_the_internal_token() {
    let up = start_up(&[]);
    let channel = up.channel().await;
    let owner = user(&channel, "Owner").await;
    let member = user(&channel, "Member").await;
    let room_id =
        open_room(&channel, &owner, room::CreateRoomRequest { name: "internal".to_owned(), ..Default::default() })
            .await
            .room_id;
    join(&channel, &member, &room_id, "").await.unwrap();
    assert_eq!(codes_for(&channel, &member.token, &room_id).await, [Code::Ok; 4]);
    let sent = chats(&channel)
        .send_message(with_bearer(
            chat::SendMessageRequest {
                room_id: room_id.clone(),
                text: "hello".to_owned(),
                client_message_id: "internal-1".to_owned(),
            },
            &member.token,
        ))
        .await;
    assert_eq!(code(sent), Code::Ok);
    let members = rooms(&channel)
        .list_members(with_bearer(room::ListMembersRequest { room_id: room_id.clone() }, &member.token))
        .await
        .unwrap()
        .into_inner()
        .members;
    let mut names: Vec<_> = members.into_iter().map(|member| member.display_name).collect();
    names.sort();
    assert_eq!(names, ["Member", "Owner"]);
    // chat-svc follows room-svc's event stream with the token.
    eventually("chat-svc follows room events", async || {
        raw_h1(&up, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .2
            .lines()
            .any(|line| line == "xiaowo_chat_room_events_connected 1")
    })
    .await;

    let wrong = [
        None,
        Some(("x-xiaowo-internal-token", "0".repeat(64))),
        Some(("x-xiaowo-internal-token", owner.token.clone())),
        Some(("authorization", format!("Bearer {}", owner.token))),
        Some(("authorization", format!("Bearer {ADMIN_TOKEN}"))),
    ];
    let internal_rooms = room::room_internal_service_client::RoomInternalServiceClient::new(channel.clone());
    let internal_sessions =
        session::session_internal_service_client::SessionInternalServiceClient::new(channel.clone());
    for header in &wrong {
        let events = internal_rooms.clone().watch_room_events(with(room::WatchRoomEventsRequest {}, header)).await;
        assert_eq!(code(events), Code::Unauthenticated, "{header:?}");
        let access = room::CheckAccessRequest { room_id: room_id.clone(), user_id: owner.user_id.clone() };
        assert_eq!(code(internal_rooms.clone().check_access(with(access, header)).await), Code::Unauthenticated);
        let activity = room::RecordActivityRequest { room_id: room_id.clone() };
        assert_eq!(code(internal_rooms.clone().record_activity(with(activity, header)).await), Code::Unauthenticated);
        let validate = session::ValidateSessionRequest { token: owner.token.clone() };
        assert_eq!(
            code(internal_sessions.clone().validate_session(with(validate, header)).await),
            Code::Unauthenticated
        );
        let names = session::BatchGetDisplayNamesRequest { user_ids: vec![owner.user_id.clone()] };
        assert_eq!(
            code(internal_sessions.clone().batch_get_display_names(with(names, header)).await),
            Code::Unauthenticated
        );
    }
    // A raw gRPC call as a hand-written client would make it.
    let path = "/xiaowo.room.v1.RoomInternalService/WatchRoomEvents";
    let raw = raw_h2(&up, path, &[("content-type", "application/grpc")], framed(&[])).await;
    assert_eq!(raw.1, Some(Code::Unauthenticated as i32));
    // The generated token lives only in the process.
    assert!(!up.data.path().join("internal.token").exists());
    // The refused calls did no harm: the flow still works.
    assert_eq!(codes_for(&channel, &owner.token, &room_id).await, [Code::Ok; 4]);
}

/// `message` with one extra metadata header, if any.
fn with<T>(message: T, header: &Option<(&'static str, String)>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some((name, value)) = header {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    request
}

/// The outside walk's find: with `--session-idle-timeout 4s`, someone chatting every second was
/// logged out after about 4 s, because chat-svc kept using its cached validation while the idle
/// expiry at session-svc never slid. Using any service is using the session: it must stay alive
/// as long as it is used, and still end once it is left idle.
#[tokio::test]
async fn a_session_used_only_through_other_services_slides_its_idle_expiry() {
    const IDLE: Duration = Duration::from_secs(4);
    let up = start_up(&["--session-idle-timeout", "4s"]);
    let channel = up.channel().await;
    let ana = user(&channel, "Ana").await;
    let room =
        open_room(&channel, &ana, room::CreateRoomRequest { name: "chatty".to_owned(), ..Default::default() }).await;
    let send = |index: usize| {
        let request = chat::SendMessageRequest {
            room_id: room.room_id.clone(),
            text: format!("message {index}"),
            client_message_id: format!("m{index}"),
        };
        let mut client = chats(&channel);
        let token = ana.token.clone();
        async move { client.send_message(with_bearer(request, &token)).await.map(|_| ()) }
    };
    // Three idle periods of chatting, a message a second: every one is accepted.
    let started = Instant::now();
    let mut index = 0;
    while started.elapsed() < 3 * IDLE {
        send(index).await.unwrap_or_else(|status| panic!("message {index} after {:?}: {status:?}", started.elapsed()));
        index += 1;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // Left idle past the timeout (and the slide's granularity), the session ends.
    tokio::time::sleep(IDLE + Duration::from_secs(2)).await;
    assert_eq!(send(index).await.unwrap_err().code(), Code::Unauthenticated);
}
