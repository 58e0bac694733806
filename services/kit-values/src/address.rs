//! Postal addresses (`ferrymesh.common.v1.Address`), checked at the edge.

use crate::Violations;
use crate::pb::ferrymesh::common::v1 as pb;

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
        for (i, line) in address.street_lines.iter().enumerate().take(3) {
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
                    "must be a two-letter ISO 3166-1 code such as \"US\", got {}",
                    crate::quoted(&address.country_code)
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any address parses to trimmed, bounded fields or is refused with
        /// violations naming them; never a panic.
        #[test]
        fn any_address_parses_bounded_or_is_refused(
            recipient_name in "\\PC{0,120}",
            street_lines in prop::collection::vec("\\PC{0,110}", 0..5),
            city in "[A-Za-z ]{0,110}",
            postal_code in "[A-Za-z0-9 -]{0,24}|\\PC{0,8}",
            country_code in "[A-Z]{0,3}|\\PC{0,3}",
        ) {
            let address = pb::Address {
                recipient_name,
                street_lines,
                city,
                region: String::new(),
                postal_code,
                country_code,
            };
            let mut v = Violations::new();
            match PostalAddress::parse("address", Some(&address), &mut v) {
                Some(parsed) => {
                    prop_assert!(v.is_empty());
                    prop_assert!((1..=3).contains(&parsed.street_lines.len()));
                    prop_assert!(parsed.street_lines.iter().all(|l| !l.is_empty() && l.chars().count() <= 100));
                    prop_assert!(!parsed.recipient_name.is_empty() && parsed.recipient_name.chars().count() <= 100);
                    prop_assert_eq!(parsed.country_code.len(), 2);
                }
                None => {
                    prop_assert!(!v.is_empty());
                    prop_assert!(v.iter().all(|f| f.field.starts_with("address")));
                }
            }
        }
    }
}
