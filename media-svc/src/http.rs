//! The plain HTTP edge, on the same port as gRPC: tus 1.0 uploads (core, creation, termination,
//! expiration) at `/media/uploads`, the library's files at `GET /media/<id>` through signed
//! URLs, converted items' HLS at `GET /media/<id>/hls/<grant>/<file>`, and thumbnails. Range
//! requests, `ETag`/`Last-Modified` and conditional requests are tower-http's `ServeFile`; this
//! adds the signed-URL check, the `Content-Type` from probing, caching headers and `If-Range`,
//! which `ServeFile` does not honour.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, options};
use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use svc_kit::auth::{AuthError, Caller, Guard};
use svc_kit::id::RoomId;
use tower::ServiceExt;
use tower_http::services::ServeFile;

use crate::Error;
use crate::convert;
use crate::error::HttpError;
use crate::library::{HLS_CONTENT_TYPE, Library};
use crate::signing::{parse_grant, parse_query};
use crate::uploads::NewUpload;

/// The tus protocol version spoken.
const TUS_VERSION: &str = "1.0.0";
const TUS_EXTENSIONS: &str = "creation,termination,expiration";
const OFFSET_STREAM: &str = "application/offset+octet-stream";
/// What a thumbnail that does not exist yet shows: a dark frame with a play sign.
const PLACEHOLDER_SVG: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 320 180\">\
    <rect width=\"320\" height=\"180\" fill=\"#2b2f36\"/><path d=\"M140 65v50l40-25z\" fill=\"#9aa3ad\"/></svg>";
/// Read size when serving files: larger reads mean fewer trips to the blocking pool (a player's
/// typical range, and the benchmark's, is 1 MiB: one read).
const SERVE_CHUNK_BYTES: usize = 1024 * 1024;

static TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
pub(crate) static UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
pub(crate) static UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
static UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
static MEDIA_ITEM_ID: HeaderName = HeaderName::from_static("xiaowo-media-item-id");
static ERROR_REASON: HeaderName = HeaderName::from_static("xiaowo-error");
/// Sent by nginx in split mode (`deploy/nginx`, when it is given the media directory): the
/// internal location from which nginx serves that directory itself. Files are then answered
/// with `X-Accel-Redirect` to it: media-svc checks the request, nginx sends the bytes.
static ACCEL_PREFIX: HeaderName = HeaderName::from_static("x-xiaowo-accel-prefix");
static ACCEL_REDIRECT: HeaderName = HeaderName::from_static("x-accel-redirect");

/// What the routes share.
#[derive(Debug)]
pub struct HttpState {
    pub library: Arc<Library>,
    /// media-svc's session guard: these routes identify callers by the same rule (and count
    /// refusals in the same place) as its gRPC services, and answer in HTTP's terms.
    pub guard: Guard,
}

/// media-svc's plain HTTP routes.
pub fn router(state: Arc<HttpState>) -> axum::Router {
    axum::Router::new()
        .route("/media/uploads", options(tus_options).post(create_upload))
        .route("/media/uploads/{upload_id}", options(tus_options).head(upload_status).patch(append).delete(terminate))
        .route("/media/{media_item_id}", get(serve_file))
        .route("/media/{media_item_id}/thumbnail", get(serve_thumbnail))
        .route("/media/{media_item_id}/subtitles/{file}", get(crate::subtitles::serve_track))
        .route("/media/{media_item_id}/hls/{grant}/{file}", get(serve_hls))
        // Anything else under /media/ (`..` segments included) is nobody's file.
        .route("/media/{first}/{second}/{*rest}", any(not_found))
        .with_state(state)
}

fn http_date(unix_ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(unix_ms).unwrap_or(0));
    httpdate::fmt_http_date(at)
}

