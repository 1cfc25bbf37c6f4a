//! chat-svc's one error type and its one mapping to gRPC status codes.

use std::time::Duration;

use svc_kit::status::Violation;

/// Everything a chat-svc call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad request fields.
    #[error("invalid argument")]
    InvalidArgument(Vec<Violation>),
    /// The caller is not a member of the room (or was removed from it).
    #[error("not a member of the room")]
    NotMember,
    /// The caller's role does not allow the action: not a moderator, or the target member
    /// outranks them.
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The caller is muted in this room.
    #[error("muted")]
    Muted { until: i64 },
    /// Unknown room.
    #[error("room not found")]
    RoomNotFound,
    /// Unknown message.
    #[error("message not found")]
    MessageNotFound,
    /// The target user is not a member.
    #[error("member not found")]
    MemberNotFound,
    /// The room is closed.
    #[error("room closed")]
    RoomClosed,
    /// Flood limit.
    #[error("sending too fast; retry in {0:?}")]
    RateLimited(Duration),
    /// A peer (session-svc, room-svc) did not answer, or the service is stopping.
    #[error("unavailable")]
    Unavailable,
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
            Error::Muted { until } => Self::permission_denied(format!("muted until {until} (Unix ms)")),
            Error::RoomNotFound => Self::not_found("room not found"),
            Error::MessageNotFound => Self::not_found("message not found"),
            Error::MemberNotFound => Self::not_found("member not found"),
            Error::RoomClosed => Self::failed_precondition("room closed"),
            Error::RateLimited(retry_after) => {
                Self::resource_exhausted(format!("sending too fast; retry in {}ms", retry_after.as_millis().max(1)))
            }
            Error::Unavailable => Self::unavailable("service unavailable; retry"),
            Error::Database(error) => svc_kit::status::database(&error),
        }
    }
}
