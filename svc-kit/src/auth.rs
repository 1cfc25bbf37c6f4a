//! Who is calling, decided once per call by a [`Guard`] layer in front of each gRPC service
//! before any handler runs: a session token (from `authorization: Bearer` or the cookie)
//! validated by session-svc, which leaves the [`Caller`] in the request's extensions for the
//! handlers; the operator's admin token; or the install's internal token between services.
//! Every refusal is one [`AuthError`], answered with the same status by every service and
//! counted in `xiaowo_auth_failures_total`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use sha2::{Digest, Sha256};
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;

use crate::peer::session::SessionValidator;

/// The cookie that carries the session token over plain HTTP (development, tests).
pub const SESSION_COOKIE: &str = "xiaowo_session";
/// The cookie name over HTTPS or on localhost: the `__Host-` prefix makes browsers insist on
/// `Secure`, `Path=/` and no `Domain`, so no other host or path can plant or read it.
pub const SECURE_SESSION_COOKIE: &str = "__Host-xiaowo_session";

/// An authenticated caller, as a session [`Guard`] leaves it for the handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The session's public id.
    pub user_id: crate::id::UserId,
    /// The name the session chose.
    pub display_name: String,
}

impl Caller {
    /// The caller a session [`Guard`] identified for `request`.
    ///
    /// # Errors
    /// `UNAUTHENTICATED` when there is none: the service was registered without a session
    /// guard, or the method is one the guard lets through anonymously.
    pub fn of<T>(request: &tonic::Request<T>) -> Result<Self, tonic::Status> {
        request.extensions().get::<Self>().cloned().ok_or_else(|| AuthError::Unauthenticated.into())
    }
}

/// Why a call was refused before reaching its handler (or, for session-svc, by its handler).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No session token, or one that is unknown, expired or revoked.
    #[error("missing, expired or revoked session")]
    Unauthenticated,
    /// An admin RPC without the admin token (`presented: false`) or with a wrong one, or with
    /// admin access disabled; `hint` tells the operator where the token is.
    #[error("{}", admin_required(hint.as_deref()))]
    AdminRequired { presented: bool, hint: Option<Arc<str>> },
    /// An internal RPC without the install's internal token.
    #[error("internal credential required")]
    InternalRequired,
    /// session-svc could not be asked in time.
    #[error("session service unavailable: {0}")]
    Unavailable(String),
}

impl From<AuthError> for tonic::Status {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthenticated => Self::unauthenticated("missing, expired or revoked session"),
            AuthError::AdminRequired { presented: false, hint } => {
                Self::unauthenticated(admin_required(hint.as_deref()))
            }
            AuthError::AdminRequired { presented: true, hint } => {
                Self::permission_denied(admin_required(hint.as_deref()))
            }
            AuthError::InternalRequired => Self::unauthenticated("internal credential required"),
            AuthError::Unavailable(reason) => {
                tracing::warn!(%reason, "session-svc unavailable");
                Self::unavailable("session service unavailable; retry")
            }
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

/// The refusal of an admin call, naming where the operator finds the token.
fn admin_required(hint: Option<&str>) -> String {
    match hint {
        Some(hint) => format!("admin token required (see {hint})"),
        None => "admin token required".to_owned(),
    }
}

/// Checks the operator's admin token on admin RPCs.
#[derive(Clone)]
pub struct AdminToken {
    hash: Option<[u8; 32]>,
    hint: Option<Arc<str>>,
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
        Self { hash, hint: None }
    }

    /// Names where the operator finds the token (a file path, a setting) in every refusal.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<Arc<str>>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Accepts the call only with `authorization: Bearer <admin token>`.
    ///
    /// # Errors
    /// `AdminRequired` without a bearer token, with a wrong one, or when admin access is
    /// disabled.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), AuthError> {
        let refused = |presented| AuthError::AdminRequired { presented, hint: self.hint.clone() };
        let presented = bearer_token(metadata).ok_or_else(|| refused(false))?;
        let expected = self.hash.ok_or_else(|| refused(true))?;
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Comparing fixed-length digests byte by byte without early exit leaks nothing useful.
        let difference = expected.iter().zip(presented.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference == 0 { Ok(()) } else { Err(refused(true)) }
    }

