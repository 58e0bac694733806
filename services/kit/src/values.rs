//! The shared value types of `ferrymesh.common.v1`, checked at the edge:
//! amounts of money, postal addresses and payment cards, plus timestamps.

use std::fmt;

use crate::error::Violations;
use crate::pb::ferrymesh::common::v1 as pb;

/// Billionths in one unit of a currency.
pub const NANOS_PER_UNIT: i64 = 1_000_000_000;
/// The largest amount any request may carry, in whole units.
pub const MAX_UNITS: i64 = 1_000_000;

/// An amount of money in one currency, held as billionths of a unit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
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
                    "must be a three-letter ISO 4217 code such as \"USD\", got {:?}",
                    money.currency_code
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
        if money.units.abs() > MAX_UNITS {
            violations.add(
                format!("{field}.units"),
                format!("must be at most {MAX_UNITS} in size, got {}", money.units),
            );
            bad = true;
        }
        if bad {
            return None;
        }
        Some(Amount {
            currency: money.currency_code.clone(),
            nanos: money.units * NANOS_PER_UNIT + i64::from(money.nanos),
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

    /// The difference, when both are in the same currency.
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

/// A checked postal address.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PostalAddress {
    /// Who receives the parcel.
    pub recipient_name: String,
    /// One to three lines.
    pub street_lines: Vec<String>,
    /// City.
    pub city: String,
    /// Region, possibly empty.
    pub region: String,
    /// Postal code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 code.
    pub country_code: String,
}

impl PostalAddress {
    /// Checks an `Address` message, recording violations under `field`.
    pub fn parse(field: &str, address: Option<&pb::Address>, violations: &mut Violations) -> Option<Self> {
        let Some(address) = address else {
            violations.add(
                field,
                "is required: give recipient_name, street_lines, city, postal_code and country_code",
            );
            return None;
        };
        let mut ok = true;
        let mut text = |name: &str, value: &str, max: usize, required: bool| {
            let chars = value.trim().chars().count();
            if required && chars == 0 {
                violations.add(format!("{field}.{name}"), "must not be empty");
                ok = false;
            } else if chars > max {
                violations.add(
                    format!("{field}.{name}"),
                    format!("must be at most {max} characters, got {chars}"),
                );
                ok = false;
            }
        };
        text("recipient_name", &address.recipient_name, 100, true);
        text("city", &address.city, 100, true);
        text("region", &address.region, 100, false);
        text("postal_code", &address.postal_code, 20, true);
        if !(1..=3).contains(&address.street_lines.len()) {
            violations.add(
                format!("{field}.street_lines"),
                format!("must have 1 to 3 lines, got {}", address.street_lines.len()),
            );
            ok = false;
        }
        for (i, line) in address.street_lines.iter().enumerate() {
            let chars = line.trim().chars().count();
            if chars == 0 || chars > 100 {
                violations.add(
                    format!("{field}.street_lines[{i}]"),
                    "must be 1 to 100 characters",
                );
                ok = false;
            }
        }
        if !address
            .postal_code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == ' ' || c == '-')
        {
            violations.add(
                format!("{field}.postal_code"),
                "may hold only letters, digits, spaces and hyphens",
            );
            ok = false;
        }
        if !(address.country_code.len() == 2 && address.country_code.bytes().all(|b| b.is_ascii_uppercase()))
        {
            violations.add(
                format!("{field}.country_code"),
                format!(
                    "must be a two-letter ISO 3166-1 code such as \"US\", got {:?}",
                    address.country_code
                ),
            );
            ok = false;
        }
        ok.then(|| PostalAddress {
            recipient_name: address.recipient_name.trim().to_string(),
            street_lines: address
                .street_lines
                .iter()
                .map(|l| l.trim().to_string())
                .collect(),
            city: address.city.trim().to_string(),
            region: address.region.trim().to_string(),
            postal_code: address.postal_code.trim().to_string(),
            country_code: address.country_code.clone(),
        })
    }

    /// As an `Address` message.
    pub fn to_pb(&self) -> pb::Address {
        pb::Address {
            recipient_name: self.recipient_name.clone(),
            street_lines: self.street_lines.clone(),
            city: self.city.clone(),
            region: self.region.clone(),
            postal_code: self.postal_code.clone(),
            country_code: self.country_code.clone(),
        }
    }
}

/// A checked payment card. The full number lives only as long as the request.
#[derive(Clone, PartialEq, Eq)]
pub struct Card {
    /// The digits, without spaces.
    pub number: String,
    /// "visa", "mastercard", "amex", "discover" or "unknown".
    pub brand: &'static str,
    /// Expiry month, 1 to 12.
    pub expiry_month: u32,
    /// Expiry year.
    pub expiry_year: u32,
}

impl fmt::Debug for Card {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the full number, not even in a debug log.
        write!(f, "Card({} ending {})", self.brand, self.last4())
    }
}

