//! Requests' common parts that every service's tests build: amounts, cards
//! (the README's test cards), addresses.

use kit_values::pb::ferrymesh::common::v1::{Address, Money, PaymentCard};

/// A card that is charged.
pub const GOOD_CARD: &str = "4242 4242 4242 4242";
/// A card that is declined with CARD_DECLINED.
pub const DECLINED_CARD: &str = "4000 0000 0000 0002";
/// A card whose first attempt per payment fails with UNAVAILABLE.
pub const FLAKY_CARD: &str = "4000 0000 0000 0119";

/// An amount in US dollars.
pub fn usd(units: i64, nanos: i32) -> Money {
    Money {
        currency_code: "USD".into(),
        units,
        nanos,
    }
}

/// A card with `number`, valid for years to come.
pub fn card(number: &str) -> PaymentCard {
    PaymentCard {
        number: number.into(),
        expiry_month: 12,
        expiry_year: 2099,
        cvc: "123".into(),
        holder_name: "Ada Lovelace".into(),
    }
}

/// A well-formed address in `country` (ISO 3166-1 alpha-2).
pub fn address(country: &str) -> Address {
    Address {
        recipient_name: "Ada Lovelace".into(),
        street_lines: vec!["12 St James's Square".into()],
        city: "London".into(),
        region: String::new(),
        postal_code: "SW1Y 4JH".into(),
        country_code: country.into(),
    }
}
