//! sync-svc's one error type and its one mapping to gRPC status codes.

use std::time::Duration;

use svc_kit::status::Violation;

use crate::timeline::RoomState;

/// Everything a sync-svc call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad request fields.
    #[error("invalid argument")]
    InvalidArgument(Vec<Violation>),
    /// The caller is not a member of the room (or no longer is).
    #[error("not a member of the room")]
    NotMember,
    /// The caller's role or the room's control mode does not allow the action.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
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

impl From<Violation> for Error {
    fn from(violation: Violation) -> Self {
        Self::InvalidArgument(vec![violation])
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(violations) => svc_kit::status::invalid_argument(&violations),
            Error::NotMember => Self::permission_denied("not a member of the room"),
            Error::Forbidden(reason) => Self::permission_denied(reason),
            Error::RoomNotFound => Self::not_found("room not found"),
            Error::QueueItemNotFound => Self::not_found("queue item not found"),
            Error::FailedPrecondition(reason) => Self::failed_precondition(reason),
            Error::Conflict(state) => crate::grpc::conflict_status(&state),
            Error::RateLimited(retry_after) => {
                Self::resource_exhausted(format!("too many commands; retry in {}s", retry_after.as_secs().max(1)))
            }
            Error::Unavailable(reason) => {
                tracing::warn!(%reason, "peer unavailable");
                Self::unavailable("a peer service is unavailable; retry")
            }
            Error::ShuttingDown => Self::unavailable("the server is shutting down; reconnect"),
            Error::Database(error) => svc_kit::status::database(&error),
        }
    }
}
