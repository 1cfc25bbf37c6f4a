//! room-svc's one error type and its one mapping to gRPC status codes.

use std::time::Duration;

use svc_kit::status::Violation;

/// Everything a room-svc call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad request fields.
    #[error("invalid argument")]
    InvalidArgument(Vec<Violation>),
    /// The caller's role does not allow the action (see `permissions`).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// Joining with a wrong or missing password.
    #[error("wrong room password")]
    WrongPassword,
    /// The caller was kicked and the ban has not run out yet.
    #[error("kicked from this room; retry in {0:?}")]
    Banned(Duration),
    /// Too many wrong passwords for this room or from this caller.
    #[error("too many wrong passwords; retry in {0:?}")]
    RateLimited(Duration),
    /// The caller (session or address) created as many rooms as allowed for now.
    #[error("too many rooms created; retry in {0:?}")]
    CreateLimited(Duration),
    /// The caller owns as many open rooms as allowed; one of them closing (the idle janitor
    /// closes the least active first) makes room for another.
    #[error("too many open rooms; retry in {retry_after:?}")]
    TooManyOpenRooms { open: u64, retry_after: Duration },
    /// The room has as many members as allowed.
    #[error("room is full")]
    RoomFull,
    /// No room with that id.
    #[error("room not found")]
    RoomNotFound,
    /// The user named in the request is not a member of the room.
    #[error("member not found")]
    MemberNotFound,
    /// The room is closed: nothing in it can change any more.
    #[error("room is closed")]
    RoomClosed,
    /// The request is well-formed but the room's state does not allow it (e.g. leaving a room
    /// one is not in, changing the owner's role other than by a transfer).
    #[error("failed precondition: {0}")]
    FailedPrecondition(&'static str),
    /// The room changed under a concurrent request; retrying will see the new state.
    #[error("room changed concurrently")]
    Aborted,
    /// A peer (session-svc) did not answer in time.
    #[error("peer unavailable: {0}")]
    Unavailable(String),
    /// Hashing or checking a password failed.
    #[error("password hashing")]
    Hashing(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The database failed.
    #[error("database")]
    Database(#[from] sea_orm::DbErr),
}

impl From<Violation> for Error {
    fn from(violation: Violation) -> Self {
        Self::InvalidArgument(vec![violation])
    }
}

fn seconds(duration: Duration) -> u64 {
    duration.as_secs().max(1)
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(violations) => svc_kit::status::invalid_argument(&violations),
            Error::Forbidden(reason) => Self::permission_denied(reason),
            Error::WrongPassword => Self::permission_denied("wrong room password"),
            Error::Banned(remaining) => {
                Self::permission_denied(format!("kicked from this room; rejoin in {}s", seconds(remaining)))
            }
            Error::RateLimited(retry_after) => svc_kit::status::resource_exhausted(
                format!("too many wrong passwords; retry in {}s", seconds(retry_after)),
                retry_after,
            ),
            Error::CreateLimited(retry_after) => svc_kit::status::resource_exhausted(
                format!("too many rooms created; retry in {}s", seconds(retry_after)),
                retry_after,
            ),
            Error::TooManyOpenRooms { open, retry_after } => svc_kit::status::resource_exhausted(
                format!("you already have {open} open rooms; close one or retry in {}s", seconds(retry_after)),
                retry_after,
            ),
            Error::RoomFull => Self::resource_exhausted("room is full"),
            Error::RoomNotFound => Self::not_found("room not found"),
            Error::MemberNotFound => Self::not_found("not a member of this room"),
            Error::RoomClosed => Self::failed_precondition("room is closed"),
            Error::FailedPrecondition(reason) => Self::failed_precondition(reason),
            Error::Aborted => Self::aborted("room changed concurrently; retry"),
            Error::Unavailable(reason) => {
                tracing::warn!(%reason, "peer unavailable");
                Self::unavailable("a peer service is unavailable; retry")
            }
            error @ Error::Hashing(_) => svc_kit::status::internal(&error),
            Error::Database(error) => svc_kit::status::database(&error),
        }
    }
}
