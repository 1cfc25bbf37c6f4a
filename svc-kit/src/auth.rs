//! Who is calling: the session token from the cookie or `authorization: Bearer`, validated by
//! session-svc (with a deadline and a short-lived cache), and the operator's admin token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
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

/// The metadata header that carries the service-to-service credential. It is not
/// `authorization`, which internal calls may still need for the end user's bearer token.
pub const INTERNAL_TOKEN_HEADER: &str = "x-xiaowo-internal-token";

/// The secret every service presents to another's internal API (access checks, session
/// validation, room events), so that a client reaching a public port cannot call them.
#[derive(Clone)]
pub struct InternalToken {
    value: tonic::metadata::AsciiMetadataValue,
    hash: [u8; 32],
}

impl std::fmt::Debug for InternalToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InternalToken(redacted)")
    }
}

/// Why a configured internal token cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum InvalidInternalToken {
    /// Empty after trimming.
    #[error("the internal token is empty")]
    Empty,
    /// Not visible ASCII, so it cannot travel in a metadata header.
    #[error("the internal token must be printable ASCII without spaces")]
    NotAscii,
}

impl InternalToken {
    /// A token from configuration (surrounding whitespace ignored).
    ///
    /// # Errors
    /// When it is empty or cannot be carried in a header.
    pub fn new(secret: &str) -> Result<Self, InvalidInternalToken> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(InvalidInternalToken::Empty);
        }
        if !secret.bytes().all(|byte| byte.is_ascii_graphic()) {
            return Err(InvalidInternalToken::NotAscii);
        }
        let value = secret.parse().map_err(|_| InvalidInternalToken::NotAscii)?;
        Ok(Self { value, hash: Sha256::digest(secret.as_bytes()).into() })
    }

    /// A fresh random 256-bit token, hex-encoded.
    #[must_use]
    pub fn generate() -> Self {
        let secret = hex::encode(rand::random::<[u8; 32]>());
        Self::new(&secret).unwrap_or_else(|_| unreachable!("hex is printable ASCII"))
    }

    /// The secret itself, for writing it where other processes of the same install read it.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.value.to_str().unwrap_or_default()
    }

    /// Adds the token to an outgoing request.
    pub fn attach<T>(&self, request: &mut tonic::Request<T>) {
        request.metadata_mut().insert(INTERNAL_TOKEN_HEADER, self.value.clone());
    }

    /// `message` as a request carrying `token`, if any.
    #[must_use]
    pub fn request<T>(token: Option<&Self>, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = token {
            token.attach(&mut request);
        }
        request
    }

    /// Accepts the call only when it carries this token.
    ///
    /// # Errors
    /// `Unauthenticated` when the header is missing or holds another value.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), AuthError> {
        let presented = metadata.get(INTERNAL_TOKEN_HEADER).ok_or(AuthError::Unauthenticated)?;
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Fixed-length digests compared without early exit: the timing says nothing useful.
        let difference = self.hash.iter().zip(presented.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference == 0 { Ok(()) } else { Err(AuthError::Unauthenticated) }
    }
}

/// A tonic interceptor guarding a service's internal API with the [`InternalToken`]; without
/// a token it lets every call through (an install that chose to leave internal APIs open).
#[derive(Clone, Debug)]
pub struct InternalGuard {
    token: Option<InternalToken>,
    refusals: prometheus::IntCounter,
}

impl InternalGuard {
    /// A guard for `service`'s internal API; refusals count in
    /// `xiaowo_auth_failures_total{service="<service>-internal"}`.
    #[must_use]
    pub fn new(token: Option<InternalToken>, registry: &prometheus::Registry, service: &str) -> Self {
        let refusals = crate::metrics::refusal_counter(
            registry,
            crate::metrics::Refusal::AuthFailure,
            &format!("{service}-internal"),
        );
        Self { token, refusals }
    }
}

impl tonic::service::Interceptor for InternalGuard {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let Some(token) = &self.token else {
            return Ok(request);
        };
        match token.check(request.metadata()) {
            Ok(()) => Ok(request),
            Err(_) => {
                self.refusals.inc();
                Err(tonic::Status::unauthenticated("internal credential required"))
            }
        }
    }
}

/// Validates session tokens with session-svc, caching answers briefly so that a chatty client
/// costs one validation per `cache_ttl`, not one per call. A revoked session keeps working
/// for at most `cache_ttl` on services that cached it.
///
/// An answer past half its TTL is still served while it is validated again in the background,
/// so a client in steady use never waits for session-svc and its revocation is noticed after
/// half the TTL.
#[derive(Debug)]
pub struct SessionValidator {
    client: SessionInternalServiceClient<Channel>,
    internal_token: Option<InternalToken>,
    cache_ttl: Duration,
    cache: Arc<Mutex<HashMap<String, CachedCaller>>>,
}

#[derive(Debug)]
struct CachedCaller {
    caller: Caller,
    at: Instant,
    /// A background validation is on its way.
    refreshing: bool,
}

/// What a cached answer is good for now.
enum Cached {
    /// Fresh: use it.
    Fresh(Caller),
    /// Past half its TTL: use it, and validate again in the background.
    Refresh(Caller),
    /// Absent or expired: validate before answering.
    Missing,
}

/// Entries above which the cache is swept of stale ones before inserting.
const CACHE_SWEEP_AT: usize = 10_000;

