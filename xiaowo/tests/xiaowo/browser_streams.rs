//! Calls as browsers make them: gRPC-web over HTTP/1.1, served by `svc_kit::web_stream` instead
//! of hyper. Raw HTTP/1.1 against the real `xiaowo up`: unary answers and stream frames are
//! those hyper's path sends for the same call, refusals and malformed requests get the same
//! statuses, a connection goes on serving other requests after a stream, one chat message is
//! one frame, and a watcher who leaves is counted as a cancelled call.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use prost::Message;
use proto::chat::v1 as chat;
use proto::room::v1 as room;
use proto::session::v1 as session;
use proto::sync::v1 as sync;
use svc_kit::testing::{eventually, with_bearer};

use crate::security::{NOT_PROTOBUF, User, chats, framed, join, open_room, rooms, start_up, syncs, user};

const WATCH_ROOM: &str = "/xiaowo.sync.v1.SyncService/WatchRoom";
const WATCH_MESSAGES: &str = "/xiaowo.chat.v1.ChatService/WatchMessages";
const GET_CLOCK: &str = "/xiaowo.sync.v1.SyncService/GetClock";
const GET_ROOM_STATE: &str = "/xiaowo.sync.v1.SyncService/GetRoomState";
const CREATE_SESSION: &str = "/xiaowo.session.v1.SessionService/CreateSession";

/// A browser's HTTP/1.1 connection, read as it arrives.
struct Browser {
    stream: TcpStream,
    /// Bytes read and not yet taken.
    read: Vec<u8>,
    /// The current response's body, de-chunked, not yet taken as frames.
    body: Vec<u8>,
    /// The current response's body is chunked (else it is as long as its `content-length`).
    chunked: bool,
}

impl Browser {
    fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Self { stream, read: Vec::new(), body: Vec::new(), chunked: false }
    }

    /// Sends a gRPC-web POST that keeps the connection open, as browsers and nginx do.
    fn post(&mut self, path: &str, message: &[u8], user: Option<&User>) {
        self.post_raw(path, &framed(message), user);
    }

    fn post_raw(&mut self, path: &str, body: &[u8], user: Option<&User>) {
        let cookie = user.map(|user| format!("Cookie: __Host-xiaowo_session={}\r\n", user.token)).unwrap_or_default();
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/grpc-web+proto\r\nX-Grpc-Web: 1\r\n\
             Accept: application/grpc-web+proto\r\n{cookie}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        request.extend_from_slice(body);
        self.stream.write_all(&request).unwrap();
    }

    /// Sends a GET that keeps the connection open and reads its answer, which hands the
    /// connection to hyper for good.
    fn get(&mut self, path: &str) -> u16 {
        write!(self.stream, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
        let (status, _) = self.head();
        self.body.clear();
        status
    }

    fn fill(&mut self) {
        let mut buf = [0; 4096];
        let n = self.stream.read(&mut buf).unwrap();
        assert!(n > 0, "the server closed the connection");
        self.read.extend_from_slice(&buf[..n]);
    }

    /// The next response's status line and headers (names lowercased).
    fn head(&mut self) -> (u16, Vec<(String, String)>) {
        let end = loop {
            if let Some(at) = self.read.windows(4).position(|window| window == b"\r\n\r\n") {
                break at;
            }
            self.fill();
        };
        let head = String::from_utf8(self.read.drain(..end + 4).collect()).unwrap();
        let mut lines = head.lines();
        let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|line| line.split_once(':'))
            .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
            .collect();
        self.chunked = headers.iter().any(|(name, value)| name == "transfer-encoding" && value == "chunked");
        if !self.chunked {
            let length: usize = header(&headers, "content-length").map_or(0, |value| value.parse().unwrap());
            while self.read.len() < length {
                self.fill();
            }
            self.body = self.read.drain(..length).collect();
        }
        (status, headers)
    }

    /// The next gRPC-web frame of the current response: its flag and payload.
    fn frame(&mut self) -> (u8, Vec<u8>) {
        loop {
            if self.body.len() >= 5 {
                let length = u32::from_be_bytes(self.body[1..5].try_into().unwrap()) as usize;
                if self.body.len() >= 5 + length {
                    let frame: Vec<u8> = self.body.drain(..5 + length).collect();
                    if frame[0] & 0x80 != 0 && self.chunked {
                        self.end_of_chunks();
                    }
                    return (frame[0], frame[5..].to_vec());
                }
            }
            assert!(self.chunked, "the body ended inside a frame");
            let size = self.chunk_size();
            assert!(size > 0, "the body ended inside a frame");
            while self.read.len() < size + 2 {
                self.fill();
            }
            self.body.extend(self.read.drain(..size));
            assert_eq!(self.read.drain(..2).collect::<Vec<_>>(), b"\r\n");
        }
    }

    fn chunk_size(&mut self) -> usize {
        let end = loop {
            if let Some(at) = self.read.windows(2).position(|window| window == b"\r\n") {
                break at;
            }
            self.fill();
        };
        let line = String::from_utf8(self.read.drain(..end + 2).collect()).unwrap();
        usize::from_str_radix(line.trim(), 16).unwrap()
    }

    /// After the trailers frame: the last chunk, and nothing else of this response.
    fn end_of_chunks(&mut self) {
        assert_eq!(self.chunk_size(), 0, "the trailers frame is the body's last");
        while self.read.len() < 2 {
            self.fill();
        }
        assert_eq!(self.read.drain(..2).collect::<Vec<_>>(), b"\r\n");
    }

    /// The next data frame's message, decoded.
    fn message<M: Message + Default>(&mut self) -> M {
        let (flag, payload) = self.frame();
        assert_eq!(flag, 0, "a data frame, not trailers: {}", String::from_utf8_lossy(&payload));
        M::decode(payload.as_slice()).unwrap()
    }

    /// A unary call's whole answer.
    fn answer(&mut self) -> Answer {
        let (status, headers) = self.head();
        assert_eq!(status, 200);
        let mut names: Vec<String> =
            headers.iter().map(|(name, _)| name.clone()).filter(|name| name != "date").collect();
        names.sort();
        if let Some(code) = header(&headers, "grpc-status") {
            assert!(self.body.is_empty() && !self.chunked, "a status alone has no body");
            return Answer { headers: names, frames: Vec::new(), status: code.parse().unwrap() };
        }
        let mut frames = Vec::new();
        loop {
            let (flag, payload) = self.frame();
            if flag & 0x80 != 0 {
                let code = grpc_status(&payload);
                frames.push((flag, payload));
                return Answer { headers: names, frames, status: code };
            }
            frames.push((flag, payload));
        }
    }

    /// A unary call's whole answer: its `grpc-status` (headers or trailers).
    fn unary_status(&mut self) -> i32 {
        let (status, headers) = self.head();
        assert_eq!(status, 200);
        if let Some(code) = header(&headers, "grpc-status") {
            return code.parse().unwrap();
        }
        loop {
            let (flag, payload) = self.frame();
            if flag & 0x80 != 0 {
                return grpc_status(&payload);
            }
        }
    }
}

