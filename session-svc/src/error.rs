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
    /// Admin RPC without the admin token.
    #[error("admin token required")]
    PermissionDenied,
    /// No session with that id.
    #[error("session not found")]
    NotFound,
    /// Too many sessions created from one address.
    #[error("too many new sessions; retry in {0:?}")]
    RateLimited(Duration),
    /// The database failed.
    #[error("database")]
    Database(#[from] sea_orm::DbErr),
}

impl From<AuthError> for Error {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthenticated | AuthError::Unavailable(_) => Self::Unauthenticated,
            AuthError::PermissionDenied => Self::PermissionDenied,
        }
    }
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
            Error::Unauthenticated => Self::unauthenticated("missing, expired or revoked session"),
            Error::PermissionDenied => Self::permission_denied("admin token required"),
            Error::NotFound => Self::not_found("session not found"),
            Error::RateLimited(retry_after) => {
                Self::resource_exhausted(format!("too many new sessions; retry in {}s", retry_after.as_secs().max(1)))
            }
            Error::Database(error) => svc_kit::status::database(&error),
        }
    }
}
