//! The shipping rules: deterministic prices from weight and zone, shipments
//! idempotent by id, and a cancelled shipment stays cancelled.

use kit_values::Violations;
use kit_values::{Amount, NANOS_PER_UNIT, PostalAddress, check_request_id, check_sku};

/// Most items in one parcel.
pub const MAX_ITEMS: usize = 100;

/// A quantity of one SKU in a parcel.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ParcelItem {
    /// The SKU.
    pub sku: String,
    /// Units.
    pub quantity: i64,
    /// The weight of one unit in grams.
    pub unit_weight_grams: i64,
}

/// Checks the items of a parcel, naming each bad field.
pub fn parse_items(items: &[(String, i32, i32)], v: &mut Violations) -> Vec<ParcelItem> {
    if items.is_empty() || items.len() > MAX_ITEMS {
        v.add(
            "items",
            format!("must hold 1 to {MAX_ITEMS} items, got {}", items.len()),
        );
    }
    let mut parsed = Vec::with_capacity(items.len());
    // Past the limit the request is refused already; looking further would only cost.
    for (i, (sku, quantity, grams)) in items.iter().enumerate().take(MAX_ITEMS) {
        if let Err(reason) = check_sku(sku) {
            v.add(format!("items[{i}].sku"), reason);
        }
        if !(1..=10_000).contains(quantity) {
            v.add(
                format!("items[{i}].quantity"),
                format!("must be 1 to 10000, got {quantity}"),
            );
        }
        if !(1..=1_000_000).contains(grams) {
            v.add(
                format!("items[{i}].unit_weight_grams"),
                format!("must be 1 to 1000000, got {grams}"),
            );
        }
        parsed.push(ParcelItem {
            sku: sku.clone(),
            quantity: i64::from(*quantity),
            unit_weight_grams: i64::from(*grams),
        });
    }
    parsed
}

/// Where a parcel goes, as the carrier prices it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zone {
    /// Inside the United States.
    Domestic,
    /// Canada and Mexico.
    NorthAmerica,
    /// Europe.
    Europe,
    /// Anywhere else.
    International,
}

const EUROPE: &[&str] = &[
    "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GR", "HR", "HU", "IE",
    "IS", "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
];

impl Zone {
    /// The zone of a country.
    pub fn of(country_code: &str) -> Zone {
        match country_code {
            "US" => Zone::Domestic,
            "CA" | "MX" => Zone::NorthAmerica,
            c if EUROPE.contains(&c) => Zone::Europe,
            _ => Zone::International,
        }
    }

    /// The zone's name in quotes.
    pub fn name(self) -> &'static str {
        match self {
            Zone::Domestic => "domestic",
            Zone::NorthAmerica => "north-america",
            Zone::Europe => "europe",
            Zone::International => "international",
        }
    }

    /// (base price in cents, price per started kilogram in cents, business days).
    fn tariff(self) -> (i64, i64, i32) {
        match self {
            Zone::Domestic => (499, 100, 3),
            Zone::NorthAmerica => (999, 250, 5),
            Zone::Europe => (1499, 400, 7),
            Zone::International => (2499, 600, 10),
        }
    }
}

/// A priced parcel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// What it costs, in USD.
    pub cost: Amount,
    /// The destination's zone.
    pub zone: Zone,
    /// Business days to deliver.
    pub estimated_days: i32,
}

/// Countries no carrier delivers to (Antarctica), so a shipment can fail
/// for a business reason, as a test card can decline.
pub const UNSERVED_COUNTRIES: &[&str] = &["AQ"];

/// Refuses a destination no carrier serves.
pub fn check_served(address: &PostalAddress) -> Result<(), ShippingError> {
    if UNSERVED_COUNTRIES.contains(&address.country_code.as_str()) {
        return Err(ShippingError::Unserved(address.country_code.clone()));
    }
    Ok(())
}

/// Prices a parcel: the zone's base price plus its rate per started kilogram.
pub fn quote(address: &PostalAddress, items: &[ParcelItem]) -> Quote {
    let zone = Zone::of(&address.country_code);
    let grams: i64 = items.iter().map(|i| i.quantity * i.unit_weight_grams).sum();
    let kilograms = ((grams + 999) / 1000).max(1);
    let (base, per_kg, days) = zone.tariff();
    let cents = base + per_kg * kilograms;
    Quote {
        cost: Amount::from_nanos("USD", cents * (NANOS_PER_UNIT / 100)),
        zone,
        estimated_days: days,
    }
}

