//! The inventory's rules: reservations hold stock all-or-nothing, and a
//! reservation moves from RESERVED to COMMITTED or RELEASED, never back.

use kit_values::Violations;
use kit_values::{check_request_id, check_sku};

/// Most items in one reservation.
pub const MAX_ITEMS: usize = 100;
/// Most units of one SKU in one reservation.
pub const MAX_QUANTITY: i32 = 10_000;

/// A quantity of one SKU.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Item {
    /// The SKU.
    pub sku: String,
    /// Units, at least 1.
    pub quantity: i64,
}

/// A validated ReserveStock request; items sorted by SKU, so locks are
/// always taken in the same order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveStock {
    /// The caller's idempotency id.
    pub reservation_id: String,
    /// What to hold.
    pub items: Vec<Item>,
}

impl ReserveStock {
    /// Checks the request, naming each bad field.
    pub fn parse(reservation_id: &str, items: &[(String, i32)]) -> Result<Self, InventoryError> {
        Self::parse_with_id("reservation_id", reservation_id, items)
    }

    /// The same checks for a request whose id field has another name
    /// (ReceiveStock's `receipt_id`); the id is kept in `reservation_id`.
    pub fn parse_with_id(field: &str, id: &str, items: &[(String, i32)]) -> Result<Self, InventoryError> {
        let mut violations = Violations::new();
        let reservation_id = check_request_id(field, id, &mut violations);
        if items.is_empty() || items.len() > MAX_ITEMS {
            violations.add(
                "items",
                format!("must hold 1 to {MAX_ITEMS} items, got {}", items.len()),
            );
        }
        let mut checked = Vec::with_capacity(items.len());
        // Past the limit the request is refused already; looking further would only cost.
        for (i, (sku, quantity)) in items.iter().enumerate().take(MAX_ITEMS) {
            if let Err(reason) = check_sku(sku) {
                violations.add(format!("items[{i}].sku"), reason);
            } else if items[..i].iter().any(|(earlier, _)| earlier == sku) {
                violations.add(
                    format!("items[{i}].sku"),
                    format!("{sku:?} appears twice: list each SKU once"),
                );
            }
            if !(1..=MAX_QUANTITY).contains(quantity) {
                violations.add(
                    format!("items[{i}].quantity"),
                    format!("must be 1 to {MAX_QUANTITY}, got {quantity}"),
                );
            }
            checked.push(Item {
                sku: sku.clone(),
                quantity: i64::from(*quantity),
            });
        }
        match reservation_id {
            Some(reservation_id) if violations.is_empty() => {
                checked.sort();
                Ok(ReserveStock {
                    reservation_id,
                    items: checked,
                })
            }
            _ => Err(violations.into()),
        }
    }
}

impl ReserveStock {
    /// The request's content, exactly: a repeat with the same id must match it.
    pub fn fingerprint(&self) -> String {
        let items: Vec<String> = self
            .items
            .iter()
            .map(|i| format!("{}={}", i.sku, i.quantity))
            .collect();
        items.join(",")
    }
}

/// Where a reservation stands.
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
pub enum ReservationStatus {
    /// Units held.
    Reserved,
    /// Units sold.
    Committed,
    /// Units returned.
    Released,
}

impl ReservationStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// From the stored name.
    pub fn from_stored(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// A hold on stock.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reservation {
    /// The caller's id.
    pub reservation_id: String,
    /// What is held, by SKU.
    pub items: Vec<Item>,
    /// Where it stands.
    pub status: ReservationStatus,
    /// Created, in microseconds since the epoch.
    pub create_micros: i64,
    /// Last changed.
    pub update_micros: i64,
}

/// The stock of one SKU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockLevel {
    /// The SKU.
    pub sku: String,
    /// Units in the warehouse.
    pub on_hand: i64,
    /// Units held by open reservations.
    pub reserved: i64,
}

impl StockLevel {
    /// Units that can still be reserved.
    pub fn available(&self) -> i64 {
        (self.on_hand - self.reserved).max(0)
    }
}

/// A SKU that cannot cover a reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// The SKU.
    pub sku: String,
    /// Units asked for.
    pub requested: i64,
    /// Units available when asked.
    pub available: i64,
}

/// Everything that can go wrong in the inventory.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(#[from] Violations),
    /// Some SKUs are not stocked at all.
    #[error("unknown SKUs: {}", .0.join(", "))]
    UnknownSkus(Vec<String>),
    /// No reservation has the id.
    #[error("reservation `{0}` does not exist")]
    NotFound(String),
    /// Not enough stock for every item.
    #[error("not enough stock: {}", describe(.0))]
    Insufficient(Vec<Shortfall>),
    /// The id was used before for other items.
    #[error("reservation `{0}` already exists with other items; use a new reservation_id")]
    Conflict(String),
    /// The reservation is in a state that forbids the change.
    #[error("reservation `{id}` is {} and cannot be {wanted}", .status.as_str())]
    WrongState {
        /// The reservation.
        id: String,
        /// Where it stands.
        status: ReservationStatus,
        /// What was asked: "committed" or "released".
        wanted: &'static str,
    },
    /// The database failed.
    #[error("inventory store: {0}")]
    Store(#[from] sea_orm::DbErr),
    /// Claiming or replaying an id failed.
    #[error("inventory store: {0}")]
    Idempotency(#[from] kit_store::IdempotencyError),
    /// A stored row does not make sense.
    #[error("inventory store holds an invalid row: {0}")]
    Corrupt(String),
}

fn describe(shortfalls: &[Shortfall]) -> String {
    shortfalls
        .iter()
        .map(|s| format!("{} (requested {}, available {})", s.sku, s.requested, s.available))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_sorted_and_checked() {
        let parsed = ReserveStock::parse("r-1", &[("mug".into(), 2), ("air-plant".into(), 1)]).unwrap();
        assert_eq!(parsed.items[0].sku, "air-plant");
        let err = ReserveStock::parse("", &[("mug".into(), 0), ("mug".into(), 1)]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("reservation_id: must not be empty"), "{text}");
        assert!(
            text.contains("items[0].quantity: must be 1 to 10000, got 0"),
            "{text}"
        );
        assert!(text.contains("items[1].sku: \"mug\" appears twice"), "{text}");
    }
}
