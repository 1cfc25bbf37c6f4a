//! A real stack for media-svc's tests: session-svc, room-svc, sync-svc and media-svc in one
//! server on a loopback port (as `xiaowo up` runs them), started through the binary's own path
//! by `xiaowo::testing::Stack` (SQLite files, the internal token set, a manual clock) with a
//! media directory in the stack's temporary directory; media made by ffmpeg.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use proto::media::v1 as pb;
use proto::media::v1::media_admin_service_client::MediaAdminServiceClient;
use proto::media::v1::media_service_client::MediaServiceClient;
use proto::room::v1 as room_pb;
use proto::room::v1::room_service_client::RoomServiceClient;
use proto::sync::v1 as sync_pb;
use proto::sync::v1::sync_service_client::SyncServiceClient;
use svc_kit::clock::ManualClock;
use tokio::io::AsyncWriteExt;
use tonic::transport::Channel;
use xiaowo::node::Target;
use xiaowo::testing::Node;

pub use xiaowo::testing::{User, as_admin, as_user};

/// How long a condition may take to come true before a test fails.
pub const WAIT: Duration = Duration::from_secs(30);
const TARGETS: [Target; 4] = [Target::Session, Target::Room, Target::Sync, Target::Media];

/// What a test wants different from the defaults.
pub struct Options {
    pub config: media_svc::Config,
}

impl Options {
    pub fn new() -> Self {
        let mut config: media_svc::Config = svc_kit::testing::from_env();
        config.scan_interval = Duration::from_millis(200);
        config.janitor_interval = Duration::from_millis(200);
        config.min_free_disk_bytes = 0;
        Self { config }
    }
}

/// The running stack; its databases and media directory survive a restart (`restart`).
pub struct Stack {
    pub stack: xiaowo::testing::Stack,
    pub server: Node,
    pub media_dir: PathBuf,
}

impl Stack {
    pub async fn start(options: Options) -> Self {
        Self::start_on(xiaowo::testing::Stack::new().await, options).await
    }

    /// Stops the server and starts a new one on the same databases and media directory.
    pub async fn restart(self, options: Options) -> Self {
        let Self { stack, server, .. } = self;
        server.stop().await;
        Self::start_on(stack, options).await
    }

    async fn start_on(mut stack: xiaowo::testing::Stack, options: Options) -> Self {
        let Options { mut config } = options;
        let media_dir = stack.common.media.media_dir.clone().expect("the stack names a media directory");
        config.media_dir = Some(media_dir.clone());
        stack.common.media = config;
        let server = stack.start(&TARGETS).await;
        Self { stack, server, media_dir }
    }

    /// The clock every service reads (manual: tests move it).
    pub fn clock(&self) -> &ManualClock {
        &self.stack.clock
    }

    pub async fn user(&self, name: &str) -> User {
        self.stack.user(name).await
    }

    pub fn media(&self) -> MediaServiceClient<Channel> {
        MediaServiceClient::new(self.server.channel())
    }

    pub fn admin(&self) -> MediaAdminServiceClient<Channel> {
        MediaAdminServiceClient::new(self.server.channel())
    }

    pub fn sync(&self) -> SyncServiceClient<Channel> {
        SyncServiceClient::new(self.server.channel())
    }

    pub fn rooms(&self) -> RoomServiceClient<Channel> {
        RoomServiceClient::new(self.server.channel())
    }

    pub async fn open_room(&self, owner: &User) -> String {
        let request = room_pb::CreateRoomRequest { name: "Film night".to_owned(), ..Default::default() };
        self.rooms().create_room(as_user(request, owner)).await.unwrap().into_inner().room.unwrap().room_id
    }

    pub async fn join(&self, user: &User, room_id: &str) {
        let request = room_pb::JoinRoomRequest { room_id: room_id.to_owned(), password: String::new() };
        self.rooms().join_room(as_user(request, user)).await.unwrap();
    }

    /// Queues a library item in the room.
    pub async fn queue(&self, user: &User, room_id: &str, media_item_id: &str) {
        let request = sync_pb::AddQueueItemRequest {
            room_id: room_id.to_owned(),
            library_item_id: media_item_id.to_owned(),
            title: "From the library".to_owned(),
            ..Default::default()
        };
        self.sync().add_queue_item(as_user(request, user)).await.unwrap();
    }

    pub async fn item(&self, user: &User, room_id: &str, media_item_id: &str) -> Result<pb::MediaItem, tonic::Status> {
        let request = pb::GetMediaItemRequest { media_item_id: media_item_id.to_owned(), room_id: room_id.to_owned() };
        self.media()
            .get_media_item(as_user(request, user))
            .await
            .map(|response| response.into_inner().media_item.unwrap())
    }

