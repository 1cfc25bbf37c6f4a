//! Requests that are not valid protobuf — above all a string field that is not UTF-8 — are the
//! caller's fault, but tonic's codec answers them with `INTERNAL`. This wrapper turns exactly
//! those answers into `INVALID_ARGUMENT` with a `BadRequest`, without touching anything else.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use svc_kit::status::{Violation, invalid_argument};
use tonic::body::Body;
use tonic::server::NamedService;

/// Wraps one generated tonic service.
#[derive(Debug, Clone)]
pub struct DecodeErrorsAsInvalidArgument<S> {
    inner: S,
}

impl<S> DecodeErrorsAsInvalidArgument<S> {
    /// Wraps `inner`.
    pub fn new(inner: S) -> Self {
        Self { inner }
    }
}

impl<S: NamedService> NamedService for DecodeErrorsAsInvalidArgument<S> {
    const NAME: &'static str = S::NAME;
}

/// tonic's codec reports undecodable requests as `INTERNAL` with this message prefix
/// (percent-encoded in the `grpc-message` header).
fn is_decode_error(response: &http::Response<Body>) -> bool {
    let header = |name: &str| response.headers().get(name).map(http::HeaderValue::as_bytes);
    let message = header("grpc-message").unwrap_or_default();
    let contains = |needle: &[u8]| message.windows(needle.len()).any(|window| window == needle);
    header("grpc-status") == Some(b"13".as_slice()) && contains(b"decode") && contains(b"Protobuf")
}

impl<S> tower::Service<http::Request<Body>> for DecodeErrorsAsInvalidArgument<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            if is_decode_error(&response) {
                let violation = Violation::new("request", "is not valid protobuf (a string that is not UTF-8?)");
                return Ok(invalid_argument(&[violation]).into_http());
            }
            Ok(response)
        })
    }
}