fn header_value(value: &str) -> HeaderValue {
    HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(crate) fn error_response(error: Error, tus: bool) -> Response {
    let HttpError { status, reason, message } = HttpError::from(error);
    let mut response = (status, message).into_response();
    let headers = response.headers_mut();
    headers.insert(&ERROR_REASON, HeaderValue::from_static(reason));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if tus {
        headers.insert(&TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
        if status == StatusCode::PRECONDITION_FAILED {
            headers.insert(HeaderName::from_static("tus-version"), HeaderValue::from_static(TUS_VERSION));
        }
    }
    response
}

impl HttpState {
    fn count(&self, route: &str, status: StatusCode) {
        self.library.metrics.http_requests.with_label_values(&[route, status.as_str()]).inc();
    }

    /// The session behind the request's cookie or bearer token.
    async fn caller(&self, headers: &HeaderMap) -> Result<Caller, Error> {
        Ok(self.guard.identify(headers).await?)
    }
}

pub(crate) fn check_tus_version(headers: &HeaderMap) -> Result<(), Error> {
    match headers.get(&TUS_RESUMABLE) {
        Some(version) if version == TUS_VERSION => Ok(()),
        _ => Err(Error::UnsupportedTusVersion),
    }
}

pub(crate) fn header_u64(headers: &HeaderMap, name: &HeaderName, missing: &'static str) -> Result<u64, Error> {
    headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.trim().parse::<u64>().ok())
        .ok_or(Error::BadUploadRequest(missing))
}

/// `Upload-Metadata`: comma-separated `key base64value` pairs.
pub(crate) fn metadata_value(headers: &HeaderMap, key: &str) -> Option<String> {
    let raw = headers.get("upload-metadata")?.to_str().ok()?;
    raw.split(',').find_map(|pair| {
        let mut parts = pair.trim().splitn(2, ' ');
        (parts.next()? == key).then_some(())?;
        let decoded = base64::engine::general_purpose::STANDARD.decode(parts.next().unwrap_or_default().trim()).ok()?;
        String::from_utf8(decoded).ok()
    })
}

async fn tus_options(State(state): State<Arc<HttpState>>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(&TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
    headers.insert(HeaderName::from_static("tus-version"), HeaderValue::from_static(TUS_VERSION));
    headers.insert(HeaderName::from_static("tus-extension"), HeaderValue::from_static(TUS_EXTENSIONS));
    headers.insert(
        HeaderName::from_static("tus-max-size"),
        header_value(&state.library.limits().max_file_bytes.to_string()),
    );
    response
}

async fn create_upload(State(state): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let result = async {
        check_tus_version(&headers)?;
        let caller = state.caller(&headers).await?;
        if headers.contains_key("upload-defer-length") {
            return Err(Error::BadUploadRequest("Uploads of unknown length are not supported."));
        }
        let length_bytes = header_u64(&headers, &UPLOAD_LENGTH, "Upload-Length is missing or not a number.")?;
        let new = NewUpload {
            length_bytes,
            file_name: metadata_value(&headers, "filename").unwrap_or_default(),
            room_id: match metadata_value(&headers, "room") {
                Some(room) if !room.trim().is_empty() => Some(RoomId::parse("room", &room)?),
                _ => None,
            },
        };
        state.library.create_upload(&caller, new).await
    }
    .await;
    match result {
        Ok(upload) => {
            state.count("upload_create", StatusCode::CREATED);
            let mut response = StatusCode::CREATED.into_response();
            let headers = response.headers_mut();
            headers.insert(&TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
            headers.insert(header::LOCATION, header_value(&format!("/media/uploads/{}", upload.upload_id)));
            headers.insert(&UPLOAD_OFFSET, HeaderValue::from(0_u64));
            headers.insert(&UPLOAD_EXPIRES, header_value(&http_date(upload.expires_at)));
            response
        }
        Err(error) => {
            let response = error_response(error, true);
            state.count("upload_create", response.status());
            response
        }
    }
}

async fn upload_status(
    State(state): State<Arc<HttpState>>,
    Path(upload_id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        check_tus_version(&headers)?;
        let caller = state.caller(&headers).await?;
        state.library.upload_of(&caller, &upload_id).await
    }
    .await;
    match result {
        Ok(upload) => {
            state.count("upload_head", StatusCode::OK);
            let mut response = StatusCode::OK.into_response();
            let headers = response.headers_mut();
            headers.insert(&TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
            headers.insert(&UPLOAD_OFFSET, HeaderValue::from(upload.offset_bytes));
            headers.insert(&UPLOAD_LENGTH, HeaderValue::from(upload.length_bytes));
            headers.insert(&UPLOAD_EXPIRES, header_value(&http_date(upload.expires_at)));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => {
            let response = error_response(error, true);
            state.count("upload_head", response.status());
            response
        }
    }
}

async fn append(State(state): State<Arc<HttpState>>, Path(upload_id): Path<String>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let result = async {
        check_tus_version(&headers)?;
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok());
        if content_type.is_none_or(|value| !value.eq_ignore_ascii_case(OFFSET_STREAM)) {
            return Err(Error::WrongContentType);
        }
        let offset = header_u64(&headers, &UPLOAD_OFFSET, "Upload-Offset is missing or not a number.")?;
        let caller = state.caller(&headers).await?;
        state.library.append(&caller, &upload_id, offset, body.into_data_stream()).await
    }
    .await;
    match result {
        Ok(appended) => {
            state.count("upload_patch", StatusCode::NO_CONTENT);
            let mut response = StatusCode::NO_CONTENT.into_response();
            let headers = response.headers_mut();
            headers.insert(&TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
            headers.insert(&UPLOAD_OFFSET, HeaderValue::from(appended.offset_bytes));
            headers.insert(&UPLOAD_EXPIRES, header_value(&http_date(appended.expires_at)));
            if let Some(item) = appended.item {
                headers.insert(&MEDIA_ITEM_ID, header_value(&item.media_item_id));
            }
            response
        }
        Err(error) => {
            let expected = match &error {
                Error::OffsetMismatch { expected } => Some(*expected),
                _ => None,
            };
            let mut response = error_response(error, true);
            if let Some(expected) = expected {
                response.headers_mut().insert(&UPLOAD_OFFSET, HeaderValue::from(expected));
            }
            state.count("upload_patch", response.status());
            response
        }
    }
}

async fn terminate(State(state): State<Arc<HttpState>>, Path(upload_id): Path<String>, headers: HeaderMap) -> Response {
    let result = async {
        check_tus_version(&headers)?;
        let caller = state.caller(&headers).await?;
        state.library.cancel_upload(&caller, &upload_id).await
    }
    .await;
    let response = match result {
        Ok(()) => {
            let mut response = StatusCode::NO_CONTENT.into_response();
            response.headers_mut().insert(&TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
            response
        }
        Err(error) => error_response(error, true),
    };
    state.count("upload_delete", response.status());
    response
}

/// Why a playback URL was refused, for the metric.
enum Refused {
    Missing,
    Forged,
    Expired,
    NoSession,
    OtherUser,
}

impl Refused {
    fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Forged => "forged",
            Self::Expired => "expired",
            Self::NoSession => "no_session",
            Self::OtherUser => "other_user",
        }
    }

    fn words(&self) -> &'static str {
        match self {
            Self::Missing => "incomplete",
            Self::Forged => "not valid",
            Self::Expired => "expired",
            Self::NoSession | Self::OtherUser => "someone else's",
        }
    }
}

impl HttpState {
    /// The file a signed URL plays, after `authorize_signed`.
    async fn authorize(
        &self,
        media_item_id: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<(std::path::PathBuf, String), Error> {
        self.authorize_signed(media_item_id, query, headers).await?;
        let file = self.library.served_file(media_item_id).await?;
        Ok((file.path, file.content_type))
    }

    /// Checks a signed URL of `media_item_id` (its file, or its subtitle tracks): the
    /// signature, the expiry, and that the session is the one the URL was made for.
    pub(crate) async fn authorize_signed(
        &self,
        media_item_id: &str,
        query: Option<&str>,
        headers: &HeaderMap,
    ) -> Result<(), Error> {
        self.check_signed(media_item_id, query.and_then(parse_query), headers).await
    }

    /// Checks a grant (from a URL's query, or an HLS path): made here for this item,
    /// unexpired, and presented by the session it was made for.
    async fn check_signed(
        &self,
        media_item_id: &str,
        signed: Option<crate::signing::SignedQuery>,
        headers: &HeaderMap,
    ) -> Result<(), Error> {
        Library::check_item_id(media_item_id)?;
        let refuse = |refused: Refused| {
            self.library.metrics.url_refusals.with_label_values(&[refused.reason()]).inc();
            Error::UrlRefused(refused.words())
        };
        let signed = signed.ok_or_else(|| refuse(Refused::Missing))?;
        if !self.library.signer.verify(media_item_id, &signed) {
            return Err(refuse(Refused::Forged));
        }
        if signed.expires.saturating_mul(1000) <= self.library.now_ms() {
            return Err(refuse(Refused::Expired));
        }
        let caller = match self.caller(headers).await {
            Ok(caller) => caller,
            Err(Error::Auth(AuthError::Unauthenticated)) => return Err(refuse(Refused::NoSession)),
            Err(error) => return Err(error),
        };
        if caller.user_id.as_str() != signed.user_id {
            return Err(refuse(Refused::OtherUser));
        }
        Ok(())
    }
}

/// Serves `path` with tower-http, then applies `If-Range`: a range whose validator no longer
/// matches the file gets the whole file instead.
pub(crate) async fn serve_with_tower(path: &std::path::Path, content_type: &str, request: Request) -> Response {
    let mime: mime::Mime = content_type.parse().unwrap_or(mime::APPLICATION_OCTET_STREAM);
    let serve = ServeFile::new_with_mime(path, &mime).with_buf_chunk_size(SERVE_CHUNK_BYTES);
    let if_range = request.headers().get(header::IF_RANGE).cloned();
    let full_request = if_range.is_some().then(|| {
        let mut full = Request::new(Body::empty());
        *full.method_mut() = request.method().clone();
        *full.uri_mut() = request.uri().clone();
        *full.headers_mut() = request.headers().clone();
        full.headers_mut().remove(header::RANGE);
        full.headers_mut().remove(header::IF_RANGE);
        full
    });
    let is_get = request.method() == http::Method::GET;
    let sender = svc_kit::sendfile::FileSender::for_request(&request);
    let response = match serve.clone().oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let response = if let (Some(if_range), Some(full_request)) = (if_range, full_request)
        && response.status() == StatusCode::PARTIAL_CONTENT
        && !if_range_matches(&if_range, response.headers())
    {
        match serve.oneshot(full_request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    } else {
        response
    };
    let Some(range) = sent_range(&response).filter(|_| is_get) else {
        return response.map(Body::new);
    };
    let (parts, _unread) = response.into_parts();
    // An HTTP/1.1 connection of this server sends the file itself, from the page cache.
    let opened = match sender {
        Some(sender) => tokio::fs::File::open(path).await.ok().map(|file| (sender, file)),
        None => None,
    };
    let body = match opened {
        Some((sender, file)) => Body::new(sender.body(file.into_std().await, range)),
        None => file_range_body(path.to_owned(), range),
    };
    Response::from_parts(parts, body)
}

/// The bytes of the file a 200 or single-range 206 answer of `ServeFile` sends.
fn sent_range<B>(response: &http::Response<B>) -> Option<std::ops::Range<u64>> {
    let header_text = |name| response.headers().get(name).and_then(|value: &HeaderValue| value.to_str().ok());
    match response.status() {
        StatusCode::OK => Some(0..header_text(header::CONTENT_LENGTH)?.parse().ok()?),
        StatusCode::PARTIAL_CONTENT => {
            let (first, last) =
                header_text(header::CONTENT_RANGE)?.strip_prefix("bytes ")?.split('/').next()?.split_once('-')?;
            let (first, last): (u64, u64) = (first.parse().ok()?, last.parse().ok()?);
            (first <= last).then(|| first..last.saturating_add(1))
        }
        _ => None,
    }
}

/// `range` of the file at `path`, read on the blocking pool with `pread` straight into the
/// buffers the connection sends, at most `SERVE_CHUNK_BYTES` per trip: for connections that
/// cannot send from the file (HTTP/2). (`ServeFile` decides the status and headers; its own
/// body reads through `tokio::fs::File`, which copies every read once more out of a buffer of
/// its own.) A file that shrinks meanwhile ends the body with an error, as it would there.
fn file_range_body(path: std::path::PathBuf, range: std::ops::Range<u64>) -> Body {
    // The file once opened by the first piece, its path until then.
    let pieces = futures_util::stream::try_unfold((Err(path), range), |(file, range)| async move {
        if range.is_empty() {
            return Ok(None);
        }
        let length = usize::try_from(range.end - range.start).unwrap_or(usize::MAX).min(SERVE_CHUNK_BYTES);
        let (file, piece) = tokio::task::spawn_blocking(move || {
            let file = match file {
                Ok(file) => file,
                Err(path) => std::fs::File::open(path)?,
            };
            let mut piece = Vec::with_capacity(length);
            let read = rustix::io::pread(&file, rustix::buffer::spare_capacity(&mut piece), range.start)?;
            if read == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
            Ok::<_, std::io::Error>((file, piece))
        })
        .await
        .map_err(std::io::Error::other)??;
        let next = range.start + piece.len() as u64..range.end;
        Ok::<_, std::io::Error>(Some((bytes::Bytes::from(piece), (Ok::<_, std::path::PathBuf>(file), next))))
    });
    Body::from_stream(pieces)
}

/// RFC 9110 §13.1.5: an entity tag matches strongly, a date exactly the `Last-Modified`.
fn if_range_matches(if_range: &HeaderValue, response: &HeaderMap) -> bool {
    let value = if_range.as_bytes();
    if value.starts_with(b"\"") {
        response.get(header::ETAG).is_some_and(|etag| etag.as_bytes() == value)
    } else if value.starts_with(b"W/") {
        false
    } else {
        response.get(header::LAST_MODIFIED).is_some_and(|modified| modified.as_bytes() == value)
    }
}

async fn serve_file(
    State(state): State<Arc<HttpState>>,
    Path(media_item_id): Path<String>,
    request: Request,
) -> Response {
    let (query, headers) = (request.uri().query().map(str::to_owned), request.headers().clone());
    let authorized = state.authorize(&media_item_id, query.as_deref(), &headers).await;
    let (route, response) = match authorized {
        // Per user and short-lived: only the browser that asked may keep it.
        Ok((path, content_type)) => state.library_file(&path, &content_type, "private, max-age=600", request).await,
        Err(error) => (Served::Here, error_response(error, false)),
    };
    state.count(route.route("file", "file_accel"), response.status());
    response
}

/// Who sends a file's bytes.
#[derive(Clone, Copy, Debug)]
enum Served {
    Here,
    /// nginx, told where by `X-Accel-Redirect`.
    ByProxy,
}

impl Served {
    /// The metrics' route label: `here`, or `by_proxy` when nginx sent the bytes.
    fn route(self, here: &'static str, by_proxy: &'static str) -> &'static str {
        match self {
            Self::Here => here,
            Self::ByProxy => by_proxy,
        }
    }
}

impl HttpState {
    /// Answers with a file of the media directory whose request has been checked: through
    /// nginx's `X-Accel-Redirect` when the request came through a proxy that offers it, else
    /// read here.
    async fn library_file(
        &self,
        path: &std::path::Path,
        content_type: &str,
        cache_control: &'static str,
        request: Request,
    ) -> (Served, Response) {
        let (served, mut response) = match accel_target(request.headers(), &self.library.dirs.root, path) {
            Some(target) => {
                let mut response = StatusCode::OK.into_response();
                let headers = response.headers_mut();
                headers.insert(&ACCEL_REDIRECT, target);
                headers.insert(header::CONTENT_TYPE, header_value(content_type));
                (Served::ByProxy, response)
            }
            None => (Served::Here, serve_with_tower(path, content_type, request).await),
        };
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache_control));
        headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        (served, response)
    }
}

/// The `X-Accel-Redirect` URI of `path` when the request carries a well-formed prefix and the
/// file is inside `root`: the prefix, then the path under `root` percent-encoded (nginx decodes
/// it). Anything else is served here.
fn accel_target(headers: &HeaderMap, root: &std::path::Path, path: &std::path::Path) -> Option<HeaderValue> {
    let prefix = headers.get(&ACCEL_PREFIX)?.to_str().ok()?;
    let well_formed = prefix.len() > 2
        && prefix.starts_with('/')
        && prefix.ends_with('/')
        && !prefix.contains("..")
        && prefix.bytes().all(|byte| byte.is_ascii_alphanumeric() || b"/-_.".contains(&byte));
    if !well_formed {
        return None;
    }
    let mut target = prefix.to_owned();
    for (index, part) in path.strip_prefix(root).ok()?.components().enumerate() {
        let std::path::Component::Normal(part) = part else { return None };
        if index > 0 {
            target.push('/');
        }
        for &byte in part.as_encoded_bytes() {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                target.push(char::from(byte));
            } else {
                target.push_str(&format!("%{byte:02X}"));
            }
        }
    }
    HeaderValue::from_str(&target).ok()
}

async fn serve_thumbnail(
    State(state): State<Arc<HttpState>>,
    Path(media_item_id): Path<String>,
    request: Request,
) -> Response {
    let headers = request.headers().clone();
    let result = async {
        Library::check_item_id(&media_item_id)?;
        state.caller(&headers).await?;
        let item = state.library.store.find_item(&media_item_id).await?.ok_or(Error::NotFound)?;
        Ok(item.has_thumbnail.then(|| state.library.dirs.thumbnail_path(&media_item_id)))
    }
    .await;
    let response = match result {
        // Not made yet (or audio only): a neutral picture, never cached, so that the real one
        // shows as soon as it exists.
        Ok(None) => {
            let mut response = ([(header::CONTENT_TYPE, "image/svg+xml")], PLACEHOLDER_SVG).into_response();
            response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Ok(Some(path)) => {
            let mut response = serve_with_tower(&path, "image/jpeg", request).await;
            // The URL carries the item's version, so a new thumbnail gets a new URL.
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=86400"));
            headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
            response
        }
        Err(error) => error_response(error, false),
    };
    state.count("thumbnail", response.status());
    response
}

/// A converted item's HLS files, through the grant in the path (the playlist's relative
/// segment URIs keep it). The playlist is read fresh each time and never cached while it
/// grows; segments do not change once listed.
async fn serve_hls(
    State(state): State<Arc<HttpState>>,
    Path((media_item_id, grant, file)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let headers = request.headers().clone();
    let result = async {
        state.check_signed(&media_item_id, parse_grant(&grant), &headers).await?;
        if !convert::is_served_name(&file) {
            return Err(Error::NotFound);
        }
        Ok(state.library.hls_dir(&media_item_id).join(&file))
    }
    .await;
    let (route, response) = match result {
        Ok(path) if file == convert::PLAYLIST => match tokio::fs::read_to_string(&path).await {
            Ok(text) => {
                let finished = convert::read_playlist(&text).ended;
                let mut response = convert::start_at_beginning(&text).into_response();
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(HLS_CONTENT_TYPE));
                headers.insert(
                    header::CACHE_CONTROL,
                    HeaderValue::from_static(if finished { "private, max-age=600" } else { "no-store" }),
                );
                headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
                (Served::Here, response)
            }
            Err(_) => (Served::Here, error_response(Error::NotFound, false)),
        },
        Ok(path) => {
            let content_type = if file == convert::INIT_SEGMENT { "video/mp4" } else { "video/iso.segment" };
            state.library_file(&path, content_type, "private, max-age=600", request).await
        }
        Err(error) => (Served::Here, error_response(error, false)),
    };
    state.count(route.route("hls", "hls_accel"), response.status());
    response
}

async fn not_found() -> Response {
    error_response(Error::NotFound, false)
}

#[cfg(test)]
mod tests {
    use super::{ACCEL_PREFIX, SERVE_CHUNK_BYTES, accel_target, file_range_body, sent_range};
    use http::{HeaderMap, HeaderValue, StatusCode, header};
    use http_body_util::BodyExt;
    use std::path::Path;

    #[tokio::test]
    async fn file_bodies_send_exactly_the_range_across_several_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("film.bin");
        let bytes: Vec<u8> =
            (0..SERVE_CHUNK_BYTES * 5 / 2).map(|index| u8::try_from(index * 7 % 251).unwrap()).collect();
        std::fs::write(&path, &bytes).unwrap();
        for range in [0..bytes.len() as u64, 100..bytes.len() as u64 - 5, 3..4] {
            let body = file_range_body(path.clone(), range.clone()).collect().await.unwrap().to_bytes();
            let (start, end) = (usize::try_from(range.start).unwrap(), usize::try_from(range.end).unwrap());
            assert!(body.as_ref() == &bytes[start..end], "{range:?}: {} bytes", body.len());
        }
        // A file that shrank under the response ends it with an error, not with short bytes.
        let past = file_range_body(path, bytes.len() as u64 - 10..bytes.len() as u64 + 10).collect().await;
        assert!(past.is_err());
    }

    #[test]
    fn the_range_sent_is_read_from_serve_files_answer() {
        let answer = |status: StatusCode, name: header::HeaderName, value: &'static str| {
            let mut response = http::Response::new(());
            *response.status_mut() = status;
            response.headers_mut().insert(name, HeaderValue::from_static(value));
            sent_range(&response)
        };
        assert_eq!(answer(StatusCode::OK, header::CONTENT_LENGTH, "5000"), Some(0..5000));
        assert_eq!(answer(StatusCode::PARTIAL_CONTENT, header::CONTENT_RANGE, "bytes 100-1123/5000"), Some(100..1124));
        assert_eq!(answer(StatusCode::PARTIAL_CONTENT, header::CONTENT_RANGE, "bytes */5000"), None);
        assert_eq!(answer(StatusCode::NOT_MODIFIED, header::CONTENT_LENGTH, "0"), None);
        assert_eq!(answer(StatusCode::RANGE_NOT_SATISFIABLE, header::CONTENT_RANGE, "bytes */5000"), None);
    }

    fn with_prefix(prefix: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(&ACCEL_PREFIX, HeaderValue::from_static(prefix));
        headers
    }

    #[test]
    fn accel_targets_encode_the_path_under_the_media_directory() {
        let root = Path::new("/srv/media");
        let target = |headers: &HeaderMap, path: &str| {
            accel_target(headers, root, Path::new(path)).map(|value| value.to_str().unwrap().to_owned())
        };
        let headers = with_prefix("/xiaowo-media-files/");
        assert_eq!(target(&headers, "/srv/media/uploads/a.mp4").as_deref(), Some("/xiaowo-media-files/uploads/a.mp4"));
        assert_eq!(
            target(&headers, "/srv/media/電影 #1?.mkv").as_deref(),
            Some("/xiaowo-media-files/%E9%9B%BB%E5%BD%B1%20%231%3F.mkv")
        );
        assert_eq!(target(&headers, "/elsewhere/a.mp4"), None);
        assert_eq!(target(&HeaderMap::new(), "/srv/media/uploads/a.mp4"), None);
        for prefix in ["/", "relative/", "/no-slash", "/../etc/", "/a b/", "/files/?x=/"] {
            assert_eq!(target(&with_prefix(prefix), "/srv/media/a.mp4"), None, "{prefix}");
        }
    }
}