/// A unary call's whole answer: the names of its head's headers (but `date`), each frame's flag
/// and payload, and its `grpc-status` (from the head or the trailers frame).
#[derive(Debug, PartialEq)]
struct Answer {
    headers: Vec<String>,
    frames: Vec<(u8, Vec<u8>)>,
    status: i32,
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(found, _)| found == name).map(|(_, value)| value.as_str())
}

fn grpc_status(trailers: &[u8]) -> i32 {
    let text = String::from_utf8_lossy(trailers);
    text.lines().find_map(|line| line.strip_prefix("grpc-status:")).unwrap().trim().parse().unwrap()
}

fn watch_room(room_id: &str) -> Vec<u8> {
    sync::WatchRoomRequest { room_id: room_id.to_owned() }.encode_to_vec()
}

/// A `WatchRoom` stream's next state change, skipping presence and heartbeats.
fn next_state(browser: &mut Browser) -> Vec<u8> {
    loop {
        let (flag, payload) = browser.frame();
        assert_eq!(flag, 0);
        let message = sync::WatchRoomResponse::decode(payload.as_slice()).unwrap();
        if let Some(sync::watch_room_response::Event::State(state)) = message.event {
            return state.encode_to_vec();
        }
    }
}

/// The sum of `metric`'s series for `method` whose labels include `extra`, from `/metrics`
/// (integer counters and gauges).
fn metric(addr: &str, metric: &str, method: &str, extra: &str) -> i64 {
    let mut connection = TcpStream::connect(addr).unwrap();
    write!(connection, "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").unwrap();
    let mut text = String::new();
    connection.read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")))
        .filter(|line| line.contains(&format!("method=\"{method}\"")) && line.contains(extra))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<i64>().ok())
        .sum()
}

/// `method`'s open calls and its calls finished `CANCELLED`.
fn open_and_cancelled(addr: &str, method: &str) -> (i64, i64) {
    let cancelled = metric(addr, "xiaowo_grpc_requests_total", method, "code=\"CANCELLED\"");
    (metric(addr, "xiaowo_grpc_open_calls", method, ""), cancelled)
}

