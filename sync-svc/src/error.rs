//! sync-svc's one error type and its one mapping to gRPC status codes.

use std::time::Duration;

use svc_kit::auth::AuthError;
use svc_kit::status::Violation;

use crate::timeline::RoomState;

/// Everything a sync-svc call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad request fields.
    #[error("invalid argument")]
    InvalidArgument(Vec<Violation>),
    /// No session, or an unknown or expired one.
    #[error("unauthenticated")]
    Unauthenticated,
    /// Not a member of the room, not allowed to control it, or an admin RPC without the token.
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
    /// room-svc does not know the room.
    #[error("room not found")]
    RoomNotFound,
    /// No queue item with that id.
    #[error("queue item not found")]
    QueueItemNotFound,
    /// The command does not apply to the room as it is (closed, nothing loaded, empty queue).
    #[error("failed precondition: {0}")]
    FailedPrecondition(&'static str),
    /// The caller's version is stale; carries the current state so that the client can rebase.
    #[error("version conflict")]
    Conflict(Box<RoomState>),
    /// Too many commands from one caller.
    #[error("too many commands; retry in {0:?}")]
    RateLimited(Duration),
    /// A peer (room-svc, session-svc) did not answer.
    #[error("peer unavailable: {0}")]
    Unavailable(String),
    /// The server is shutting down; streams end so that shutdown is not held up.
    #[error("shutting down")]
    ShuttingDown,
    /// The database failed.
    #[error("database")]
    Database(#[from] sea_orm::DbErr),
}

impl From<AuthError> for Error {
    fn from(error: AuthError) -> Self {
        match error {
            AuthError::Unauthenticated => Self::Unauthenticated,
            AuthError::PermissionDenied => Self::PermissionDenied("admin token required"),
            AuthError::Unavailable(reason) => Self::Unavailable(reason),
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
            Error::Unauthenticated => Self::unauthenticated("missing or expired session"),
            Error::PermissionDenied(reason) => Self::permission_denied(reason),
            Error::RoomNotFound => Self::not_found("room not found"),
            Error::QueueItemNotFound => Self::not_found("queue item not found"),
            Error::FailedPrecondition(reason) => Self::failed_precondition(reason),
            Error::Conflict(state) => crate::grpc::conflict_status(&state),
            Error::RateLimited(retry_after) => {
                Self::resource_exhausted(format!("too many commands; retry in {}s", retry_after.as_secs().max(1)))
            }
            Error::Unavailable(reason) => {
                tracing::warn!(%reason, "peer unavailable");
                Self::unavailable("a peer service is unavailable")
            }
            Error::ShuttingDown => Self::unavailable("the server is shutting down; reconnect"),
            Error::Database(error) => svc_kit::status::database(&error),
        }
    }
}
