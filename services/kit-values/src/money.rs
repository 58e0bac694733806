//! Amounts of money (`ferrymesh.common.v1.Money`), held as billionths of a unit.

use std::fmt;

use crate::Violations;
use crate::pb::ferrymesh::common::v1 as pb;

/// Billionths in one unit of a currency.
pub const NANOS_PER_UNIT: i64 = 1_000_000_000;
/// The largest amount any request may carry, in whole units.
pub const MAX_UNITS: i64 = 1_000_000;

/// An amount of money in one currency, held as billionths of a unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Amount {
    currency: String,
    nanos: i64,
}

impl Amount {
    /// An amount from a currency code and billionths of a unit.
    pub fn from_nanos(currency: impl Into<String>, nanos: i64) -> Self {
        Amount {
            currency: currency.into(),
            nanos,
        }
    }

    /// Zero in `currency`.
    pub fn zero(currency: impl Into<String>) -> Self {
        Amount::from_nanos(currency, 0)
    }

    /// Checks a `Money` message, recording violations under `field`.
    ///
    /// Every bound is checked before any arithmetic, so no input can wrap:
    /// `units` of `i64::MIN` is refused by its size, not read as zero.
    pub fn parse(field: &str, money: Option<&pb::Money>, violations: &mut Violations) -> Option<Amount> {
        let Some(money) = money else {
            violations.add(field, "is required: give currency_code, units and nanos");
            return None;
        };
        let mut bad = false;
        if !is_currency_code(&money.currency_code) {
            violations.add(
                format!("{field}.currency_code"),
                format!(
                    "must be a three-letter ISO 4217 code such as \"USD\", got {}",
                    crate::quoted(&money.currency_code)
                ),
            );
            bad = true;
        }
        if !(-999_999_999..=999_999_999).contains(&money.nanos) {
            violations.add(
                format!("{field}.nanos"),
                format!("must be between -999999999 and 999999999, got {}", money.nanos),
            );
            bad = true;
        }
        if (money.units > 0 && money.nanos < 0) || (money.units < 0 && money.nanos > 0) {
            violations.add(field.to_string(), "units and nanos must have the same sign");
            bad = true;
        }
        if money.units.unsigned_abs() > MAX_UNITS.unsigned_abs() {
            violations.add(
                format!("{field}.units"),
                format!(
                    "must be between -{MAX_UNITS} and {MAX_UNITS}, got {}",
                    money.units
                ),
            );
            bad = true;
        }
        if bad {
            return None;
        }
        // In range by the checks above: |units| <= 10^6, so this is at most ~10^15.
        let nanos = money
            .units
            .checked_mul(NANOS_PER_UNIT)
            .and_then(|n| n.checked_add(i64::from(money.nanos)))?;
        Some(Amount {
            currency: money.currency_code.clone(),
            nanos,
        })
    }

    /// The currency code.
    pub fn currency(&self) -> &str {
        &self.currency
    }

    /// The amount in billionths of a unit.
    pub fn nanos(&self) -> i64 {
        self.nanos
    }

    /// Whether it is more than zero.
    pub fn is_positive(&self) -> bool {
        self.nanos > 0
    }

    /// The sum, when both are in the same currency and it does not overflow.
    pub fn checked_add(&self, other: &Amount) -> Option<Amount> {
        if self.currency != other.currency {
            return None;
        }
        Some(Amount {
            currency: self.currency.clone(),
            nanos: self.nanos.checked_add(other.nanos)?,
        })
    }

    /// The difference, when both are in the same currency and it does not overflow.
    pub fn checked_sub(&self, other: &Amount) -> Option<Amount> {
        if self.currency != other.currency {
            return None;
        }
        Some(Amount {
            currency: self.currency.clone(),
            nanos: self.nanos.checked_sub(other.nanos)?,
        })
    }

    /// The amount times a quantity, when it does not overflow.
    pub fn checked_mul(&self, quantity: i64) -> Option<Amount> {
        Some(Amount {
            currency: self.currency.clone(),
            nanos: self.nanos.checked_mul(quantity)?,
        })
    }

    /// The exact amount, every billionth of it, for comparing requests:
    /// `30.009` and `30.001` differ here even though both print as `30.00`.
    pub fn exact(&self) -> String {
        format!("{}:{}", self.currency, self.nanos)
    }