impl Card {
    /// Checks a `PaymentCard` message as of `today` (year, month), recording violations under `field`.
    pub fn parse(
        field: &str,
        card: Option<&pb::PaymentCard>,
        today: (u32, u32),
        violations: &mut Violations,
    ) -> Option<Self> {
        let Some(card) = card else {
            violations.add(
                field,
                "is required: give number, expiry_month, expiry_year and cvc",
            );
            return None;
        };
        let mut ok = true;
        let number: String = card.number.chars().filter(|c| *c != ' ' && *c != '-').collect();
        if !(12..=19).contains(&number.len()) || !number.bytes().all(|b| b.is_ascii_digit()) {
            violations.add(
                format!("{field}.number"),
                "must be 12 to 19 digits (spaces allowed)",
            );
            ok = false;
        } else if !luhn_valid(&number) {
            violations.add(
                format!("{field}.number"),
                "fails the Luhn check: a digit is wrong",
            );
            ok = false;
        }
        let month = u32::try_from(card.expiry_month)
            .ok()
            .filter(|m| (1..=12).contains(m));
        if month.is_none() {
            violations.add(
                format!("{field}.expiry_month"),
                format!("must be 1 to 12, got {}", card.expiry_month),
            );
            ok = false;
        }
        let year = u32::try_from(card.expiry_year)
            .ok()
            .filter(|y| (2000..=2100).contains(y));
        if year.is_none() {
            violations.add(
                format!("{field}.expiry_year"),
                format!("must be a four-digit year, got {}", card.expiry_year),
            );
            ok = false;
        }
        if let (Some(month), Some(year)) = (month, year)
            && (year, month) < today
        {
            violations.add(
                format!("{field}.expiry_year"),
                format!("the card expired in {month:02}/{year}"),
            );
            ok = false;
        }
        if !(3..=4).contains(&card.cvc.len()) || !card.cvc.bytes().all(|b| b.is_ascii_digit()) {
            violations.add(format!("{field}.cvc"), "must be 3 or 4 digits");
            ok = false;
        }
        if card.holder_name.chars().count() > 100 {
            violations.add(format!("{field}.holder_name"), "must be at most 100 characters");
            ok = false;
        }
        if !ok {
            return None;
        }
        Some(Card {
            brand: brand_of(&number),
            number,
            expiry_month: month.unwrap_or(1),
            expiry_year: year.unwrap_or(2000),
        })
    }

    /// The last four digits.
    pub fn last4(&self) -> &str {
        &self.number[self.number.len().saturating_sub(4)..]
    }
}

/// The Luhn check digit test card numbers must pass.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum % 10 == 0
}

fn brand_of(number: &str) -> &'static str {
    let prefix2: u32 = number.get(..2).and_then(|p| p.parse().ok()).unwrap_or(0);
    let prefix4: u32 = number.get(..4).and_then(|p| p.parse().ok()).unwrap_or(0);
    match () {
        _ if number.starts_with('4') => "visa",
        _ if (51..=55).contains(&prefix2) || (2221..=2720).contains(&prefix4) => "mastercard",
        _ if prefix2 == 34 || prefix2 == 37 => "amex",
        _ if prefix4 == 6011 || prefix2 == 65 => "discover",
        _ => "unknown",
    }
}

/// Checks a SKU (also the catalog's product id): 3 to 64 lowercase letters,
/// digits and hyphens, starting and ending with a letter or digit.
pub fn check_sku(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("must not be empty: pass a product id such as \"vintage-typewriter\"".into());
    }
    let well_formed = (3..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-');
    if !well_formed {
        return Err(format!(
            "must be 3 to 64 lowercase letters, digits or hyphens, starting and ending with a letter or digit; got {text:?}"
        ));
    }
    Ok(())
}

/// Checks a caller-chosen id that makes a call idempotent (reservation_id,
/// payment_id, ...): 1 to 128 letters, digits, '.', '_', ':' or '-'.
pub fn check_request_id(field: &str, text: &str, violations: &mut Violations) -> Option<String> {
    if text.is_empty() {
        violations.add(
            field,
            "must not be empty: choose an id and reuse it when retrying",
        );
        return None;
    }
    if text.len() > 128
        || !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._:-".contains(&b))
    {
        violations.add(
            field,
            format!("must be 1 to 128 letters, digits, '.', '_', ':' or '-'; got {text:?}"),
        );
        return None;
    }
    Some(text.to_string())
}

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

/// Today's (year, month) in UTC.
pub fn current_year_month() -> (u32, u32) {
    let (year, month, _) = civil_from_days(now_micros().div_euclid(86_400_000_000));
    (year as u32, month)
}

/// The UTC (year, month, day) of a day number since 1970-01-01 (H. Hinnant's algorithm).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
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
    fn luhn_and_brands() {
        assert!(luhn_valid("4242424242424242"));
        assert!(!luhn_valid("4242424242424241"));
        assert_eq!(brand_of("4242424242424242"), "visa");
        assert_eq!(brand_of("5555555555554444"), "mastercard");
        assert_eq!(brand_of("378282246310005"), "amex");
    }

    #[test]
    fn expired_cards_are_refused() {
        let card = pb::PaymentCard {
            number: "4242 4242 4242 4242".into(),
            expiry_month: 1,
            expiry_year: 2026,
            cvc: "123".into(),
            holder_name: String::new(),
        };
        let mut v = Violations::new();
        assert!(Card::parse("card", Some(&card), (2026, 2), &mut v).is_none());
        assert_eq!(v.to_string(), "card.expiry_year: the card expired in 01/2026");
        let mut v = Violations::new();
        let ok = Card::parse("card", Some(&card), (2026, 1), &mut v).unwrap();
        assert_eq!((ok.brand, ok.last4()), ("visa", "4242"));
        assert_eq!(format!("{ok:?}"), "Card(visa ending 4242)");
    }

    #[test]
    fn days_become_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_417), (2025, 11, 25));
    }
}
