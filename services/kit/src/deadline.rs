//! The `grpc-timeout` header, parsed as the gRPC spec writes it: one to eight
//! digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`). tonic bounds it the same
//! way "to prevent integer overflow"; a value outside the spec is ignored, as
//! tonic's own server does, so a caller's garbage never becomes a deadline.

use std::time::{Duration, Instant};

use http::HeaderMap;

/// Most digits a `grpc-timeout` value may have.
pub const MAX_TIMEOUT_DIGITS: usize = 8;

/// The caller's timeout, when its `grpc-timeout` header is well-formed.
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    parse_grpc_timeout(headers.get("grpc-timeout")?.to_str().ok()?)
}

/// Parses a `grpc-timeout` value; `None` for anything the spec does not allow.
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let unit = value.chars().last()?;
    let digits = &value[..value.len() - unit.len_utf8()];
    if digits.is_empty() || digits.len() > MAX_TIMEOUT_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // At most 99,999,999: every product below fits in a u64.
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        'H' => Duration::from_secs(amount * 3600),
        'M' => Duration::from_secs(amount * 60),
        'S' => Duration::from_secs(amount),
        'm' => Duration::from_millis(amount),
        'u' => Duration::from_micros(amount),
        'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// A `grpc-timeout` value for `timeout`: the finest unit whose amount fits
/// in eight digits, rounded up, as grpc-go writes it. A timeout past the
/// largest value (99,999,999 hours) is written as that value.
pub fn encode_grpc_timeout(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos();
    for (unit, nanos_per) in [
        ('n', 1u128),
        ('u', 1_000),
        ('m', 1_000_000),
        ('S', 1_000_000_000),
        ('M', 60_000_000_000),
        ('H', 3_600_000_000_000),
    ] {
        let amount = nanos.div_ceil(nanos_per);
        if amount <= MAX {
            return format!("{amount}{unit}");
        }
    }
    format!("{MAX}H")
}

/// When a call that started at `started` must end: the sooner of the
/// caller's timeout and the server's own limit. Checked: a deadline too far
/// away to represent is no deadline from the caller, only the server's.
pub fn deadline(started: Instant, caller: Option<Duration>, server_limit: Duration) -> Instant {
    let limit = caller.map_or(server_limit, |c| c.min(server_limit));
    started
        .checked_add(limit)
        .or_else(|| started.checked_add(server_limit))
        .unwrap_or(started)
}

#[cfg(test)]
mod tests {
    use http::header::HeaderValue;
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn grpc_timeouts_parse() {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", HeaderValue::from_static("250m"));
        assert_eq!(grpc_timeout(&headers), Some(Duration::from_millis(250)));
        headers.insert("grpc-timeout", HeaderValue::from_static("3S"));
        assert_eq!(grpc_timeout(&headers), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_grpc_timeout("99999999H"),
            Some(Duration::from_secs(99_999_999 * 3600))
        );
        for bad in [
            "x",
            "",
            "S",
            "123456789S",
            "9999999999999999999S",
            "18446744073709551615n",
            "-1S",
            "1s",
            "1 S",
            "١S",
        ] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn timeouts_are_encoded_in_the_finest_unit_that_fits() {
        assert_eq!(encode_grpc_timeout(Duration::from_millis(250)), "250000u");
        assert_eq!(encode_grpc_timeout(Duration::from_nanos(1)), "1n");
        assert_eq!(encode_grpc_timeout(Duration::from_secs(7 * 24 * 3600)), "604800S");
        assert_eq!(encode_grpc_timeout(Duration::MAX), "99999999H");
    }

    #[test]
    fn deadlines_never_overflow() {
        let now = Instant::now();
        let limit = Duration::from_secs(60);
        assert_eq!(deadline(now, None, limit), now + limit);
        assert_eq!(
            deadline(now, Some(Duration::from_secs(1)), limit),
            now + Duration::from_secs(1)
        );
        assert_eq!(deadline(now, Some(Duration::MAX), limit), now + limit);
        assert_eq!(deadline(now, Some(Duration::MAX), Duration::MAX), now);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        /// Any header text parses to at most 99,999,999 hours or is ignored; never a panic.
        #[test]
        fn any_header_value_is_bounded_or_ignored(value in "[0-9]{0,22}[HMSmun]?|\\PC{0,12}") {
            if let Some(timeout) = parse_grpc_timeout(&value) {
                prop_assert!(timeout <= Duration::from_secs(99_999_999 * 3600));
                let digits = value.len() - 1;
                prop_assert!((1..=MAX_TIMEOUT_DIGITS).contains(&digits));
            }
            let _ = deadline(Instant::now(), parse_grpc_timeout(&value), Duration::from_secs(60));
        }

        /// What we send is what the spec allows, and never a shorter deadline than asked.
        #[test]
        fn encoded_timeouts_are_in_spec_and_round_up(nanos in any::<u64>()) {
            let timeout = Duration::from_nanos(nanos);
            let text = encode_grpc_timeout(timeout);
            let parsed = parse_grpc_timeout(&text);
            prop_assert!(parsed.is_some(), "{text}");
            let parsed = parsed.unwrap_or_default();
            prop_assert!(parsed >= timeout, "{text}");
            // Rounded up by less than one of the unit it chose.
            let unit = parse_grpc_timeout(&format!("1{}", &text[text.len() - 1..])).unwrap_or_default();
            prop_assert!(parsed - timeout < unit, "{text}");
        }

        #[test]
        fn well_formed_values_round_trip(amount in 0u64..100_000_000, unit in prop::sample::select(vec!['H', 'M', 'S', 'm', 'u', 'n'])) {
            let parsed = parse_grpc_timeout(&format!("{amount}{unit}"));
            let expected = match unit {
                'H' => Duration::from_secs(amount * 3600),
                'M' => Duration::from_secs(amount * 60),
                'S' => Duration::from_secs(amount),
                'm' => Duration::from_millis(amount),
                'u' => Duration::from_micros(amount),
                _ => Duration::from_nanos(amount),
            };
            prop_assert_eq!(parsed, Some(expected));
        }
    }
}
