//! Field violations gathered while parsing a request at the edge, and the
//! INVALID_ARGUMENT status with a `google.rpc.BadRequest` they become.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// Most violations one refusal reports; the rest are counted. The message
/// travels in a header, so it must stay short whatever the caller sent.
pub const MAX_REPORTED: usize = 20;

/// Field violations gathered while parsing a request at the edge.
#[derive(Debug, Default, Clone)]
pub struct Violations {
    reported: Vec<FieldViolation>,
    more: usize,
}

impl Violations {
    /// No violations yet.
    pub fn new() -> Self {
        Violations::default()
    }

    /// Records that `field` is wrong, saying what is expected.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        if self.reported.len() < MAX_REPORTED {
            self.reported.push(FieldViolation::new(field, description));
        } else {
            self.more += 1;
        }
    }

    /// Records the violation when `bad` holds.
    pub fn check(&mut self, bad: bool, field: &str, description: impl FnOnce() -> String) {
        if bad {
            self.add(field, description());
        }
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.reported.is_empty()
    }

    /// `Ok(value)` when nothing was recorded, else the violations.
    pub fn into_result<T>(self, value: T) -> Result<T, Violations> {
        if self.reported.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// The recorded violations.
    pub fn iter(&self) -> impl Iterator<Item = &FieldViolation> {
        self.reported.iter()
    }
}

impl std::fmt::Display for Violations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .reported
            .iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect();
        f.write_str(&parts.join("; "))?;
        if self.more > 0 {
            write!(f, "; and {} more", self.more)?;
        }
        Ok(())
    }
}

impl std::error::Error for Violations {}

/// INVALID_ARGUMENT whose message lists the violations, with a `BadRequest` detail.
impl From<Violations> for Status {
    fn from(violations: Violations) -> Status {
        let message = format!("invalid request: {violations}");
        Status::with_error_details(
            Code::InvalidArgument,
            message,
            ErrorDetails::with_bad_request(violations.reported),
        )
    }
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

    #[test]
    fn a_flood_of_violations_is_reported_short() {
        let mut v = Violations::new();
        for i in 0..10_000 {
            v.add(format!("items[{i}].sku"), "must not be empty");
        }
        let status = Status::from(v);
        assert!(
            status.message().ends_with("; and 9980 more"),
            "{}",
            status.message()
        );
        assert_eq!(
            status
                .get_error_details()
                .bad_request()
                .unwrap()
                .field_violations
                .len(),
            MAX_REPORTED
        );
    }
}
