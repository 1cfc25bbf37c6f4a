//! Entry points for `fuzz/`: a request as bytes off the wire goes through prost's decoder and
//! then through the same validators the RPC handlers run before they touch the database, ending
//! in the `tonic::Status` a caller would see. Not part of the service's API.

use prost::Message;
use proto::session::v1 as pb;
use svc_kit::status::Violation;
use tonic::metadata::{MetadataMap, MetadataValue};

use crate::Error;
use crate::grpc::request_is_secure;
use crate::sessions::{DISPLAY_NAME, MAX_LOOKUP_IDS, MAX_PAGE_SIZE, decode_page_token};

/// Decodes one request, chosen by the first byte, and validates it.
pub fn request(data: &[u8]) {
    let Some((&selector, bytes)) = data.split_first() else { return };
    let outcome = match selector % 4 {
        0 => pb::CreateSessionRequest::decode(bytes)
            .map(|pb::CreateSessionRequest { display_name }| display_name_checked(&display_name)),
        1 => pb::UpdateDisplayNameRequest::decode(bytes)
            .map(|pb::UpdateDisplayNameRequest { display_name }| display_name_checked(&display_name)),
        2 => pb::ListSessionsRequest::decode(bytes).map(|pb::ListSessionsRequest { page_size, page_token }| {
            let size_ok = usize::try_from(page_size).is_ok_and(|size| size as u64 <= MAX_PAGE_SIZE);
            if !size_ok {
                return Err(Violation::new("page_size", "out of range").into());
            }
            if page_token.is_empty() { Ok(()) } else { decode_page_token(&page_token).map(drop) }
        }),
        _ => pb::BatchGetDisplayNamesRequest::decode(bytes).map(|pb::BatchGetDisplayNamesRequest { user_ids }| {
            if user_ids.len() > MAX_LOOKUP_IDS { Err(Violation::new("user_ids", "too many").into()) } else { Ok(()) }
        }),
    };
    if let Ok(Err(error)) = outcome {
        let response = tonic::Status::from(error).into_http::<tonic::body::Body>();
        assert!(response.headers().contains_key("grpc-status"));
    }
}

/// Headers a browser or proxy sends, as the bytes of `name: value` lines: whether the
/// `Set-Cookie` answer would be marked `Secure` must never panic on any of them.
pub fn forwarded_headers(data: &[u8]) {
    let mut metadata = MetadataMap::new();
    for line in data.split(|&byte| byte == b'\n') {
        let Some(colon) = line.iter().position(|&byte| byte == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let Ok(name) = tonic::metadata::AsciiMetadataKey::from_bytes(&name.to_ascii_lowercase()) else { continue };
        let Ok(value) = MetadataValue::try_from(value) else { continue };
        metadata.append(name, value);
    }
    let _ = request_is_secure(&metadata);
    let _ = svc_kit::auth::session_token(&metadata);
}

fn display_name_checked(display_name: &str) -> Result<(), Error> {
    let accepted = DISPLAY_NAME.check(display_name)?;
    assert!(!accepted.is_empty() && accepted.chars().count() <= DISPLAY_NAME.max_chars);
    Ok(())
}
