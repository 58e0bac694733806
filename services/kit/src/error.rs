//! gRPC statuses with `google.rpc` details, built one way for every service.
//!
//! Each service keeps one error enum and maps it to a [`Status`] in one
//! place, using these builders so that the codes and details mean the same
//! thing everywhere.

use std::time::Duration;

use kit_values::Violations;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// INVALID_ARGUMENT whose message lists the violations, with a `BadRequest` detail.
pub fn invalid_argument(violations: Violations) -> Status {
    Status::from(violations)
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
///
/// Inside a call, the details join the call's span and so its one log line
/// ("rpc failed", at ERROR); elsewhere they are logged here.
pub fn internal(error: &dyn std::error::Error) -> Status {
    let span = tracing::Span::current();
    if span.has_field("error.detail") {
        span.record("error.detail", tracing::field::display(error));
    } else {
        tracing::error!(error = %error, "internal error");
    }
    Status::internal("internal error; the server log has the details")
}
