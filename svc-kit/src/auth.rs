//! Who is calling: the session token from the cookie or `authorization: Bearer`, validated by
//! session-svc (with a deadline and a short-lived cache), and the operator's admin token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use proto::session::v1 as pb;
use proto::session::v1::session_internal_service_client::SessionInternalServiceClient;
use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;
use tonic::transport::Channel;

/// The cookie that carries the session token over plain HTTP (development, tests).
pub const SESSION_COOKIE: &str = "xiaowo_session";
/// The cookie name over HTTPS or on localhost: the `__Host-` prefix makes browsers insist on
/// `Secure`, `Path=/` and no `Domain`, so no other host or path can plant or read it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-xiaowo_session";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The session's public id.
    pub user_id: String,
    /// The name the session chose.
    pub display_name: String,
}

/// Why a caller could not be identified.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token, or a token that is unknown, expired or revoked.
    #[error("missing or invalid session")]
    Unauthenticated,
    /// The caller is known but lacks the admin token.
    #[error("admin token required")]
    PermissionDenied,
    /// session-svc could not be asked in time.
    #[error("session service unavailable: {0}")]
    Unavailable(String),
}

impl From<AuthError> for tonic::Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthenticated => Self::unauthenticated("missing or invalid session"),
            AuthError::PermissionDenied => Self::permission_denied("admin token required"),
            AuthError::Unavailable(_) => Self::unavailable("session service unavailable"),
        }
    }
}

/// The session token the caller presented: `authorization: Bearer …` first, else the cookie.
#[must_use]
pub fn session_token(metadata: &MetadataMap) -> Option<String> {
    bearer_token(metadata).or_else(|| cookie_token(metadata))
}

/// The token of an `authorization: Bearer <token>` header.
#[must_use]
pub fn bearer_token(metadata: &MetadataMap) -> Option<String> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

fn cookie_token(metadata: &MetadataMap) -> Option<String> {
    metadata
        .get_all("cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|header| header.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| (*name == SECURE_SESSION_COOKIE || *name == SESSION_COOKIE) && !value.is_empty())
        .map(|(_, value)| value.to_owned())
}

/// The first 12 hex digits of the caller's token hash, for access logs: stable per session,
/// useless to an attacker who reads the logs.
#[must_use]
pub fn caller_tag(headers: &http::HeaderMap) -> Option<String> {
    if !headers.contains_key("authorization") && !headers.contains_key("cookie") {
        return None;
    }
    let metadata = MetadataMap::from_headers(headers.clone());
    session_token(&metadata).map(|token| token_hash(&token)[..12].to_owned())
}

/// SHA-256 of a token, hex-encoded: what is stored and what caches are keyed by.
#[must_use]
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Checks the operator's admin token on admin RPCs.
#[derive(Clone)]
pub struct AdminToken {
    hash: Option<[u8; 32]>,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminToken").field("configured", &self.hash.is_some()).finish()
    }
}

impl AdminToken {
    /// `None` or an empty token disables every admin RPC.
    #[must_use]
    pub fn new(token: Option<&str>) -> Self {
        let hash = token.filter(|token| !token.is_empty()).map(|token| Sha256::digest(token.as_bytes()).into());
        Self { hash }
    }

    /// Accepts the call only with `authorization: Bearer <admin token>`.
    ///
    /// # Errors
    /// `Unauthenticated` without a bearer token, `PermissionDenied` with a wrong one or when
    /// admin access is disabled.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), AuthError> {
        let presented = bearer_token(metadata).ok_or(AuthError::Unauthenticated)?;
        let expected = self.hash.ok_or(AuthError::PermissionDenied)?;
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Comparing fixed-length digests byte by byte without early exit leaks nothing useful.
        let difference = expected.iter().zip(presented.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference == 0 { Ok(()) } else { Err(AuthError::PermissionDenied) }
    }
}

/// Validates session tokens with session-svc, caching answers briefly so that a chatty client
/// costs one validation per `cache_ttl`, not one per call. A revoked session keeps working
/// for at most `cache_ttl` on services that cached it.
#[derive(Debug)]
pub struct SessionValidator {
    client: SessionInternalServiceClient<Channel>,
    cache_ttl: Duration,
    cache: Mutex<HashMap<String, (Caller, Instant)>>,
}

