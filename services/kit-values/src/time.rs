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

/// A calendar period in UTC that quotas and invoices count over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarPeriod {
    /// A day.
    Day,
    /// A week, Monday to Sunday.
    Week,
    /// A month.
    Month,
}

impl CalendarPeriod {
    /// The (start, end) in microseconds of the period holding `micros`; end exclusive.
    pub fn bounds(self, micros: i64) -> (i64, i64) {
        use ::time::{Date, Duration, Month, OffsetDateTime, Time};
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH);
        let date = at.date();
        let (start, end): (Date, Date) = match self {
            CalendarPeriod::Day => (date, date.next_day().unwrap_or(date)),
            CalendarPeriod::Week => {
                let start = date - Duration::days(i64::from(date.weekday().number_days_from_monday()));
                (start, start + Duration::days(7))
            }
            CalendarPeriod::Month => {
                let start = date.replace_day(1).unwrap_or(date);
                let end = match date.month() {
                    Month::December => Date::from_calendar_date(date.year() + 1, Month::January, 1),
                    m => Date::from_calendar_date(date.year(), m.next(), 1),
                }
                .unwrap_or(start);
                (start, end)
            }
        };
        let micros_of = |d: Date| {
            let t = d.with_time(Time::MIDNIGHT).assume_utc().unix_timestamp_nanos() / 1000;
            i64::try_from(t).unwrap_or(i64::MAX)
        };
        (micros_of(start), micros_of(end))
    }
}

/// The (start, end) in microseconds of a month written `YYYY-MM`.
pub fn month_bounds(text: &str) -> Option<(i64, i64)> {
    let (year, month) = text.split_once('-')?;
    if year.len() != 4 || month.len() != 2 {
        return None;
    }
    let year: i32 = year.parse().ok()?;
    let month: u8 = month.parse().ok()?;
    let month = ::time::Month::try_from(month).ok()?;
    let first = ::time::Date::from_calendar_date(year, month, 1).ok()?;
    let micros = i64::try_from(
        first
            .with_time(::time::Time::MIDNIGHT)
            .assume_utc()
            .unix_timestamp_nanos()
            / 1000,
    )
    .ok()?;
    Some(CalendarPeriod::Month.bounds(micros))
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

    #[test]
    fn periods_are_utc_days_weeks_from_monday_and_months() {
        // 2026-11-28T13:00:00Z is a Saturday.
        let at = 1_795_870_800_000_000;
        let day = CalendarPeriod::Day.bounds(at);
        assert_eq!(
            (rfc3339(day.0), rfc3339(day.1)),
            ("2026-11-28T00:00:00Z".into(), "2026-11-29T00:00:00Z".into())
        );
        let week = CalendarPeriod::Week.bounds(at);
        assert_eq!(
            (rfc3339(week.0), rfc3339(week.1)),
            ("2026-11-23T00:00:00Z".into(), "2026-11-30T00:00:00Z".into())
        );
        let month = CalendarPeriod::Month.bounds(at);
        assert_eq!(
            (rfc3339(month.0), rfc3339(month.1)),
            ("2026-11-01T00:00:00Z".into(), "2026-12-01T00:00:00Z".into())
        );
        let december = month_bounds("2026-12").unwrap();
        assert_eq!(rfc3339(december.1), "2027-01-01T00:00:00Z");
        for bad in ["2026-13", "2026-1", "26-01", "x", "2026-00"] {
            assert_eq!(month_bounds(bad), None, "{bad}");
        }
    }
}