/// A validated CreateShipment request.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewShipment {
    /// The caller's idempotency id.
    pub shipment_id: String,
    /// The order shipped.
    pub order_id: String,
    /// Where it goes.
    pub address: PostalAddress,
    /// What is in it.
    pub items: Vec<ParcelItem>,
}

impl NewShipment {
    /// Checks the parts of a CreateShipment request.
    pub fn parse(
        shipment_id: &str,
        order_id: &str,
        address: Option<&kit_values::pb::ferrymesh::common::v1::Address>,
        items: &[(String, i32, i32)],
    ) -> Result<Self, ShippingError> {
        let mut v = Violations::new();
        let shipment_id = check_request_id("shipment_id", shipment_id, &mut v);
        if order_id.is_empty() || order_id.len() > 128 {
            v.add(
                "order_id",
                format!("must be 1 to 128 characters, got {}", order_id.len()),
            );
        }
        let address = PostalAddress::parse("address", address, &mut v);
        let items = parse_items(items, &mut v);
        match (shipment_id, address) {
            (Some(shipment_id), Some(address)) if v.is_empty() => Ok(NewShipment {
                shipment_id,
                order_id: order_id.to_string(),
                address,
                items,
            }),
            _ => Err(v.into()),
        }
    }

    /// The carrier's tracking number: "FM" and 12 digits, derived from the id
    /// so that a retried creation shows the same number.
    pub fn tracking_number(&self) -> String {
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let hash = self.shipment_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        format!("FM{:012}", hash % 1_000_000_000_000)
    }
}

/// Where a shipment stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
pub enum ShipmentStatus {
    /// Booked.
    Created,
    /// Cancelled for good.
    Cancelled,
}

impl ShipmentStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// From the stored name.
    pub fn from_stored(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// A booked shipment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Shipment {
    /// What was asked for.
    pub request: NewShipment,
    /// What it costs.
    pub cost: Amount,
    /// The tracking number.
    pub tracking_number: String,
    /// Where it stands.
    pub status: ShipmentStatus,
    /// Why it was cancelled.
    pub cancel_reason: String,
    /// Created, in microseconds since the epoch.
    pub create_micros: i64,
    /// Last changed.
    pub update_micros: i64,
}

/// Everything that can go wrong in shipping.
#[derive(Debug, thiserror::Error)]
pub enum ShippingError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(#[from] Violations),
    /// No carrier delivers to the country.
    #[error("no carrier delivers to {0}; ship to another address")]
    Unserved(String),
    /// No shipment has the id.
    #[error("shipment `{0}` does not exist")]
    NotFound(String),
    /// The id was used before for another shipment.
    #[error("shipment `{0}` already exists with another order, address or items; use a new shipment_id")]
    Conflict(String),
    /// The database failed.
    #[error("shipping store: {0}")]
    Store(#[from] sea_orm::DbErr),
    /// Claiming or replaying an id failed.
    #[error("shipping store: {0}")]
    Idempotency(#[from] kit_store::IdempotencyError),
    /// A stored row does not make sense.
    #[error("shipping store holds an invalid row: {0}")]
    Corrupt(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(country: &str) -> PostalAddress {
        PostalAddress {
            recipient_name: "Ada".into(),
            street_lines: vec!["1 Main St".into()],
            city: "Springfield".into(),
            region: String::new(),
            postal_code: "12345".into(),
            country_code: country.into(),
        }
    }

    #[test]
    fn prices_follow_weight_and_zone() {
        let items = vec![ParcelItem {
            sku: "mug".into(),
            quantity: 3,
            unit_weight_grams: 300,
        }];
        assert_eq!(quote(&address("US"), &items).cost.to_string(), "5.99 USD");
        let heavy = vec![ParcelItem {
            sku: "city-bike".into(),
            quantity: 1,
            unit_weight_grams: 12_500,
        }];
        let q = quote(&address("DE"), &heavy);
        assert_eq!(
            (q.cost.to_string(), q.zone, q.estimated_days),
            ("66.99 USD".into(), Zone::Europe, 7)
        );
        assert_eq!(quote(&address("JP"), &items).zone, Zone::International);
    }
}
