//! The token extraction every service runs on `authorization` and `cookie` headers, and the
//! admin-token check: any header bytes, never a panic; a token found is never empty.
#![no_main]

use libfuzzer_sys::fuzz_target;
use svc_kit::auth::{AdminToken, bearer_token, caller_tag, session_token};
use tonic::metadata::{AsciiMetadataKey, MetadataMap, MetadataValue};

fuzz_target!(|data: &[u8]| {
    let mut metadata = MetadataMap::new();
    for line in data.split(|&byte| byte == b'\n') {
        let Some(colon) = line.iter().position(|&byte| byte == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let Ok(name) = AsciiMetadataKey::from_bytes(&name.to_ascii_lowercase()) else { continue };
        let Ok(value) = MetadataValue::try_from(value) else { continue };
        metadata.append(name, value);
    }
    if let Some(token) = session_token(&metadata) {
        assert!(!token.is_empty());
    }
    if let Some(token) = bearer_token(&metadata) {
        assert!(!token.is_empty() && token == token.trim());
    }
    let _ = caller_tag(&metadata.clone().into_headers());
    let _ = AdminToken::new(Some("admin-secret")).check(&metadata);
    let _ = AdminToken::new(None).check(&metadata);
});
