//! Building the rich `INVALID_ARGUMENT` status every service returns for bad input: one
//! `google.rpc.BadRequest` field violation per problem, so that clients can point at the field.

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