    /// Whether `headers` carry the admin token.
    #[must_use]
    pub fn admits(&self, headers: &http::HeaderMap) -> bool {
        self.check(&MetadataMap::from_headers(headers.clone())).is_ok()
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
    /// `InternalRequired` when the header is missing or holds another value.
    pub fn check(&self, metadata: &MetadataMap) -> Result<(), AuthError> {
        let presented = metadata.get(INTERNAL_TOKEN_HEADER).ok_or(AuthError::InternalRequired)?;
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Fixed-length digests compared without early exit: the timing says nothing useful.
        let difference = self.hash.iter().zip(presented.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference == 0 { Ok(()) } else { Err(AuthError::InternalRequired) }
    }
}

/// Who may call one gRPC service.
#[derive(Clone, Debug)]
enum Policy {
    /// A valid session; methods named in `anonymous` are answered without one.
    Session { sessions: Arc<SessionValidator>, anonymous: &'static [&'static str] },
    /// The operator's admin token.
    Admin(AdminToken),
    /// The internal token; `None` leaves the service open (an install without one).
    Internal(Option<InternalToken>),
}

/// A tower layer that authenticates every call to the service it wraps before the handler
/// runs, per the service's policy, and answers refusals itself. A session guard puts the
/// [`Caller`] into the request's extensions, where handlers take it with [`Caller::of`].
#[derive(Clone, Debug)]
pub struct Guard {
    policy: Policy,
    refusals: prometheus::IntCounter,
}

impl Guard {
    fn new(policy: Policy, registry: &prometheus::Registry, label: &str) -> Self {
        let refusals = crate::metrics::refusal_counter(registry, crate::metrics::Refusal::AuthFailure, label);
        Self { policy, refusals }
    }

    /// Callers need a session validated by `sessions`; refusals count in
    /// `xiaowo_auth_failures_total{service="<service>"}`.
    #[must_use]
    pub fn sessions(sessions: Arc<SessionValidator>, registry: &prometheus::Registry, service: &str) -> Self {
        Self::new(Policy::Session { sessions, anonymous: &[] }, registry, service)
    }

    /// Callers need the admin token; refusals count under `service="<service>-admin"`.
    #[must_use]
    pub fn admin(token: AdminToken, registry: &prometheus::Registry, service: &str) -> Self {
        Self::new(Policy::Admin(token), registry, &format!("{service}-admin"))
    }

    /// Callers need the internal token (anyone may call when there is none); refusals count
    /// under `service="<service>-internal"`.
    #[must_use]
    pub fn internal(token: Option<InternalToken>, registry: &prometheus::Registry, service: &str) -> Self {
        Self::new(Policy::Internal(token), registry, &format!("{service}-internal"))
    }

    /// Lets the named methods (e.g. `GetClock`) through without a session.
    #[must_use]
    pub fn anonymous(mut self, methods: &'static [&'static str]) -> Self {
        if let Policy::Session { anonymous, .. } = &mut self.policy {
            *anonymous = methods;
        }
        self
    }

    /// `service` behind this guard.
    #[must_use]
    pub fn wrap<S>(&self, service: S) -> Guarded<S> {
        Guarded { inner: service, guard: self.clone() }
    }

    /// The caller of a plain HTTP request (an upload, a file download) by this guard's session
    /// rule, for routes that answer refusals in their own protocol rather than as a gRPC status;
    /// counted like refused calls. Guards of other kinds identify nobody.
    ///
    /// # Errors
    /// `Unauthenticated` without a valid session; `Unavailable` when session-svc cannot answer.
    pub async fn identify(&self, headers: &http::HeaderMap) -> Result<Caller, AuthError> {
        let outcome = match &self.policy {
            Policy::Session { sessions, .. } => match session_token(&MetadataMap::from_headers(headers.clone())) {
                Some(token) => sessions.validate(&token).await,
                None => Err(AuthError::Unauthenticated),
            },
            Policy::Admin(_) | Policy::Internal(_) => Err(AuthError::Unauthenticated),
        };
        if matches!(&outcome, Err(error) if !matches!(error, AuthError::Unavailable(_))) {
            self.refusals.inc();
        }
        outcome
    }

    /// Decides whether the call may go on; a session guard leaves the [`Caller`] in its
    /// extensions.
    pub(crate) async fn admit<B>(&self, request: &mut http::Request<B>) -> Result<(), AuthError> {
        let outcome = match &self.policy {
            Policy::Session { sessions, anonymous } => {
                let method = request.uri().path().rsplit('/').next().unwrap_or_default();
                if anonymous.contains(&method) {
                    return Ok(());
                }
                let metadata = MetadataMap::from_headers(request.headers().clone());
                match session_token(&metadata) {
                    Some(token) => sessions.validate(&token).await.map(|caller| {
                        request.extensions_mut().insert(caller);
                    }),
                    None => Err(AuthError::Unauthenticated),
                }
            }
            Policy::Admin(token) => token.check(&MetadataMap::from_headers(request.headers().clone())),
            Policy::Internal(None) => Ok(()),
            Policy::Internal(Some(token)) => token.check(&MetadataMap::from_headers(request.headers().clone())),
        };
        if matches!(&outcome, Err(error) if !matches!(error, AuthError::Unavailable(_))) {
            self.refusals.inc();
        }
        outcome
    }
}

