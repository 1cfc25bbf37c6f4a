//! Starting a real server on a free loopback port for integration tests, through the same
//! [`Assembly`] path as production.

use std::net::SocketAddr;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::server::{Assembly, ServeError, ServerConfig};

/// An assembly bound to `127.0.0.1:0` with default settings and a short grace period.
///
/// # Panics
/// When no loopback port can be bound.
#[allow(clippy::expect_used)]
pub async fn bind() -> Assembly {
    let mut config: ServerConfig = crate::config::from_env();
    config.shutdown_grace = std::time::Duration::from_secs(2);
    Assembly::bind(SocketAddr::from(([127, 0, 0, 1], 0)), config, CancellationToken::new())
        .await
        .expect("bind a loopback port")
}

/// A server running in the background; stopped when dropped or by [`TestServer::stop`].
#[derive(Debug)]
pub struct TestServer {
    /// The bound address.
    pub addr: SocketAddr,
    /// `http://<addr>`.
    pub url: String,
    shutdown: CancellationToken,
    handle: Option<JoinHandle<Result<(), ServeError>>>,
}

impl TestServer {
    /// Runs `assembly` until stopped.
    #[must_use]
    pub fn spawn(assembly: Assembly) -> Self {
        let addr = assembly.local_addr();
        let shutdown = assembly.stop_token();
        let handle = tokio::spawn(assembly.run());
        Self { addr, url: format!("http://{addr}"), shutdown, handle: Some(handle) }
    }

    /// Stops the server and waits for it to finish draining.
    ///
    /// # Panics
    /// When the server task failed.
    #[allow(clippy::expect_used)]
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            handle.await.expect("server task").expect("server stopped cleanly");
        }
    }

    /// A channel to this server.
    ///
    /// # Panics
    /// Never for the URL this server builds.
    #[allow(clippy::expect_used)]
    #[must_use]
    pub fn channel(&self) -> tonic::transport::Channel {
        crate::peer::channel(&self.url, std::time::Duration::from_secs(5)).expect("valid url")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `message` as a call carrying `authorization: Bearer <token>`.
///
/// # Panics
/// When `token` is not a valid header value.
#[allow(clippy::expect_used)]
#[must_use]
pub fn with_bearer<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("header value"));
    request
}

/// The fields named by an `INVALID_ARGUMENT` status's `BadRequest` details, sorted.
///
/// # Panics
/// When the status is not `INVALID_ARGUMENT`.
#[must_use]
pub fn violations(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt;
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    let mut fields: Vec<String> = status
        .get_details_bad_request()
        .map(|bad| bad.field_violations.into_iter().map(|violation| violation.field).collect())
        .unwrap_or_default();
    fields.sort();
    fields
}

/// The status code of a call's outcome (`OK` for a success).
#[must_use]
pub fn code<T>(result: Result<T, tonic::Status>) -> tonic::Code {
    result.map_or_else(|status| status.code(), |_| tonic::Code::Ok)
}
