//! The gRPC edge: protobuf in, domain calls, protobuf out. Nothing else knows `proto`.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use proto::session::v1 as pb;
use svc_kit::auth::{SECURE_SESSION_COOKIE, SESSION_COOKIE, session_token};
use svc_kit::clock::SharedClock;
use svc_kit::ratelimit::KeyedLimiter;
use tokio_stream::{Stream, StreamExt};
use tokio_util::sync::CancellationToken;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Request, Response, Status};

use crate::Error;
use crate::config::CookieSecurity;
use crate::sessions::{ChangeKind, EndReason, Session, SessionChange, Sessions};
use svc_kit::feed::{Delivery, FeedEnded};
use svc_kit::id::UserId;

fn to_pb(session: Session) -> pb::Session {
    let Session { user_id, display_name, created_at, last_accessed, expires_at } = session;
    pb::Session {
        user_id: user_id.into_string(),
        display_name,
        create_time: Some(proto::timestamp_from_ms(created_at)),
        last_access_time: Some(proto::timestamp_from_ms(last_accessed)),
        expire_time: Some(proto::timestamp_from_ms(expires_at)),
    }
}

/// `xiaowo.session.v1.SessionService`, the browser-facing part.
#[derive(Debug, Clone)]
pub struct PublicApi {
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) cookie_security: CookieSecurity,
    pub(crate) create_limiter: Arc<KeyedLimiter>,
}

impl PublicApi {
    fn cookie_is_secure(&self, metadata: &MetadataMap) -> bool {
        match self.cookie_security {
            CookieSecurity::Always => true,
            CookieSecurity::Never => false,
            CookieSecurity::Auto => request_is_secure(metadata),
        }
    }

    /// The `Set-Cookie` value carrying `token`, or clearing the cookie when `token` is empty.
    fn cookie(&self, metadata: &MetadataMap, token: &str) -> String {
        let max_age = if token.is_empty() { 0 } else { self.sessions.absolute_lifetime().as_secs() };
        if self.cookie_is_secure(metadata) {
            format!("{SECURE_SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict; Secure")
        } else {
            format!("{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict")
        }
    }
}

/// Whether the browser reached us over HTTPS (as the proxy says) or on a loopback host, where
/// browsers accept `Secure` cookies over plain HTTP.
pub(crate) fn request_is_secure(metadata: &MetadataMap) -> bool {
    let header = |name: &str| metadata.get(name).and_then(|value| value.to_str().ok()).map(str::to_ascii_lowercase);
    if header("x-forwarded-proto").is_some_and(|proto| proto.trim() == "https") {
        return true;
    }
    header("host").is_some_and(|host| {
        let hostname = match host.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default().to_owned(),
            None => host.split(':').next().unwrap_or_default().to_owned(),
        };
        hostname == "localhost" || hostname.ends_with(".localhost") || hostname == "127.0.0.1" || hostname == "::1"
    })
}

fn set_cookie<T>(response: &mut Response<T>, cookie: &str) -> Result<(), Status> {
    let value = MetadataValue::try_from(cookie).map_err(|_| Status::internal("invalid cookie"))?;
    response.metadata_mut().insert("set-cookie", value);
    Ok(())
}

#[tonic::async_trait]
impl pb::session_service_server::SessionService for PublicApi {
    #[tracing::instrument(skip_all)]
    async fn create_session(
        &self,
        request: Request<pb::CreateSessionRequest>,
    ) -> Result<Response<pb::CreateSessionResponse>, Status> {
        // Per client address: behind nginx, the address nginx saw, not nginx's own.
        let client = svc_kit::address::ClientAddress::key_of(&request);
        self.create_limiter.try_take(&client).map_err(Error::RateLimited)?;
        let metadata = request.metadata().clone();
        let pb::CreateSessionRequest { display_name } = request.into_inner();
        let created = self.sessions.create(&display_name).await?;
        let cookie = self.cookie(&metadata, &created.token);
        let mut response =
            Response::new(pb::CreateSessionResponse { session: Some(to_pb(created.session)), token: created.token });
        set_cookie(&mut response, &cookie)?;
        Ok(response)
    }

