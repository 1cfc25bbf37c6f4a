//! Entry points for `fuzz/`: what media-svc reads from untrusted HTTP requests — the tus headers
//! (`Tus-Resumable`, `Upload-Length`, `Upload-Offset`, `Upload-Metadata` and the file name and
//! room it carries), the signed URL's query and item id (and an HLS path's grant and file
//! name), and the `Range`/`If-Range`/conditional headers of a file request served through the
//! same path as `GET /media/<id>` — ending in the HTTP answer a client would get — and subtitle
//! files (`subtitle_file`). Not part of the service's API.

use std::path::PathBuf;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::Request;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use crate::Error;
use crate::error::HttpError;
use crate::http::{
    UPLOAD_LENGTH, UPLOAD_OFFSET, check_tus_version, error_response, header_u64, metadata_value, serve_with_tower,
};
use crate::library::Library;
use crate::signing::{UrlSigner, parse_grant, parse_query};
use crate::uploads::clean_file_name;

/// Size of the file the `Range` requests are served from.
pub const FILE_BYTES: u64 = 4096;

/// Headers from `name: value` lines; lines that are not a valid header are left out.
fn headers(data: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in data.split(|&byte| byte == b'\n') {
        let Some(colon) = line.iter().position(|&byte| byte == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let Ok(name) = HeaderName::from_bytes(&name.to_ascii_lowercase()) else { continue };
        let Ok(value) = HeaderValue::from_bytes(value.strip_prefix(b" ").unwrap_or(value)) else { continue };
        headers.append(name, value);
    }
    headers
}

/// A tus request's headers, read as the upload routes read them, and a refusal as it would be
/// answered. Panics when an invariant breaks.
pub fn upload_headers(data: &[u8]) {
    let headers = headers(data);
    let refusal = check_tus_version(&headers).err();
    for name in [&UPLOAD_LENGTH, &UPLOAD_OFFSET] {
        if let Ok(value) = header_u64(&headers, name, "missing") {
            let text = headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or_default();
            assert_eq!(text.trim().parse::<u64>().ok(), Some(value));
        }
    }
    if let Some(file_name) = metadata_value(&headers, "filename") {
        let cleaned = clean_file_name(&file_name);
        assert!(!cleaned.contains(['/', '\\']), "a file name keeps no path: {cleaned:?}");
        assert!(!cleaned.chars().any(char::is_control), "a file name keeps no control characters");
        assert_eq!(cleaned, cleaned.trim());
        assert_eq!(clean_file_name(&cleaned), cleaned, "cleaning is idempotent");
    }
    if let Some(room) = metadata_value(&headers, "room") {
        let _ = svc_kit::id::RoomId::parse("room", &room);
    }
    if let Some(error) = refusal {
        let response = error_response(error, true);
        assert!(response.status().is_client_error());
    }
}

/// A `GET /media/<path>?<query>` line: the item id and the signature checks of a signed URL.
pub fn signed_url(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (path, query) = text.split_once('?').unwrap_or((text, ""));
    if Library::check_item_id(path).is_ok() {
        assert!(uuid::Uuid::try_parse(path).is_ok());
    }
    let signer = UrlSigner::from_secret("fuzzing secret");
    if let Some(signed) = parse_query(query) {
        // A query made up by the input does not carry this signer's signature, except by
        // having been made by it.
        let genuine = signer.sign(path, signed.expires, &signed.user_id) == signed.signature;
        assert_eq!(signer.verify(path, &signed), genuine);
    }
    // The same text as an HLS path's grant and file name (`<grant>/<file>`).
    let (grant, file) = query.split_once('/').unwrap_or((query, ""));
    if let Some(signed) = parse_grant(grant) {
        assert!(!signed.user_id.contains('.') && !signed.signature.contains('.'));
        let genuine = signer.sign(path, signed.expires, &signed.user_id) == signed.signature;
        assert_eq!(signer.verify(path, &signed), genuine);
    }
    if crate::convert::is_served_name(file) {
        // Only names inside the item's HLS folder.
        assert!(!file.contains('/') && !file.contains(".."), "{file:?}");
    }
    let HttpError { status, .. } = HttpError::from(Error::UrlRefused("forged"));
    assert_eq!(status, StatusCode::FORBIDDEN);
}

struct Served {
    runtime: tokio::runtime::Runtime,
    path: PathBuf,
}

/// The file and runtime every range request uses, made once per fuzzing process (one small
/// file in the temporary directory, rewritten by each run).
fn served() -> &'static Served {
    static SERVED: OnceLock<Served> = OnceLock::new();
    SERVED.get_or_init(|| {
        let path = std::env::temp_dir().join("xiaowo-media-fuzz.mp4");
        let bytes: Vec<u8> = (0..FILE_BYTES).map(|index| u8::try_from(index % 251).unwrap_or(0)).collect();
        std::fs::write(&path, bytes).unwrap_or_else(|error| panic!("fuzz file: {error}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap_or_else(|error| panic!("runtime: {error}"));
        Served { runtime, path }
    })
}

/// A file request's headers (`Range`, `If-Range`, `If-None-Match`, `If-Modified-Since`, …)
/// answered as `GET /media/<id>` answers them; the answer must be one a player understands and
/// a partial one must lie inside the file.
pub fn range_request(data: &[u8]) {
    let served = served();
    let mut request = Request::new(Body::empty());
    *request.headers_mut() = headers(data);
    let response = served.runtime.block_on(serve_with_tower(&served.path, "video/mp4", request));
    let status = response.status();
    assert!(
        [
            StatusCode::OK,
            StatusCode::PARTIAL_CONTENT,
            StatusCode::NOT_MODIFIED,
            StatusCode::PRECONDITION_FAILED,
            StatusCode::RANGE_NOT_SATISFIABLE
        ]
        .contains(&status),
        "unexpected {status}"
    );
    if status == StatusCode::PARTIAL_CONTENT {
        let range =
            response.headers().get(header::CONTENT_RANGE).and_then(|value| value.to_str().ok()).unwrap_or_default();
        let (span, total) = range.trim_start_matches("bytes ").split_once('/').unwrap_or(("", ""));
        assert_eq!(total, FILE_BYTES.to_string(), "Content-Range {range:?}");
        let (first, last) = span.split_once('-').unwrap_or(("", ""));
        let (first, last): (u64, u64) = (first.parse().unwrap_or(u64::MAX), last.parse().unwrap_or(u64::MAX));
        assert!(first <= last && last < FILE_BYTES, "Content-Range {range:?}");
    }
}

/// A subtitle file converted as an upload is: a refusal, or WebVTT that holds no markup but the
/// kept cue tags, whose every block is one cue, and that converts to itself again.
pub fn subtitle_file(data: &[u8]) {
    use crate::subtitles::convert::{Limits, convert};
    let limits = Limits { max_bytes: 256 * 1024, max_cues: 2000 };
    let Ok(converted) = convert(data, limits) else { return };
    let vtt = &converted.vtt;
    assert!(vtt.starts_with("WEBVTT\n"), "{vtt:?}");
    assert!(converted.cue_count >= 1 && converted.cue_count <= limits.max_cues);
    let mut rest = vtt.as_str();
    while let Some(at) = rest.find('<') {
        rest = &rest[at + 1..];
        let name: String = rest.trim_start_matches('/').chars().take_while(|c| c.is_ascii_alphabetic()).collect();
        assert!(
            ["b", "i", "u", "c", "v", "lang", "ruby", "rt"].contains(&name.as_str()),
            "markup other than the kept tags: <{}",
            rest.chars().take(20).collect::<String>()
        );
    }
    let blocks: Vec<&str> = vtt.split("\n\n").skip(1).collect();
    assert_eq!(blocks.len(), converted.cue_count, "one block per cue");
    for block in blocks {
        assert_eq!(block.matches("-->").count(), 1, "one timing line per cue: {block:?}");
    }
    let again = convert(vtt.as_bytes(), Limits { max_bytes: usize::MAX, ..limits });
    assert_eq!(again.map(|again| again.vtt).as_ref(), Ok(vtt), "stored WebVTT reads back as itself");
}
