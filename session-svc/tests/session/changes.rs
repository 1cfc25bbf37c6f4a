//! `WatchSessionChanges` and the `SessionValidator` that follows it, as room-svc, sync-svc and
//! chat-svc hold one.

use std::sync::Arc;
use std::time::Duration;

use proto::session::v1 as pb;
use proto::session::v1::session_service_client::SessionServiceClient;
use svc_kit::auth::{AuthError, INTERNAL_TOKEN_HEADER};
use svc_kit::peer::session::SessionValidator;
use svc_kit::testing::{PATIENCE, eventually, with_bearer};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use xiaowo::node::Target;

use crate::helpers::App;

/// Longer than any session's idle timeout: session-svc refuses every token after this.
const PAST_EVERY_EXPIRY: Duration = Duration::from_secs(15 * 24 * 3600);

/// `validator` following session-svc's changes in the background, once the stream is live.
struct Follower {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Follower {
    async fn start(validator: &Arc<SessionValidator>) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn({
            let (validator, shutdown) = (Arc::clone(validator), shutdown.clone());
            async move { validator.follow_session_changes(shutdown).await }
        });
        eventually("the change stream is live", || async { validator.following_changes() }).await;
        Self { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

/// The next message that is not a heartbeat.
async fn next_change(
    stream: &mut tonic::Streaming<pb::WatchSessionChangesResponse>,
) -> pb::watch_session_changes_response::Event {
    use pb::watch_session_changes_response::Event;
    loop {
        let message = tokio::time::timeout(PATIENCE, stream.message()).await.unwrap().unwrap().unwrap();
        match message.event.unwrap() {
            Event::Heartbeat(_) => {}
            event => return event,
        }
    }
}

#[tokio::test]
async fn the_stream_reports_logout_revocation_rotation_and_renames() {
    use pb::watch_session_changes_response::Event;
    let app = App::start().await;
    let (leaving, leaving_token) = app.user("Leaving").await;
    let (revoked, _) = app.user("Revoked").await;
    let (rotating, rotating_token) = app.user("Rotating").await;
    let (renaming, renaming_token) = app.user("Renaming").await;
    let mut stream = app.watch().await;
    let first = tokio::time::timeout(PATIENCE, stream.message()).await.unwrap().unwrap().unwrap();
    assert!(matches!(first.event, Some(Event::Heartbeat(_))), "live first: {first:?}");

    let mut public = SessionServiceClient::new(app.channel());
    public.end_session(with_bearer(pb::EndSessionRequest {}, &leaving_token)).await.unwrap();
    app.revoke(&revoked).await;
    public.rotate_session(with_bearer(pb::RotateSessionRequest {}, &rotating_token)).await.unwrap();
    let rename = pb::UpdateDisplayNameRequest { display_name: "Renamed".to_owned() };
    public.update_display_name(with_bearer(rename, &renaming_token)).await.unwrap();
    // A refused logout ends nothing and says nothing.
    let refused = public.end_session(with_bearer(pb::EndSessionRequest {}, &leaving_token)).await;
    assert_eq!(refused.unwrap_err().code(), Code::Unauthenticated);

    let ended = |user_id: &str, reason: pb::SessionEndReason| {
        Event::SessionEnded(pb::SessionEnded { user_id: user_id.to_owned(), reason: reason.into() })
    };
    assert_eq!(next_change(&mut stream).await, ended(&leaving, pb::SessionEndReason::LoggedOut));
    assert_eq!(next_change(&mut stream).await, ended(&revoked, pb::SessionEndReason::Revoked));
    assert_eq!(next_change(&mut stream).await, ended(&rotating, pb::SessionEndReason::Rotated));
    assert_eq!(
        next_change(&mut stream).await,
        Event::DisplayNameChanged(pb::DisplayNameChanged { user_id: renaming.clone() })
    );
}

#[tokio::test]
async fn the_stream_needs_the_internal_token() {
    let app = App::start().await;
    let missing = app.internal().watch_session_changes(pb::WatchSessionChangesRequest {}).await;
    assert_eq!(missing.unwrap_err().code(), Code::Unauthenticated);
    let mut wrong = tonic::Request::new(pb::WatchSessionChangesRequest {});
    wrong.metadata_mut().insert(INTERNAL_TOKEN_HEADER, "not-the-internal-token".parse().unwrap());
    assert_eq!(app.internal().watch_session_changes(wrong).await.unwrap_err().code(), Code::Unauthenticated);
    // The end user's bearer token is not the internal credential.
    let (_, token) = app.user("Curious").await;
    let bearer = with_bearer(pb::WatchSessionChangesRequest {}, &token);
    assert_eq!(app.internal().watch_session_changes(bearer).await.unwrap_err().code(), Code::Unauthenticated);
    let mut stream = app.watch().await;
    assert!(tokio::time::timeout(PATIENCE, stream.message()).await.unwrap().unwrap().is_some());
}

#[tokio::test]
async fn a_followed_cache_drops_an_ended_session_at_once_and_keeps_the_others() {
    let app = App::start().await;
    let (revoked, revoked_token) = app.user("Revoked").await;
    let (_, kept_token) = app.user("Kept").await;
    let short_ttl = Duration::from_millis(500);
    let validator = app.validator(short_ttl);
    let follower = Follower::start(&validator).await;
    for token in [&revoked_token, &kept_token] {
        validator.validate(token).await.unwrap();
    }

    // From now on session-svc would refuse every token: whatever still validates comes from
    // the cache, which outlives the short TTL while the stream is live.
    app.advance(PAST_EVERY_EXPIRY);
    tokio::time::sleep(short_ttl * 3).await;
    for token in [&revoked_token, &kept_token] {
        assert!(validator.validate(token).await.is_ok());
    }

    app.revoke(&revoked).await;
    eventually("the revoked session is refused", || async {
        matches!(validator.validate(&revoked_token).await, Err(AuthError::Unauthenticated))
    })
    .await;
    // session-svc would refuse it too: only the cache, untouched by the change, still answers.
    assert_eq!(validator.validate(&kept_token).await.unwrap().display_name, "Kept");
    follower.stop().await;
}

#[tokio::test]
async fn a_logout_reaches_a_following_cache() {
    let app = App::start().await;
    let (_, leaving_token) = app.user("Leaving").await;
    let (_, kept_token) = app.user("Kept").await;
    let validator = app.validator(Duration::from_secs(3600));
    let follower = Follower::start(&validator).await;
    validator.validate(&leaving_token).await.unwrap();
    validator.validate(&kept_token).await.unwrap();
    SessionServiceClient::new(app.channel())
        .end_session(with_bearer(pb::EndSessionRequest {}, &leaving_token))
        .await
        .unwrap();
    eventually("the logged-out session is refused", || async {
        matches!(validator.validate(&leaving_token).await, Err(AuthError::Unauthenticated))
    })
    .await;
    assert_eq!(validator.validate(&kept_token).await.unwrap().display_name, "Kept");
    follower.stop().await;
}

#[tokio::test]
async fn when_the_stream_breaks_the_short_ttl_applies_and_a_restart_makes_it_live_again() {
    let app = App::start().await;
    let (_, token) = app.user("Watcher").await;
    let short_ttl = Duration::from_millis(500);
    let validator = app.validator(short_ttl);
    let follower = Follower::start(&validator).await;
    validator.validate(&token).await.unwrap();

    let App { stack, node } = app;
    let addr = node.addr;
    node.stop().await;
    eventually("the validator notices the stream is gone", || async { !validator.following_changes() }).await;
    // With session-svc gone, the cached answer is served no longer than the short TTL.
    eventually("the cached answer is given up", || async {
        matches!(validator.validate(&token).await, Err(AuthError::Unavailable(_)))
    })
    .await;

    let _restarted = stack.start_at(addr, &[Target::Session]).await;
    eventually("the validator follows the restarted session-svc", || async { validator.following_changes() }).await;
    assert_eq!(validator.validate(&token).await.unwrap().display_name, "Watcher");
    follower.stop().await;
}

#[tokio::test]
async fn without_the_stream_a_revoked_session_is_refused_after_the_ttl() {
    let app = App::start().await;
    let (revoked, token) = app.user("Revoked").await;
    let validator = app.validator(Duration::from_secs(1));
    assert!(!validator.following_changes());
    validator.validate(&token).await.unwrap();
    app.revoke(&revoked).await;
    eventually("the revoked session is refused once its answer is a TTL old", || async {
        matches!(validator.validate(&token).await, Err(AuthError::Unauthenticated))
    })
    .await;
}