#[tokio::test]
async fn browser_watch_streams_carry_what_hyper_carried_and_leave_the_connection_usable() {
    let up = start_up(&[]);
    let channel = up.channel().await;
    let owner = user(&channel, "Owner").await;
    let viewer = user(&channel, "Viewer").await;
    let request = room::CreateRoomRequest { name: "Streams".to_owned(), ..Default::default() };
    let room_id = open_room(&channel, &owner, request).await.room_id;
    join(&channel, &viewer, &room_id, "").await.unwrap();

    // Refused before its stream (no session): a status-only answer, and the connection goes on
    // to serve a unary call, here too.
    let mut refused = Browser::connect(&up.addr);
    refused.post(WATCH_ROOM, &watch_room(&room_id), None);
    let (status, headers) = refused.head();
    assert_eq!((status, header(&headers, "grpc-status")), (200, Some("16")), "{headers:?}");
    assert_eq!(header(&headers, "content-type"), Some("application/grpc-web+proto"));
    let create = session::CreateSessionRequest { display_name: "After".to_owned() }.encode_to_vec();
    refused.post(CREATE_SESSION, &create, None);
    assert_eq!(refused.unary_status(), 0, "the next request on the connection is served");
    assert_eq!(metric(&up.addr, "xiaowo_grpc_web_direct_calls_total", "CreateSession", ""), 1);

    // Malformed requests: the statuses hyper's path gives.
    let mut malformed = Browser::connect(&up.addr);
    malformed.post(WATCH_ROOM, NOT_PROTOBUF, Some(&viewer));
    assert_eq!(malformed.unary_status(), 3, "not protobuf");
    malformed.post_raw(WATCH_ROOM, &[0, 0, 0, 0, 9, 1, 2], Some(&viewer));
    assert_eq!(malformed.unary_status(), 3, "a frame cut short");
    malformed.post(WATCH_ROOM, &sync::WatchRoomRequest { room_id: "nope".to_owned() }.encode_to_vec(), Some(&viewer));
    assert_eq!(malformed.unary_status(), 3, "an invalid room id");

    // One watcher served here, one by hyper (its connection fetched a page first): the same
    // snapshot first, then the same bytes for each change.
    let mut here = Browser::connect(&up.addr);
    here.post(WATCH_ROOM, &watch_room(&room_id), Some(&viewer));
    let mut by_hyper = Browser::connect(&up.addr);
    assert_eq!(by_hyper.get("/metrics"), 200);
    by_hyper.post(WATCH_ROOM, &watch_room(&room_id), Some(&viewer));
    for browser in [&mut here, &mut by_hyper] {
        let (status, headers) = browser.head();
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-type"), Some("application/grpc-web+proto"));
        let first: sync::WatchRoomResponse = browser.message();
        assert!(matches!(first.event, Some(sync::watch_room_response::Event::Snapshot(_))), "{first:?}");
    }
    let change = sync::ChangeMediaRequest {
        room_id: room_id.clone(),
        url: "https://media.example/film.mp4".to_owned(),
        title: "Film".to_owned(),
        duration_ms: 600_000,
        ..Default::default()
    };
    let mut states =
        vec![syncs(&channel).change_media(with_bearer(change, &owner.token)).await.unwrap().into_inner().state];
    for (expected_version, position_ms) in [(1, 1_000), (2, 2_000)] {
        let seek = sync::SeekRequest { room_id: room_id.clone(), expected_version, position_ms };
        states.push(syncs(&channel).seek(with_bearer(seek, &owner.token)).await.unwrap().into_inner().state);
    }
    for state in states {
        let sent = next_state(&mut here);
        assert_eq!(sent, next_state(&mut by_hyper), "both paths carry the same state");
        assert_eq!(sent, state.unwrap().encode_to_vec(), "the state the command answered with");
    }
    assert_eq!(open_and_cancelled(&up.addr, "WatchRoom").0, 2, "both streams are open calls");
    let direct = |method| metric(&up.addr, "xiaowo_grpc_web_direct_calls_total", method, "");
    assert_eq!(direct("WatchRoom"), 5, "the refused, the three malformed and one of the two watchers");

    // Unary calls, on a connection served here and on one hyper serves: the same answers, a
    // message and trailers or a status alone.
    let mut unary_here = Browser::connect(&up.addr);
    let mut unary_by_hyper = Browser::connect(&up.addr);
    assert_eq!(unary_by_hyper.get("/metrics"), 200);
    let state = sync::GetRoomStateRequest { room_id: room_id.clone() }.encode_to_vec();
    let missing = sync::GetRoomStateRequest { room_id: "00000000-0000-4000-8000-000000000000".to_owned() };
    for (request, status) in [(state, 0), (missing.encode_to_vec(), 5), (NOT_PROTOBUF.to_vec(), 3)] {
        unary_here.post(GET_ROOM_STATE, &request, Some(&viewer));
        unary_by_hyper.post(GET_ROOM_STATE, &request, Some(&viewer));
        let answer = unary_here.answer();
        assert_eq!(answer, unary_by_hyper.answer(), "both paths answer the same");
        assert_eq!(answer.status, status, "{answer:?}");
        assert_eq!(answer.frames.len(), if status == 0 { 2 } else { 0 }, "a message and trailers, or a status alone");
    }
    assert_eq!(direct("GetRoomState"), 3, "those sent on the connection served here");
    // A method the service does not have: UNIMPLEMENTED on both paths, counted under one
    // label, not under each made-up name.
    for name in ["MadeUp1", "MadeUp2"] {
        let path = format!("/xiaowo.sync.v1.SyncService/{name}");
        unary_here.post(&path, &[], Some(&viewer));
        unary_by_hyper.post(&path, &[], Some(&viewer));
        assert_eq!(unary_here.unary_status(), 12);
        assert_eq!(unary_by_hyper.unary_status(), 12);
    }
    let unimplemented = |method| metric(&up.addr, "xiaowo_grpc_requests_total", method, "code=\"UNIMPLEMENTED\"");
    assert_eq!((unimplemented("unknown"), unimplemented("MadeUp1")), (4, 0));
    assert_eq!((direct("unknown"), direct("MadeUp2")), (2, 0));

    // Chat: each message is one frame on the stream, once.
    let mut chatting = Browser::connect(&up.addr);
    let watch = chat::WatchMessagesRequest { room_id: room_id.clone(), after_seq: Some(0) }.encode_to_vec();
    chatting.post(WATCH_MESSAGES, &watch, Some(&viewer));
    assert_eq!(chatting.head().0, 200);
    let caught_up: chat::WatchMessagesResponse = chatting.message();
    assert!(matches!(caught_up.event, Some(chat::watch_messages_response::Event::CaughtUp(_))), "{caught_up:?}");
    for (index, text) in ["first", "second"].into_iter().enumerate() {
        let send = chat::SendMessageRequest {
            room_id: room_id.clone(),
            text: text.to_owned(),
            client_message_id: format!("m{index}"),
        };
        chats(&channel).send_message(with_bearer(send, &owner.token)).await.unwrap();
        let received: chat::WatchMessagesResponse = chatting.message();
        let Some(chat::watch_messages_response::Event::Message(message)) = received.event else {
            panic!("a message: {received:?}")
        };
        assert_eq!(message.text, text, "each message once, in order");
    }
    assert_eq!(direct("WatchMessages"), 1);

    // A watcher who closes the connection is a cancelled call, and no longer open.
    let (open, cancelled) = open_and_cancelled(&up.addr, "WatchMessages");
    assert_eq!(open, 1);
    drop(chatting);
    eventually("the stream closed as its watcher left", async || {
        open_and_cancelled(&up.addr, "WatchMessages") == (0, cancelled + 1)
    })
    .await;

    // A stream the service ends: the same trailers on both paths, after which the connection
    // served here serves the next request too.
    let close = room::CloseRoomRequest { room_id: room_id.clone() };
    rooms(&channel).close_room(with_bearer(close, &owner.token)).await.unwrap();
    let trailers = |browser: &mut Browser| loop {
        let (flag, payload) = browser.frame();
        if flag & 0x80 != 0 {
            return String::from_utf8(payload).unwrap();
        }
    };
    let ended = trailers(&mut here);
    assert_eq!(grpc_status(ended.as_bytes()), 9, "{ended}");
    assert_eq!(ended, trailers(&mut by_hyper));
    here.post(GET_CLOCK, &sync::GetClockRequest {}.encode_to_vec(), None);
    assert_eq!(here.unary_status(), 0, "the next request on the connection is served");
    assert_eq!(open_and_cancelled(&up.addr, "WatchRoom").0, 0);
}

/// A connection left waiting for its next request is closed after 30 s, as hyper closes one that
/// takes that long to send a head.
#[tokio::test]
async fn a_connection_that_sends_no_next_request_is_closed_after_30_s() {
    let up = start_up(&[]);
    let mut quiet = Browser::connect(&up.addr);
    quiet.stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    quiet.post(WATCH_ROOM, &watch_room("00000000-0000-4000-8000-000000000000"), None);
    assert_eq!(quiet.unary_status(), 16, "refused without a session; the connection stays open");
    let waiting = std::time::Instant::now();
    let mut rest = Vec::new();
    quiet.stream.read_to_end(&mut rest).unwrap();
    let waited = waiting.elapsed();
    assert!(rest.is_empty(), "nothing more was sent: {rest:?}");
    assert!(waited >= Duration::from_secs(29), "closed after {waited:?}, not at once");
}
