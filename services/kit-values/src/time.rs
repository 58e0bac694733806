//! Timestamps: microseconds since the epoch in storage, `google.protobuf.Timestamp` on the wire.

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_micros()).unwrap_or(i64::MAX)
}

/// A protobuf timestamp from microseconds since the epoch.
pub fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: (micros.rem_euclid(1_000_000) * 1000) as i32,
    }
}

/// RFC 3339 text (UTC, microseconds) of microseconds since the epoch.
pub fn rfc3339(micros: i64) -> String {
    ::time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
        .ok()
        .and_then(|t| t.format(&::time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

/// Today's (year, month) in UTC.
pub fn current_year_month() -> (u32, u32) {
    let today = ::time::OffsetDateTime::now_utc();
    (
        u32::try_from(today.year()).unwrap_or(0),
        u32::from(u8::from(today.month())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_split_micros() {
        let t = timestamp(1_500_000);
        assert_eq!((t.seconds, t.nanos), (1, 500_000_000));
        let t = timestamp(-1);
        assert_eq!((t.seconds, t.nanos), (-1, 999_999_000));
        assert_eq!(rfc3339(1_500_000), "1970-01-01T00:00:01.5Z");
        let (year, month) = current_year_month();
        assert!(year >= 2026 && (1..=12).contains(&month));
    }
}
