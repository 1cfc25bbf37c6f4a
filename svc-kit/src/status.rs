//! Building the rich `INVALID_ARGUMENT` status every service returns for bad input: one
//! `google.rpc.BadRequest` field violation per problem, so that clients can point at the field;
//! and the status for a database failure, which tells a busy database (retry) from a fault.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// One problem with one request field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field's name as in the `.proto` (`display_name`, `room.password`).
    pub field: String,
    /// What is wrong, for a person.
    pub description: String,
}

impl Violation {
    /// A violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self { field: field.into(), description: description.into() }
    }
}

/// The `INVALID_ARGUMENT` status carrying `violations` as `google.rpc.BadRequest`.
#[must_use]
pub fn invalid_argument(violations: &[Violation]) -> Status {
    let message = violations
        .iter()
        .map(|violation| format!("{}: {}", violation.field, violation.description))
        .collect::<Vec<_>>()
        .join("; ");
    let field_violations = violations
        .iter()
        .map(|violation| FieldViolation::new(violation.field.clone(), violation.description.clone()))
        .collect::<Vec<_>>();
    Status::with_error_details(Code::InvalidArgument, message, ErrorDetails::with_bad_request(field_violations))
}

/// `RESOURCE_EXHAUSTED` for a limit the caller ran into, carrying `google.rpc.RetryInfo` with
/// how long to wait (at least a second), so that clients can tell the person when to try again.
#[must_use]
pub fn resource_exhausted(message: impl Into<String>, retry_after: std::time::Duration) -> Status {
    let retry_after = retry_after.max(std::time::Duration::from_secs(1));
    Status::with_error_details(Code::ResourceExhausted, message, ErrorDetails::with_retry_info(Some(retry_after)))
}

/// The opaque status for a fault of ours; the cause is logged with its chain, never returned.
#[must_use]
pub fn internal(error: &(dyn std::error::Error + 'static)) -> Status {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    tracing::error!(error = %chain, "internal error");
    Status::internal("internal error")
}

/// The status for a database failure. A database that stayed locked by another writer past the
/// busy timeout, or a pool with no free connection in time, is `UNAVAILABLE`: the request
/// changed nothing (its transaction rolled back) and the same request may simply be retried.
/// Anything else is an opaque [`internal`] error.
#[must_use]
pub fn database(error: &sea_orm::DbErr) -> Status {
    if is_busy(error) {
        tracing::warn!(%error, "database busy; request refused as retryable");
        Status::unavailable("the database is busy; retry")
    } else {
        internal(error)
    }
}

/// Whether `error` means "busy, try again" rather than a fault: SQLite's `SQLITE_BUSY` or
/// `SQLITE_LOCKED` (with any extended code), PostgreSQL's `lock_not_available`, or a timed-out
/// wait for a pooled connection.
#[must_use]
pub fn is_busy(error: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error as SqlxError;
    use sea_orm::{ConnAcquireErr, DbErr, RuntimeErr};
    const SQLITE_BUSY: i64 = 5;
    const SQLITE_LOCKED: i64 = 6;
    const POSTGRES_LOCK_NOT_AVAILABLE: &str = "55P03";
    match error {
        DbErr::ConnectionAcquire(ConnAcquireErr::Timeout) => true,
        DbErr::Conn(RuntimeErr::SqlxError(sqlx_error))
        | DbErr::Exec(RuntimeErr::SqlxError(sqlx_error))
        | DbErr::Query(RuntimeErr::SqlxError(sqlx_error)) => match sqlx_error.as_ref() {
            SqlxError::PoolTimedOut => true,
            SqlxError::Database(database_error) => database_error.code().is_some_and(|code| {
                // SQLite reports extended codes; the primary code is the low byte.
                code == POSTGRES_LOCK_NOT_AVAILABLE
                    || code.parse::<i64>().is_ok_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED))
            }),
            _ => false,
        },
        _ => false,
    }
}