impl<S> tower::Layer<S> for Guard {
    type Service = Guarded<S>;

    fn layer(&self, inner: S) -> Self::Service {
        self.wrap(inner)
    }
}

/// A gRPC service behind a [`Guard`]; registered under the wrapped service's name.
#[derive(Clone, Debug)]
pub struct Guarded<S> {
    inner: S,
    guard: Guard,
}

impl<S: NamedService> NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for Guarded<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: Default + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        // The service that was polled ready takes this call; its clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let guard = self.guard.clone();
        Box::pin(async move {
            match guard.admit(&mut request).await {
                Ok(()) => inner.call(request).await,
                Err(refusal) => Ok(tonic::Status::from(refusal).into_http()),
            }
        })
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
        assert!(matches!(token.check(&metadata(&[])), Err(AuthError::InternalRequired)));
        assert!(matches!(
            token.check(&metadata(&[(INTERNAL_TOKEN_HEADER, "s3cre")])),
            Err(AuthError::InternalRequired)
        ));
        // The end user's bearer is not the internal credential, even with the same value.
        assert!(matches!(
            token.check(&metadata(&[("authorization", "Bearer s3cret")])),
            Err(AuthError::InternalRequired)
        ));
        assert!(matches!(InternalToken::new("  "), Err(InvalidInternalToken::Empty)));
        assert!(matches!(InternalToken::new("a b"), Err(InvalidInternalToken::NotAscii)));
        assert!(!format!("{token:?}").contains("s3cret"));
        let generated = InternalToken::generate();
        assert_eq!(generated.expose().len(), 64);
        assert_ne!(generated.expose(), InternalToken::generate().expose());
    }

    fn http_request(pairs: &[(&'static str, &'static str)]) -> http::Request<()> {
        let mut request = http::Request::builder().uri("/xiaowo.room.v1.RoomInternalService/CheckAccess");
        for (key, value) in pairs {
            request = request.header(*key, *value);
        }
        request.body(()).unwrap()
    }

    #[tokio::test]
    async fn internal_guard_refuses_and_counts() {
        let registry = prometheus::Registry::new();
        let guard = Guard::internal(Some(InternalToken::new("s3cret").unwrap()), &registry, "room");
        assert_eq!(guard.admit(&mut http_request(&[])).await, Err(AuthError::InternalRequired));
        assert_eq!(guard.admit(&mut http_request(&[(INTERNAL_TOKEN_HEADER, "s3cret")])).await, Ok(()));
        assert_eq!(guard.refusals.get(), 1);
        let open = Guard::internal(None, &registry, "session");
        assert_eq!(open.admit(&mut http_request(&[])).await, Ok(()));
    }

    #[tokio::test]
    async fn admin_guard_refuses_and_counts() {
        let registry = prometheus::Registry::new();
        let guard = Guard::admin(AdminToken::new(Some("s3cret")).with_hint("/data/admin.token"), &registry, "room");
        let hint = Some(Arc::from("/data/admin.token"));
        let missing = guard.admit(&mut http_request(&[])).await;
        assert_eq!(missing, Err(AuthError::AdminRequired { presented: false, hint: hint.clone() }));
        let status = tonic::Status::from(missing.unwrap_err());
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert_eq!(status.message(), "admin token required (see /data/admin.token)");
        let mut wrong = http_request(&[("authorization", "Bearer nope")]);
        let wrong = guard.admit(&mut wrong).await;
        assert_eq!(wrong, Err(AuthError::AdminRequired { presented: true, hint }));
        assert_eq!(tonic::Status::from(wrong.unwrap_err()).code(), tonic::Code::PermissionDenied);
        assert_eq!(guard.admit(&mut http_request(&[("authorization", "Bearer s3cret")])).await, Ok(()));
        assert_eq!(guard.refusals.get(), 2);
    }

    #[test]
    fn admin_token_checks() {
        let admin = AdminToken::new(Some("s3cret"));
        assert!(admin.check(&metadata(&[("authorization", "Bearer s3cret")])).is_ok());
        assert!(matches!(
            admin.check(&metadata(&[("authorization", "Bearer nope")])),
            Err(AuthError::AdminRequired { presented: true, hint: None })
        ));
        assert!(matches!(admin.check(&metadata(&[])), Err(AuthError::AdminRequired { presented: false, .. })));
        let disabled = AdminToken::new(None);
        assert!(matches!(
            disabled.check(&metadata(&[("authorization", "Bearer s3cret")])),
            Err(AuthError::AdminRequired { presented: true, .. })
        ));
    }
}
