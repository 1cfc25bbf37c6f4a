//! monitor-svc's one error type and its one mapping to gRPC status codes.

use svc_kit::auth::AuthError;
use svc_kit::status::Violation;

/// Everything a monitor-svc call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad request fields.
    #[error("invalid argument")]
    InvalidArgument(Vec<Violation>),
    /// No admin token presented.
    #[error("unauthenticated")]
    Unauthenticated,
    /// A wrong admin token, or admin access disabled.
    #[error("admin token required")]
    PermissionDenied,
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
            Error::Unauthenticated => Self::unauthenticated("admin token required"),
            Error::PermissionDenied => Self::permission_denied("admin token required"),
            Error::Database(error) => svc_kit::status::database(&error),
        }
    }
}
