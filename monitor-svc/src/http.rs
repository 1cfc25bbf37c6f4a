//! A small HTTP/1.1 client for scraping `/metrics` and posting notifications, with a deadline on
//! every request and a cap on how much of a response is read.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// Most bytes of a response body read; a `/metrics` page of a Xiaowo service is a few dozen kB.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL or request could not be built.
    #[error("bad request: {0}")]
    Request(String),
    /// No answer within the deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// Connecting, sending or reading failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The server answered with a non-2xx status.
    #[error("HTTP status {0}")]
    Status(http::StatusCode),
}

/// A pooled HTTP/1.1 client (plain HTTP: targets and receivers are on the private network).
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").finish_non_exhaustive()
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClient {
    /// A client with its own connection pool.
    #[must_use]
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self { client: Client::builder(TokioExecutor::new()).build(connector) }
    }

    /// GETs `url`; the body of a 2xx answer.
    ///
    /// # Errors
    /// See [`HttpError`].
    pub async fn get(&self, url: &str, timeout: Duration) -> Result<Bytes, HttpError> {
        let request = http::Request::get(url)
            .header(http::header::ACCEPT, "text/plain")
            .body(Full::new(Bytes::new()))
            .map_err(|error| HttpError::Request(error.to_string()))?;
        self.send(request, timeout).await
    }

    /// POSTs `body` as JSON to `url`; the body of a 2xx answer.
    ///
    /// # Errors
    /// See [`HttpError`].
    pub async fn post_json(&self, url: &str, body: &serde_json::Value, timeout: Duration) -> Result<Bytes, HttpError> {
        let request = http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|error| HttpError::Request(error.to_string()))?;
        self.send(request, timeout).await
    }

    async fn send(&self, request: http::Request<Full<Bytes>>, timeout: Duration) -> Result<Bytes, HttpError> {
        let exchange = async {
            let response =
                self.client.request(request).await.map_err(|error| HttpError::Transport(error.to_string()))?;
            let status = response.status();
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES)
                .collect()
                .await
                .map_err(|error| HttpError::Transport(error.to_string()))?
                .to_bytes();
            if status.is_success() { Ok(body) } else { Err(HttpError::Status(status)) }
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| HttpError::Timeout(timeout))?
    }
}