impl SessionValidator {
    /// A validator calling session-svc over `channel`.
    #[must_use]
    pub fn new(channel: Channel, cache_ttl: Duration) -> Self {
        Self {
            client: SessionInternalServiceClient::new(channel),
            internal_token: None,
            cache_ttl,
            cache: Arc::default(),
        }
    }

    /// Presents `token` to session-svc's internal API on every validation.
    #[must_use]
    pub fn with_internal_token(mut self, token: Option<InternalToken>) -> Self {
        self.internal_token = token;
        self
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
        match self.cached(&key) {
            Cached::Fresh(caller) => return Ok(caller),
            Cached::Refresh(caller) => {
                self.refresh_in_background(key, token.to_owned());
                return Ok(caller);
            }
            Cached::Missing => {}
        }
        let caller = ask(self.client.clone(), self.internal_token.clone(), token.to_owned()).await?;
        remember(&self.cache, self.cache_ttl, key, caller.clone());
        Ok(caller)
    }

    fn cached(&self, key: &str) -> Cached {
        let Ok(mut cache) = self.cache.lock() else { return Cached::Missing };
        let Some(entry) = cache.get_mut(key) else { return Cached::Missing };
        let age = entry.at.elapsed();
        if age >= self.cache_ttl {
            return Cached::Missing;
        }
        if age >= self.cache_ttl / 2 && !entry.refreshing {
            entry.refreshing = true;
            return Cached::Refresh(entry.caller.clone());
        }
        Cached::Fresh(entry.caller.clone())
    }

    /// Validates `token` again without holding up the caller: a new answer restarts the TTL,
    /// a refusal drops the cached one at once, and no answer leaves it to expire.
    fn refresh_in_background(&self, key: String, token: String) {
        let (client, internal_token) = (self.client.clone(), self.internal_token.clone());
        let (cache, ttl) = (Arc::clone(&self.cache), self.cache_ttl);
        tokio::spawn(async move {
            match ask(client, internal_token, token).await {
                Ok(caller) => remember(&cache, ttl, key, caller),
                Err(error) => {
                    if let Ok(mut cache) = cache.lock() {
                        if matches!(error, AuthError::Unauthenticated) {
                            cache.remove(&key);
                        } else if let Some(entry) = cache.get_mut(&key) {
                            entry.refreshing = false;
                        }
                    }
                }
            }
        });
    }
}

/// session-svc's answer for `token`.
async fn ask(
    mut client: SessionInternalServiceClient<Channel>,
    internal_token: Option<InternalToken>,
    token: String,
) -> Result<Caller, AuthError> {
    let request = InternalToken::request(internal_token.as_ref(), pb::ValidateSessionRequest { token });
    let response = client.validate_session(request).await.map_err(|status| match status.code() {
        tonic::Code::Unauthenticated | tonic::Code::InvalidArgument | tonic::Code::NotFound => {
            AuthError::Unauthenticated
        }
        _ => AuthError::Unavailable(status.message().to_owned()),
    })?;
    let pb::ValidateSessionResponse { session } = response.into_inner();
    let session = session.ok_or_else(|| AuthError::Unavailable("empty validation answer".to_owned()))?;
    Ok(Caller { user_id: session.user_id, display_name: session.display_name })
}

fn remember(cache: &Mutex<HashMap<String, CachedCaller>>, ttl: Duration, key: String, caller: Caller) {
    if let Ok(mut cache) = cache.lock() {
        if cache.len() >= CACHE_SWEEP_AT {
            cache.retain(|_, entry| entry.at.elapsed() < ttl);
        }
        cache.insert(key, CachedCaller { caller, at: Instant::now(), refreshing: false });
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
    fn internal_token_checks() {
        let token = InternalToken::new(" s3cret\n").unwrap();
        let mut request = tonic::Request::new(());
        token.attach(&mut request);
        assert!(token.check(request.metadata()).is_ok());
        assert!(matches!(token.check(&metadata(&[])), Err(AuthError::Unauthenticated)));
        assert!(matches!(token.check(&metadata(&[(INTERNAL_TOKEN_HEADER, "s3cre")])), Err(AuthError::Unauthenticated)));
        // The end user's bearer is not the internal credential, even with the same value.
        assert!(matches!(
            token.check(&metadata(&[("authorization", "Bearer s3cret")])),
            Err(AuthError::Unauthenticated)
        ));
        assert!(matches!(InternalToken::new("  "), Err(InvalidInternalToken::Empty)));
        assert!(matches!(InternalToken::new("a b"), Err(InvalidInternalToken::NotAscii)));
        assert!(!format!("{token:?}").contains("s3cret"));
        let generated = InternalToken::generate();
        assert_eq!(generated.expose().len(), 64);
        assert_ne!(generated.expose(), InternalToken::generate().expose());
    }

    #[test]
    fn internal_guard_refuses_and_counts() {
        use tonic::service::Interceptor;
        let registry = prometheus::Registry::new();
        let token = InternalToken::new("s3cret").unwrap();
        let mut guard = InternalGuard::new(Some(token.clone()), &registry, "room");
        let refused = guard.call(tonic::Request::new(())).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        let mut request = tonic::Request::new(());
        token.attach(&mut request);
        assert!(guard.call(request).is_ok());
        assert_eq!(guard.refusals.get(), 1);
        let mut open = InternalGuard::new(None, &registry, "session");
        assert!(open.call(tonic::Request::new(())).is_ok());
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
