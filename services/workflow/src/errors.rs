//! Error names as Retry and Catch see them: the gRPC status names a Task's
//! call fails with, the `States.*` names, and the names Fail states raise;
//! with Step Functions' matching rules.

use serde_json::{Value, json};

/// The gRPC status names, as a failed Task reports them.
pub const GRPC_ERRORS: &[&str] = &[
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The predefined `States.*` error names.
pub const STATES_ERRORS: &[&str] = &[
    "States.ALL",
    "States.Timeout",
    "States.TaskFailed",
    "States.Runtime",
    "States.Permissions",
    "States.ResultPathMatchFailure",
    "States.ParameterPathFailure",
    "States.BranchFailed",
    "States.NoChoiceMatched",
    "States.IntrinsicFailure",
    "States.HeartbeatTimeout",
    "States.ExceedToleratedFailureThreshold",
];

/// An error raised in a state: a name and what caused it.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The error name, e.g. `UNAVAILABLE` or `States.Timeout`.
    pub error: String,
    /// What happened, in words.
    pub cause: String,
}

impl Failure {
    /// A failure with this name and cause.
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Self {
        Failure {
            error: error.into(),
            cause: cause.into(),
        }
    }

    /// A `States.Runtime` failure: the definition met data it cannot handle.
    pub fn runtime(cause: impl Into<String>) -> Self {
        Failure::new("States.Runtime", cause)
    }

    /// The failure from a gRPC status.
    pub fn from_status(status: &tonic::Status) -> Self {
        let name = GRPC_ERRORS
            .get(
                usize::try_from(i32::from(status.code()))
                    .unwrap_or(0)
                    .saturating_sub(1),
            )
            .copied()
            .unwrap_or("UNKNOWN");
        Failure::new(name, status.message())
    }

    /// Whether an ErrorEquals name matches it. `States.ALL` matches every
    /// error but `States.Runtime`; `States.TaskFailed` matches every error of
    /// a task's call but a timeout.
    pub fn matches(&self, name: &str) -> bool {
        match name {
            "States.ALL" => self.error != "States.Runtime",
            "States.TaskFailed" => {
                GRPC_ERRORS.contains(&self.error.as_str()) || self.error == "States.TaskFailed"
            }
            other => other == self.error,
        }
    }

    /// `{"Error": ..., "Cause": ...}`, the error output a Catch passes on.
    pub fn to_json(&self) -> Value {
        json!({"Error": self.error, "Cause": self.cause})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_follow_grpc() {
        let f = Failure::from_status(&tonic::Status::unavailable("down"));
        assert_eq!((f.error.as_str(), f.cause.as_str()), ("UNAVAILABLE", "down"));
        let f = Failure::from_status(&tonic::Status::failed_precondition("declined"));
        assert_eq!(f.error, "FAILED_PRECONDITION");
        let f = Failure::from_status(&tonic::Status::unauthenticated("who"));
        assert_eq!(f.error, "UNAUTHENTICATED");
    }

    #[test]
    fn states_all_does_not_catch_runtime_errors() {
        assert!(Failure::new("UNAVAILABLE", "").matches("States.ALL"));
        assert!(Failure::new("UNAVAILABLE", "").matches("States.TaskFailed"));
        assert!(Failure::new("States.Timeout", "").matches("States.ALL"));
        assert!(!Failure::new("States.Timeout", "").matches("States.TaskFailed"));
        assert!(!Failure::runtime("bad").matches("States.ALL"));
        assert!(Failure::new("OutOfStock", "").matches("OutOfStock"));
        assert!(!Failure::new("OutOfStock", "").matches("States.TaskFailed"));
    }
}
