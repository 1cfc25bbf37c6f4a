//! monitor-svc's one error type and its one mapping to gRPC status codes.

use svc_kit::status::Violation;

/// Everything a monitor-svc call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad request fields.
    #[error("invalid argument")]
    InvalidArgument(Vec<Violation>),
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
            Error::Database(error) => svc_kit::status::database(&error),
        }
    }
}