    #[tracing::instrument(skip_all)]
    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        let token = session_token(request.metadata());
        let pb::GetSessionRequest {} = request.into_inner();
        let session = self.sessions.authenticate(token.as_deref()).await?;
        Ok(Response::new(pb::GetSessionResponse { session: Some(to_pb(session)) }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_display_name(
        &self,
        request: Request<pb::UpdateDisplayNameRequest>,
    ) -> Result<Response<pb::UpdateDisplayNameResponse>, Status> {
        let token = session_token(request.metadata());
        let pb::UpdateDisplayNameRequest { display_name } = request.into_inner();
        let session = self.sessions.rename(token.as_deref(), &display_name).await?;
        Ok(Response::new(pb::UpdateDisplayNameResponse { session: Some(to_pb(session)) }))
    }

    #[tracing::instrument(skip_all)]
    async fn end_session(
        &self,
        request: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::EndSessionResponse>, Status> {
        let token = session_token(request.metadata());
        let metadata = request.metadata().clone();
        let pb::EndSessionRequest {} = request.into_inner();
        self.sessions.end(token.as_deref()).await?;
        let mut response = Response::new(pb::EndSessionResponse {});
        set_cookie(&mut response, &self.cookie(&metadata, ""))?;
        Ok(response)
    }

    #[tracing::instrument(skip_all)]
    async fn rotate_session(
        &self,
        request: Request<pb::RotateSessionRequest>,
    ) -> Result<Response<pb::RotateSessionResponse>, Status> {
        let token = session_token(request.metadata());
        let metadata = request.metadata().clone();
        let pb::RotateSessionRequest {} = request.into_inner();
        let rotated = self.sessions.rotate(token.as_deref()).await?;
        let cookie = self.cookie(&metadata, &rotated.token);
        let mut response =
            Response::new(pb::RotateSessionResponse { session: Some(to_pb(rotated.session)), token: rotated.token });
        set_cookie(&mut response, &cookie)?;
        Ok(response)
    }
}

fn change_to_pb(change: SessionChange) -> pb::WatchSessionChangesResponse {
    use pb::watch_session_changes_response::Event;
    let SessionChange { user_id, at_ms, kind } = change;
    let event = match kind {
        ChangeKind::Ended(reason) => {
            let reason = match reason {
                EndReason::LoggedOut => pb::SessionEndReason::LoggedOut,
                EndReason::Revoked => pb::SessionEndReason::Revoked,
                EndReason::Rotated => pb::SessionEndReason::Rotated,
            };
            Event::SessionEnded(pb::SessionEnded { user_id: user_id.into_string(), reason: reason.into() })
        }
        ChangeKind::Renamed => Event::DisplayNameChanged(pb::DisplayNameChanged { user_id: user_id.into_string() }),
    };
    pb::WatchSessionChangesResponse { event_time: Some(proto::timestamp_from_ms(at_ms)), event: Some(event) }
}

/// `xiaowo.session.v1.SessionInternalService`, for the other services.
#[derive(Debug, Clone)]
pub struct InternalApi {
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) clock: SharedClock,
    /// Interval of the heartbeat on change feeds.
    pub(crate) heartbeat: Duration,
    /// Ends the change feeds when the server stops, so that draining does not wait on them.
    pub(crate) shutdown: CancellationToken,
}

/// The `WatchSessionChanges` response stream.
pub type SessionChangeStream = Pin<Box<dyn Stream<Item = Result<pb::WatchSessionChangesResponse, Status>> + Send>>;

/// Items a watcher's feed may hold before it stops pulling from the broadcast (and, if it
/// stays stuck, falls behind and is ended).
const WATCH_BUFFER: usize = 64;

#[tonic::async_trait]
impl pb::session_internal_service_server::SessionInternalService for InternalApi {
    async fn validate_session(
        &self,
        request: Request<pb::ValidateSessionRequest>,
    ) -> Result<Response<pb::ValidateSessionResponse>, Status> {
        let pb::ValidateSessionRequest { token } = request.into_inner();
        let session = self.sessions.authenticate(Some(&token)).await?;
        let validate_time = Some(proto::timestamp_from_ms(self.clock.now_ms()));
        Ok(Response::new(pb::ValidateSessionResponse { session: Some(to_pb(session)), validate_time }))
    }

    type WatchSessionChangesStream = SessionChangeStream;

    #[tracing::instrument(skip_all)]
    async fn watch_session_changes(
        &self,
        request: Request<pb::WatchSessionChangesRequest>,
    ) -> Result<Response<Self::WatchSessionChangesStream>, Status> {
        let pb::WatchSessionChangesRequest {} = request.into_inner();
        let clock = Arc::clone(&self.clock);
        let deliveries = svc_kit::feed::watch_broadcast(
            self.sessions.subscribe(),
            self.heartbeat,
            WATCH_BUFFER,
            self.shutdown.child_token(),
        );
        let stream = deliveries.map(move |delivery| match delivery {
            Ok(Delivery::Heartbeat) => Ok(pb::WatchSessionChangesResponse {
                event_time: Some(proto::timestamp_from_ms(clock.now_ms())),
                event: Some(pb::watch_session_changes_response::Event::Heartbeat(pb::Heartbeat {})),
            }),
            Ok(Delivery::Item(change)) => Ok(change_to_pb(change)),
            Err(FeedEnded::FellBehind { missed }) => {
                tracing::warn!(missed, "session change watcher fell behind; ending its stream");
                Err(Status::unavailable("fell behind the session changes; reconnect and drop cached sessions"))
            }
            Err(FeedEnded::ShuttingDown) => Err(Status::unavailable("session service shutting down; reconnect")),
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn batch_get_display_names(
        &self,
        request: Request<pb::BatchGetDisplayNamesRequest>,
    ) -> Result<Response<pb::BatchGetDisplayNamesResponse>, Status> {
        let pb::BatchGetDisplayNamesRequest { user_ids } = request.into_inner();
        let display_names = self.sessions.display_names(&user_ids).await?;
        Ok(Response::new(pb::BatchGetDisplayNamesResponse { display_names }))
    }
}

/// `xiaowo.session.v1.SessionAdminService`, for operators holding the admin token (its guard
/// checks it).
#[derive(Debug, Clone)]
pub struct AdminApi {
    pub(crate) sessions: Arc<Sessions>,
}

#[tonic::async_trait]
impl pb::session_admin_service_server::SessionAdminService for AdminApi {
    #[tracing::instrument(skip_all)]
    async fn list_sessions(
        &self,
        request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        let pb::ListSessionsRequest { page_size, page_token } = request.into_inner();
        let (sessions, next) = self.sessions.list(page_size, &page_token).await?;
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: sessions.into_iter().map(to_pb).collect(),
            next_page_token: next.unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all, fields(user_id))]
    async fn revoke_session(
        &self,
        request: Request<pb::RevokeSessionRequest>,
    ) -> Result<Response<pb::RevokeSessionResponse>, Status> {
        let pb::RevokeSessionRequest { user_id } = request.into_inner();
        let user_id = UserId::parse("user_id", &user_id).map_err(Error::from)?;
        tracing::Span::current().record("user_id", user_id.as_str());
        self.sessions.revoke(&user_id).await?;
        Ok(Response::new(pb::RevokeSessionResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::request_is_secure;
    use tonic::metadata::MetadataMap;

    fn with(name: &'static str, value: &'static str) -> MetadataMap {
        let mut map = MetadataMap::new();
        map.insert(name, value.parse().unwrap());
        map
    }

    #[test]
    fn secure_over_https_or_loopback_only() {
        assert!(request_is_secure(&with("x-forwarded-proto", "https")));
        assert!(request_is_secure(&with("host", "localhost:8080")));
        assert!(request_is_secure(&with("host", "127.0.0.1:8080")));
        assert!(request_is_secure(&with("host", "[::1]:8080")));
        assert!(!request_is_secure(&with("host", "watch.example:8080")));
        assert!(!request_is_secure(&with("x-forwarded-proto", "http")));
        assert!(!request_is_secure(&MetadataMap::new()));
    }
}
