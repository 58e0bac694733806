//! Durations given in flags (`250ms`, `2s`, `1m 30s`), parsed by humantime and bounded.

use std::time::Duration;

/// The longest duration a flag may set: longer is surely a typo.
pub const MAX_FLAG_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Parses `250ms`, `2s`, `1m 30s`, `1h` or a plain number of seconds; refuses
/// negative, malformed and absurdly long values with a message saying what to write.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let parsed = if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        // A bare number means seconds; humantime wants a unit.
        text.parse::<u64>().ok().map(Duration::from_secs)
    } else {
        humantime::parse_duration(text).ok()
    };
    let duration = parsed.ok_or_else(|| format!("`{text}` is not a duration: write e.g. 250ms, 2s or 1m"))?;
    if duration > MAX_FLAG_DURATION {
        return Err(format!("`{text}` is longer than the most allowed, 7 days"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1m 30s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn huge_durations_are_refused_not_panics() {
        assert_eq!(
            parse_duration("99999999999999999999"),
            Err("`99999999999999999999` is not a duration: write e.g. 250ms, 2s or 1m".into())
        );
        assert_eq!(
            parse_duration("8d"),
            Err("`8d` is longer than the most allowed, 7 days".into())
        );
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text parses to a bounded duration or is refused; never a panic.
        #[test]
        fn any_text_is_bounded_or_refused(text in "[0-9]{0,24}(ns|us|ms|s|m|h|d|w|y)?|\\PC{0,16}") {
            if let Ok(duration) = parse_duration(&text) {
                prop_assert!(duration <= MAX_FLAG_DURATION);
            }
        }
    }
}