/// Entries above which the cache is swept of stale ones before inserting.
const CACHE_SWEEP_AT: usize = 10_000;

impl SessionValidator {
    /// A validator calling session-svc over `channel`.
    #[must_use]
    pub fn new(channel: Channel, cache_ttl: Duration) -> Self {
        Self { client: SessionInternalServiceClient::new(channel), cache_ttl, cache: Mutex::new(HashMap::new()) }
    }

    /// The caller behind the request's token.
    ///
    /// # Errors
    /// `Unauthenticated` for a missing, unknown or expired token; `Unavailable` when
    /// session-svc does not answer within its deadline.
    pub async fn authenticate(&self, metadata: &MetadataMap) -> Result<Caller, AuthError> {
        let token = session_token(metadata).ok_or(AuthError::Unauthenticated)?;
        self.validate(&token).await
    }

    /// The caller owning `token`.
    ///
    /// # Errors
    /// As [`Self::authenticate`].
    pub async fn validate(&self, token: &str) -> Result<Caller, AuthError> {
        let key = token_hash(token);
        if let Some(caller) = self.cached(&key) {
            return Ok(caller);
        }
        let response = self
            .client
            .clone()
            .validate_session(pb::ValidateSessionRequest { token: token.to_owned() })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unauthenticated | tonic::Code::InvalidArgument | tonic::Code::NotFound => {
                    AuthError::Unauthenticated
                }
                _ => AuthError::Unavailable(status.message().to_owned()),
            })?;
        let pb::ValidateSessionResponse { session } = response.into_inner();
        let session = session.ok_or_else(|| AuthError::Unavailable("empty validation answer".to_owned()))?;
        let caller = Caller { user_id: session.user_id, display_name: session.display_name };
        self.remember(key, caller.clone());
        Ok(caller)
    }

    fn cached(&self, key: &str) -> Option<Caller> {
        let cache = self.cache.lock().ok()?;
        let (caller, at) = cache.get(key)?;
        (at.elapsed() < self.cache_ttl).then(|| caller.clone())
    }

    fn remember(&self, key: String, caller: Caller) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_SWEEP_AT {
                let ttl = self.cache_ttl;
                cache.retain(|_, (_, at)| at.elapsed() < ttl);
            }
            cache.insert(key, (caller, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(pairs: &[(&'static str, &'static str)]) -> MetadataMap {
        let mut map = MetadataMap::new();
        for (key, value) in pairs {
            map.append(*key, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn bearer_wins_over_cookie() {
        let map = metadata(&[("authorization", "Bearer abc"), ("cookie", "xiaowo_session=def")]);
        assert_eq!(session_token(&map).as_deref(), Some("abc"));
    }

    #[test]
    fn finds_either_cookie_name_among_others() {
        let map = metadata(&[("cookie", "theme=dark; __Host-xiaowo_session=tok; x=y")]);
        assert_eq!(session_token(&map).as_deref(), Some("tok"));
        let map = metadata(&[("cookie", "xiaowo_session=plain")]);
        assert_eq!(session_token(&map).as_deref(), Some("plain"));
        assert_eq!(session_token(&metadata(&[("cookie", "other=1")])), None);
        assert_eq!(session_token(&metadata(&[("authorization", "Basic abc")])), None);
    }

    #[test]
    fn admin_token_checks() {
        let admin = AdminToken::new(Some("s3cret"));
        assert!(admin.check(&metadata(&[("authorization", "Bearer s3cret")])).is_ok());
        assert!(matches!(
            admin.check(&metadata(&[("authorization", "Bearer nope")])),
            Err(AuthError::PermissionDenied)
        ));
        assert!(matches!(admin.check(&metadata(&[])), Err(AuthError::Unauthenticated)));
        let disabled = AdminToken::new(None);
        assert!(matches!(
            disabled.check(&metadata(&[("authorization", "Bearer s3cret")])),
            Err(AuthError::PermissionDenied)
        ));
    }
}
