//! session-svc's one error type and its one mapping to gRPC status codes.

use std::time::Duration;

use svc_kit::auth::AuthError;
use svc_kit::status::Violation;

/// Everything a session-svc call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad request fields.
    #[error("invalid argument")]
    InvalidArgument(Vec<Violation>),
    /// No token, or an unknown, expired or revoked one.
    #[error("unauthenticated")]
    Unauthenticated,
    /// No session with that id.
    #[error("session not found")]
    SessionNotFound,
    /// Too many sessions created from one address.
    #[error("too many new sessions; retry in {0:?}")]
    RateLimited(Duration),
    /// The database failed.
    #[error("database")]
    Database(#[from] sea_orm::DbErr),
}

impl From<Violation> for Error {
    fn from(violation: Violation) -> Self {
        Self::InvalidArgument(vec![violation])
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(violations) => svc_kit::status::invalid_argument(&violations),
            // The same refusal, in the same words, as the other services' guards give.
            Error::Unauthenticated => AuthError::Unauthenticated.into(),
            Error::SessionNotFound => Self::not_found("session not found"),
            Error::RateLimited(retry_after) => {
                Self::resource_exhausted(format!("too many new sessions; retry in {}s", retry_after.as_secs().max(1)))
            }
            Error::Database(error) => svc_kit::status::database(&error),
        }
    }
}
