//! gRPC statuses with `google.rpc` details, built one way for every service.
//!
//! Each service keeps one error enum and maps it to a [`Status`] in one
//! place, using these builders so that the codes and details mean the same
//! thing everywhere.

use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Field violations gathered while parsing a request at the edge.
#[derive(Debug, Default, Clone)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    /// No violations yet.
    pub fn new() -> Self {
        Violations::default()
    }

    /// Records that `field` is wrong, saying what is expected.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation::new(field, description));
    }

    /// Records the violation when `bad` holds.
    pub fn check(&mut self, bad: bool, field: &str, description: impl FnOnce() -> String) {
        if bad {
            self.add(field, description());
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, else the violations.
    pub fn into_result<T>(self, value: T) -> Result<T, Violations> {
        if self.0.is_empty() { Ok(value) } else { Err(self) }
    }

    /// The recorded violations.
    pub fn iter(&self) -> impl Iterator<Item = &FieldViolation> {
        self.0.iter()
    }
}

impl std::fmt::Display for Violations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect();
        f.write_str(&parts.join("; "))
    }
}

impl std::error::Error for Violations {}

impl From<Violations> for Status {
    fn from(violations: Violations) -> Status {
        invalid_argument(violations)
    }
}

/// INVALID_ARGUMENT whose message lists the violations, with a `BadRequest` detail.
pub fn invalid_argument(violations: Violations) -> Status {
    let message = format!("invalid request: {violations}");
    Status::with_error_details(
        Code::InvalidArgument,
        message,
        ErrorDetails::with_bad_request(violations.0),
    )
}

/// NOT_FOUND for a resource kind and id, e.g. `not_found("product", "x")`.
pub fn not_found(kind: &str, id: &str) -> Status {
    Status::with_error_details(
        Code::NotFound,
        format!("{kind} `{id}` does not exist"),
        ErrorDetails::with_resource_info(kind, id, "", "no such resource"),
    )
}

/// FAILED_PRECONDITION for a business refusal, with an `ErrorInfo` whose
/// reason (e.g. `CARD_DECLINED`) a program can act on.
pub fn failed_precondition(
    reason: &str,
    domain: &str,
    metadata: &[(&str, String)],
    message: impl Into<String>,
) -> Status {
    let metadata: std::collections::HashMap<String, String> =
        metadata.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    Status::with_error_details(
        Code::FailedPrecondition,
        message,
        ErrorDetails::with_error_info(reason, domain, metadata),
    )
}

/// ALREADY_EXISTS when an id is reused with different content.
pub fn already_exists(kind: &str, id: &str, message: impl Into<String>) -> Status {
    Status::with_error_details(
        Code::AlreadyExists,
        message,
        ErrorDetails::with_resource_info(kind, id, "", "already exists with other content"),
    )
}

/// UNAVAILABLE for a transient fault, telling the caller when to retry.
pub fn unavailable(message: impl Into<String>, retry_after: Duration) -> Status {
    Status::with_error_details(
        Code::Unavailable,
        message,
        ErrorDetails::with_retry_info(Some(retry_after)),
    )
}

/// INTERNAL with a generic message; the details go to the log, never to the caller.
pub fn internal(error: &dyn std::error::Error) -> Status {
    tracing::error!(error = %error, "internal error");
    Status::internal("internal error; the server log has the details")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_become_bad_request() {
        let mut v = Violations::new();
        v.add("page_size", "must be between 0 and 100, got 101");
        let status = Status::from(v);
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(
            status.message(),
            "invalid request: page_size: must be between 0 and 100, got 101"
        );
        let details = status.get_error_details();
        let bad = details.bad_request().expect("bad request detail");
        assert_eq!(bad.field_violations[0].field, "page_size");
    }
}
