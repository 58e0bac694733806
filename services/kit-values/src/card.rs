//! Payment cards (`ferrymesh.common.v1.PaymentCard`), checked at the edge: digits,
//! Luhn, expiry, CVC. The full number never leaves the request.

use std::fmt;

use crate::Violations;
use crate::pb::ferrymesh::common::v1 as pb;

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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn card(number: &str, month: i32, year: i32, cvc: &str) -> pb::PaymentCard {
        pb::PaymentCard {
            number: number.into(),
            expiry_month: month,
            expiry_year: year,
            cvc: cvc.into(),
            holder_name: String::new(),
        }
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
        let card = card("4242 4242 4242 4242", 1, 2026, "123");
        let mut v = Violations::new();
        assert!(Card::parse("card", Some(&card), (2026, 2), &mut v).is_none());
        assert_eq!(v.to_string(), "card.expiry_year: the card expired in 01/2026");
        let mut v = Violations::new();
        let ok = Card::parse("card", Some(&card), (2026, 1), &mut v).unwrap();
        assert_eq!((ok.brand, ok.last4()), ("visa", "4242"));
        assert_eq!(format!("{ok:?}"), "Card(visa ending 4242)");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any card message parses or is refused with violations; never a panic,
        /// and what parses is 12 to 19 digits passing Luhn.
        #[test]
        fn any_card_parses_or_is_refused(
            number in "[0-9 -]{0,24}|\\PC{0,24}",
            month in any::<i32>(),
            year in any::<i32>(),
            cvc in "[0-9]{0,5}|\\PC{0,5}",
        ) {
            let mut v = Violations::new();
            match Card::parse("card", Some(&card(&number, month, year, &cvc)), (2026, 11), &mut v) {
                Some(parsed) => {
                    prop_assert!(v.is_empty());
                    prop_assert!((12..=19).contains(&parsed.number.len()));
                    prop_assert!(luhn_valid(&parsed.number));
                    prop_assert_eq!(parsed.last4().len(), 4);
                }
                None => prop_assert!(!v.is_empty()),
            }
        }

        /// One wrong digit in a valid number is always caught.
        #[test]
        fn a_changed_digit_fails_luhn(position in 0usize..16, bump in 1u8..10) {
            let mut digits = b"4242424242424242".to_vec();
            digits[position] = b'0' + (digits[position] - b'0' + bump) % 10;
            prop_assert!(!luhn_valid(std::str::from_utf8(&digits).unwrap()));
        }
    }
}