    /// A playback URL for `user`.
    pub async fn playback_url(&self, user: &User, room_id: &str, media_item_id: &str) -> Result<String, tonic::Status> {
        let request =
            pb::CreatePlaybackUrlRequest { room_id: room_id.to_owned(), media_item_id: media_item_id.to_owned() };
        self.media().create_playback_url(as_user(request, user)).await.map(|response| response.into_inner().url)
    }

    pub fn http(&self) -> Http {
        Http { base: self.server.url.clone(), addr: self.server.addr }
    }

    /// Files under `.xiaowo/uploads` (unfinished uploads' bytes).
    pub fn partial_files(&self) -> Vec<PathBuf> {
        files_in(&self.media_dir.join(".xiaowo").join("uploads"))
    }

    /// Finished uploads' files.
    pub fn uploaded_files(&self) -> Vec<PathBuf> {
        files_in(&self.media_dir.join("uploads"))
    }
}

pub fn files_in(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).map(|entries| entries.flatten().map(|entry| entry.path()).collect()).unwrap_or_default()
}

/// Waits until `check` returns `Some`, polling.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An HTTP answer.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// The `Xiaowo-Error` reason of a refusal.
    pub fn reason(&self) -> &str {
        self.header("xiaowo-error").unwrap_or_default()
    }
}

/// Plain HTTP/1.1 to the stack.
pub struct Http {
    pub base: String,
    addr: std::net::SocketAddr,
}

impl Http {
    pub async fn send(&self, method: Method, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> Answer {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
        let mut request = http::Request::builder().method(method).uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let response = client.request(request.body(Full::new(Bytes::from(body))).unwrap()).await.unwrap();
        let (parts, body) = response.into_parts();
        Answer { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
    }

    /// A request line written as is (no normalisation of `..`), the answer's status.
    pub async fn raw_status(&self, path: &str, user: &User) -> u16 {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            self.addr, user.token
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut answer).await.unwrap();
        let text = String::from_utf8_lossy(&answer);
        text.split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
    }

    fn tus(user: &User) -> Vec<(&'static str, String)> {
        vec![("authorization", format!("Bearer {}", user.token)), ("tus-resumable", "1.0.0".to_owned())]
    }

    /// POSTs a new upload; its path on success.
    pub async fn create_upload(&self, user: &User, length: u64, file_name: &str, room_id: &str) -> Answer {
        use base64::Engine;
        let encode = |value: &str| base64::engine::general_purpose::STANDARD.encode(value);
        let mut metadata = format!("filename {}", encode(file_name));
        if !room_id.is_empty() {
            metadata.push_str(&format!(",room {}", encode(room_id)));
        }
        let mut headers = Self::tus(user);
        headers.push(("upload-length", length.to_string()));
        headers.push(("upload-metadata", metadata));
        self.send(Method::POST, "/media/uploads", &headers, Vec::new()).await
    }

    pub async fn patch(&self, user: &User, location: &str, offset: u64, bytes: &[u8]) -> Answer {
        let mut headers = Self::tus(user);
        headers.push(("upload-offset", offset.to_string()));
        headers.push(("content-type", "application/offset+octet-stream".to_owned()));
        self.send(Method::PATCH, location, &headers, bytes.to_vec()).await
    }

    pub async fn head(&self, user: &User, location: &str) -> Answer {
        self.send(Method::HEAD, location, &Self::tus(user), Vec::new()).await
    }

    pub async fn terminate(&self, user: &User, location: &str) -> Answer {
        self.send(Method::DELETE, location, &Self::tus(user), Vec::new()).await
    }

    /// Starts a PATCH of everything from `offset`, sends `sent` bytes of it and drops the
    /// connection, as a browser whose network went away would.
    pub async fn patch_and_cut(&self, user: &User, location: &str, offset: u64, rest: &[u8], sent: usize) {
        let mut stream = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let head = format!(
            "PATCH {location} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nTus-Resumable: 1.0.0\r\n\
             Content-Type: application/offset+octet-stream\r\nUpload-Offset: {offset}\r\nContent-Length: {}\r\n\r\n",
            self.addr,
            user.token,
            rest.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&rest[..sent]).await.unwrap();
        stream.flush().await.unwrap();
        drop(stream);
    }

    /// The stored offset of an upload, once no request is writing to it.
    pub async fn settled_offset(&self, user: &User, location: &str, expected: u64) -> u64 {
        eventually("the upload's offset to settle", || async {
            let answer = self.head(user, location).await;
            let offset: u64 = answer.header("upload-offset")?.parse().ok()?;
            (offset == expected).then_some(offset)
        })
        .await
    }

    /// Uploads `bytes` in one go; the final answer.
    pub async fn upload(&self, user: &User, bytes: &[u8], file_name: &str, room_id: &str) -> Answer {
        let created = self.create_upload(user, bytes.len() as u64, file_name, room_id).await;
        assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
        let location = created.header("location").unwrap().to_owned();
        self.patch(user, &location, 0, bytes).await
    }

    pub async fn get(&self, path: &str, headers: &[(&str, String)]) -> Answer {
        self.send(Method::GET, path, headers, Vec::new()).await
    }

    /// A GET over HTTP/2 (prior knowledge, as gRPC clients speak to the port).
    pub async fn get_http2(&self, path: &str, headers: &[(&str, String)]) -> Answer {
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http::<Full<Bytes>>();
        let mut request = http::Request::builder().uri(format!("{}{path}", self.base));
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let response = client.request(request.body(Full::default()).unwrap()).await.unwrap();
        assert_eq!(response.version(), http::Version::HTTP_2);
        let (parts, body) = response.into_parts();
        Answer { status: parts.status, headers: parts.headers, body: body.collect().await.unwrap().to_bytes() }
    }
}

/// One HTTP/1.1 connection kept open across requests and read through a small receive buffer,
/// so that a large answer fills the server's side and it has to wait for room.
pub struct KeptConnection {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    host: String,
}

impl KeptConnection {
    pub async fn open(http: &Http, receive_buffer: u32) -> Self {
        let socket =
            if http.addr.is_ipv4() { tokio::net::TcpSocket::new_v4() } else { tokio::net::TcpSocket::new_v6() };
        let socket = socket.unwrap();
        socket.set_recv_buffer_size(receive_buffer).unwrap();
        let stream = socket.connect(http.addr).await.unwrap();
        Self { stream: tokio::io::BufReader::with_capacity(4096, stream), host: http.addr.to_string() }
    }