    /// As a `Money` message.
    pub fn to_pb(&self) -> pb::Money {
        pb::Money {
            currency_code: self.currency.clone(),
            units: self.nanos / NANOS_PER_UNIT,
            // |remainder| < 10^9, so it fits.
            nanos: (self.nanos % NANOS_PER_UNIT) as i32,
        }
    }
}

impl fmt::Display for Amount {
    /// Two decimals, for messages; use [`Amount::exact`] to compare.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.nanos < 0 { "-" } else { "" };
        let abs = self.nanos.unsigned_abs();
        let units = abs / NANOS_PER_UNIT as u64;
        let cents = (abs % NANOS_PER_UNIT as u64) / 10_000_000;
        write!(f, "{sign}{units}.{cents:02} {}", self.currency)
    }
}

fn is_currency_code(code: &str) -> bool {
    code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn money(currency: &str, units: i64, nanos: i32) -> pb::Money {
        pb::Money {
            currency_code: currency.into(),
            units,
            nanos,
        }
    }

    #[test]
    fn money_round_trips_and_prints() {
        let mut v = Violations::new();
        let amount = Amount::parse("amount", Some(&money("USD", 12, 500_000_000)), &mut v).unwrap();
        assert!(v.is_empty());
        assert_eq!(amount.to_string(), "12.50 USD");
        assert_eq!(amount.to_pb(), money("USD", 12, 500_000_000));
        let negative = Amount::from_nanos("USD", -1_750_000_000);
        assert_eq!(negative.to_pb(), money("USD", -1, -750_000_000));
        assert_eq!(amount.checked_mul(3).unwrap().to_string(), "37.50 USD");
        assert_eq!(amount.checked_add(&Amount::zero("EUR")), None);
    }

    #[test]
    fn bad_money_names_the_field() {
        let mut v = Violations::new();
        assert!(Amount::parse("amount", Some(&money("usd", 1, -5)), &mut v).is_none());
        let fields: Vec<&str> = v.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(fields, ["amount.currency_code", "amount"]);
    }

    #[test]
    fn the_smallest_i64_is_refused_by_size_not_wrapped() {
        let mut v = Violations::new();
        assert!(Amount::parse("amount", Some(&money("USD", i64::MIN, 0)), &mut v).is_none());
        assert_eq!(
            v.to_string(),
            "amount.units: must be between -1000000 and 1000000, got -9223372036854775808"
        );
    }

    #[test]
    fn amounts_that_print_alike_are_not_the_same_amount() {
        let a = Amount::from_nanos("USD", 30_009_000_000);
        let b = Amount::from_nanos("USD", 30_001_000_000);
        assert_eq!(a.to_string(), b.to_string());
        assert_ne!(a.exact(), b.exact());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any Money message either parses to exactly units + nanos, or is refused
        /// with a violation; it never panics and never wraps.
        #[test]
        fn any_money_parses_exactly_or_is_refused(
            currency in "[A-Za-z]{0,4}",
            units in any::<i64>(),
            nanos in any::<i32>(),
        ) {
            let mut v = Violations::new();
            let message = money(&currency, units, nanos);
            match Amount::parse("amount", Some(&message), &mut v) {
                Some(amount) => {
                    prop_assert!(v.is_empty());
                    prop_assert!(units.unsigned_abs() <= MAX_UNITS as u64);
                    prop_assert_eq!(
                        i128::from(amount.nanos()),
                        i128::from(units) * 1_000_000_000 + i128::from(nanos)
                    );
                    prop_assert_eq!(amount.to_pb(), message);
                }
                None => prop_assert!(!v.is_empty()),
            }
        }

        #[test]
        fn in_range_money_round_trips(units in -MAX_UNITS..=MAX_UNITS, nanos in 0i32..1_000_000_000) {
            let nanos = if units < 0 { -nanos } else { nanos };
            let message = money("EUR", units, nanos);
            let mut v = Violations::new();
            let amount = Amount::parse("amount", Some(&message), &mut v);
            prop_assert_eq!(amount.map(|a| a.to_pb()), Some(message));
        }
    }
}
