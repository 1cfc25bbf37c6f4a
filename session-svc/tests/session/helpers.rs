//! The session tests' app: session-svc alone in a [`Stack`], with a manual clock.

use std::sync::Arc;
use std::time::Duration;

use proto::session::v1 as pb;
use proto::session::v1::session_admin_service_client::SessionAdminServiceClient;
use proto::session::v1::session_internal_service_client::SessionInternalServiceClient;
use proto::session::v1::session_service_client::SessionServiceClient;
use svc_kit::clock::Clock;
use svc_kit::peer::session::SessionValidator;
use tonic::transport::Channel;
use xiaowo::node::{Common, Target};
use xiaowo::testing::{Node, Stack, as_admin};

pub use xiaowo::testing::START_MS;

pub struct App {
    pub stack: Stack,
    pub node: Node,
}

impl App {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// With `configure` applied to session-svc's settings.
    pub async fn start_with(configure: impl FnOnce(&mut session_svc::Config)) -> Self {
        let stack = Stack::new().await.with(|common: &mut Common| configure(&mut common.session));
        let node = stack.start(&[Target::Session]).await;
        Self { stack, node }
    }

    pub fn channel(&self) -> Channel {
        self.node.channel()
    }

    pub fn public(&self) -> SessionServiceClient<Channel> {
        SessionServiceClient::new(self.channel())
    }

    pub fn internal(&self) -> SessionInternalServiceClient<Channel> {
        SessionInternalServiceClient::new(self.channel())
    }

    pub fn admin(&self) -> SessionAdminServiceClient<Channel> {
        SessionAdminServiceClient::new(self.channel())
    }

    pub fn advance(&self, by: Duration) {
        self.stack.clock.advance(by);
    }

    pub fn now_ms(&self) -> i64 {
        self.stack.clock.now_ms()
    }

    pub async fn create(&self, name: &str) -> pb::CreateSessionResponse {
        self.public()
            .create_session(pb::CreateSessionRequest { display_name: name.to_owned() })
            .await
            .unwrap()
            .into_inner()
    }

    /// A new session: (user id, token).
    pub async fn user(&self, name: &str) -> (String, String) {
        let created = self.create(name).await;
        (created.session.unwrap().user_id, created.token)
    }

    pub async fn who_am_i(&self, token: &str) -> Result<pb::Session, tonic::Status> {
        let request = svc_kit::testing::with_bearer(pb::GetSessionRequest {}, token);
        Ok(self.public().get_session(request).await?.into_inner().session.unwrap())
    }

    pub async fn revoke(&self, user_id: &str) {
        self.admin().revoke_session(as_admin(pb::RevokeSessionRequest { user_id: user_id.to_owned() })).await.unwrap();
    }

    pub async fn watch(&self) -> tonic::Streaming<pb::WatchSessionChangesResponse> {
        let request = self.stack.internal(pb::WatchSessionChangesRequest {});
        self.internal().watch_session_changes(request).await.unwrap().into_inner()
    }

    /// A validator as the other services hold one, keeping answers `cache_ttl` without the
    /// change stream.
    pub fn validator(&self, cache_ttl: Duration) -> Arc<SessionValidator> {
        Arc::new(
            SessionValidator::new(self.channel(), cache_ttl)
                .with_internal_token(Some(self.stack.internal_token().clone())),
        )
    }

    /// The service's database, opened beside the running server.
    pub async fn database(&self) -> sea_orm::DatabaseConnection {
        let url = self.stack.database_url(Target::Session);
        svc_kit::db::connect::<session_svc::Migrator>(&url, &svc_kit::db::DbOptions::default()).await.unwrap()
    }
}