    /// Sends one request and reads its whole answer (a body as long as `Content-Length`).
    pub async fn send(&mut self, method: Method, path: &str, headers: &[(&str, String)]) -> Answer {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt};
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        self.stream.get_mut().write_all(request.as_bytes()).await.unwrap();
        let mut line = String::new();
        self.stream.read_line(&mut line).await.unwrap();
        let status = line.split_whitespace().nth(1).and_then(|code| code.parse().ok()).expect("a status line");
        let mut answer = Answer { status, headers: HeaderMap::new(), body: Bytes::new() };
        loop {
            line.clear();
            self.stream.read_line(&mut line).await.unwrap();
            let Some((name, value)) = line.trim_end().split_once(':') else { break };
            let name = http::HeaderName::from_bytes(name.as_bytes()).unwrap();
            answer.headers.append(name, value.trim().parse().unwrap());
        }
        let length: usize = answer.header("content-length").map_or(0, |length| length.parse().unwrap());
        if method != Method::HEAD {
            let mut body = vec![0; length];
            self.stream.read_exact(&mut body).await.unwrap();
            answer.body = Bytes::from(body);
        }
        answer
    }
}

pub fn bearer(user: &User) -> (&'static str, String) {
    ("authorization", format!("Bearer {}", user.token))
}

// ---------------------------------------------------------------------------------------------
// Media made by ffmpeg, once per test run, under Cargo's scratch directory for tests.

pub fn fixture(name: &str, args: &[&str]) -> PathBuf {
    static LOCK: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _guard = LOCK.get_or_init(Default::default).lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("media-fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    if !path.exists() {
        let partial = dir.join(format!("partial-{name}"));
        let status = std::process::Command::new("ffmpeg")
            .args(["-loglevel", "error", "-y"])
            .args(args)
            .arg(&partial)
            .status()
            .expect("ffmpeg runs");
        assert!(status.success(), "ffmpeg made {name}");
        std::fs::rename(&partial, &path).unwrap();
    }
    path
}

const VIDEO: [&str; 4] = ["-f", "lavfi", "-i", "testsrc=size=320x180:rate=25"];
const AUDIO: [&str; 4] = ["-f", "lavfi", "-i", "sine=frequency=440"];

/// A 60 s H.264/AAC MP4.
pub fn minute_mp4() -> Vec<u8> {
    let path = fixture(
        "minute.mp4",
        &[
            &VIDEO[..],
            &AUDIO[..],
            &["-t", "60", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mp4"],
        ]
        .concat(),
    );
    std::fs::read(path).unwrap()
}

/// A 4 s H.264/AAC MP4.
pub fn short_mp4() -> Vec<u8> {
    let path = fixture(
        "short.mp4",
        &[
            &VIDEO[..],
            &AUDIO[..],
            &["-t", "4", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mp4"],
        ]
        .concat(),
    );
    std::fs::read(path).unwrap()
}

/// A 4 s MPEG-4 part 2 / MP2 AVI: media no browser plays.
pub fn short_avi() -> Vec<u8> {
    let path = fixture(
        "short.avi",
        &[&VIDEO[..], &AUDIO[..], &["-t", "4", "-c:v", "mpeg4", "-c:a", "mp2", "-f", "avi"]].concat(),
    );
    std::fs::read(path).unwrap()
}
