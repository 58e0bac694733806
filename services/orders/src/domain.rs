//! The orders rules, shared by v1 and v2: what a valid order is, what it
//! costs, and how its status may change. No tonic and no SQL here.

use std::collections::BTreeMap;

use kit_store::paging::PageRequest;
use kit_values::Violations;
use kit_values::{Amount, Card, NANOS_PER_UNIT, PostalAddress, check_request_id, check_sku};

/// Most lines in one order.
pub const MAX_ITEMS: usize = 100;
/// Most units of one product in one order.
pub const MAX_QUANTITY: i32 = 1000;

/// Where an order stands.
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
pub enum OrderStatus {
    /// The workflow is running.
    Pending,
    /// Done.
    Confirmed,
    /// The workflow failed and was compensated.
    Failed,
    /// Cancelled by the customer.
    Cancelled,
}

impl OrderStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// From the stored name.
    pub fn from_stored(text: &str) -> Option<Self> {
        text.parse().ok()
    }

    /// Whether the order can change no more.
    pub fn is_final(self) -> bool {
        self != OrderStatus::Pending
    }
}

/// Where one line stands.
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
pub enum LineStatus {
    /// Waiting.
    Pending,
    /// Reserved and shipping.
    Confirmed,
    /// Not delivered.
    Cancelled,
}

impl LineStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// From the stored name.
    pub fn from_stored(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// How fast an order ships, and what that costs the customer.
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
pub enum ShippingOption {
    /// Free.
    Standard,
    /// 15.00 USD.
    Express,
}

impl ShippingOption {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// From the stored name.
    pub fn from_stored(text: &str) -> Option<Self> {
        text.parse().ok()
    }

    /// The shop's price for this option.
    pub fn cost(self) -> Amount {
        match self {
            ShippingOption::Standard => Amount::zero("USD"),
            ShippingOption::Express => Amount::from_nanos("USD", 15 * NANOS_PER_UNIT),
        }
    }
}

/// One product to order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderLine {
    /// The product (SKU).
    pub product_id: String,
    /// Units.
    pub quantity: i32,
}

/// A validated PlaceOrder request, from either version.
#[derive(Debug, Clone)]
pub struct PlaceOrder {
    /// Makes the call idempotent; required in v2, optional in v1.
    pub idempotency_key: Option<String>,
    /// The buyer.
    pub customer_email: String,
    /// What to order.
    pub lines: Vec<OrderLine>,
    /// Where to ship.
    pub address: PostalAddress,
    /// How fast.
    pub shipping: ShippingOption,
    /// What to charge; only its brand and last four digits outlive the request.
    pub card: Card,
    /// The card as received, for payments to tokenize; never stored.
    pub card_message: CardMessage,
}

/// A `PaymentCard` message whose Debug never shows the number or CVC.
#[derive(Clone)]
pub struct CardMessage(pub kit_values::pb::ferrymesh::common::v1::PaymentCard);

impl std::fmt::Debug for CardMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PaymentCard(redacted)")
    }
}

/// The parts of a PlaceOrder request, as either version receives them.
#[derive(Debug)]
pub struct PlaceOrderParts<'a> {
    /// The key and the field it came in (`request_id` or `idempotency_key`).
    pub key: (&'a str, &'static str),
    /// Whether the key must be given.
    pub key_required: bool,
    /// The buyer's email.
    pub customer_email: &'a str,
    /// (product_id, quantity) pairs.
    pub items: Vec<(&'a str, i32)>,
    /// The address.
    pub address: Option<&'a kit_values::pb::ferrymesh::common::v1::Address>,
    /// The shipping option.
    pub shipping: ShippingOption,
    /// The card.
    pub card: Option<&'a kit_values::pb::ferrymesh::common::v1::PaymentCard>,
}

impl PlaceOrder {
    /// Checks every field, naming each bad one.
    pub fn parse(parts: PlaceOrderParts<'_>) -> Result<Self, OrdersError> {
        let mut v = Violations::new();
        let (key, key_field) = parts.key;
        let idempotency_key = if key.is_empty() && !parts.key_required {
            None
        } else {
            check_request_id(key_field, key, &mut v)
        };
        check_email(parts.customer_email, &mut v);
        if parts.items.is_empty() || parts.items.len() > MAX_ITEMS {
            v.add(
                "items",
                format!("must hold 1 to {MAX_ITEMS} items, got {}", parts.items.len()),
            );
        }
        let mut lines = Vec::with_capacity(parts.items.len());
        // Past the limit the request is refused already; looking further would only cost.
        for (i, (product_id, quantity)) in parts.items.iter().enumerate().take(MAX_ITEMS) {
            if let Err(reason) = check_sku(product_id) {
                v.add(format!("items[{i}].product_id"), reason);
            } else if parts.items[..i].iter().any(|(earlier, _)| earlier == product_id) {
                v.add(
                    format!("items[{i}].product_id"),
                    format!("{product_id:?} appears twice: order each product once"),
                );
            }
            if !(1..=MAX_QUANTITY).contains(quantity) {
                v.add(
                    format!("items[{i}].quantity"),
                    format!("must be 1 to {MAX_QUANTITY}, got {quantity}"),
                );
            }
            lines.push(OrderLine {
                product_id: product_id.to_string(),
                quantity: *quantity,
            });
        }
        let address = PostalAddress::parse("shipping_address", parts.address, &mut v);
        let card = Card::parse("card", parts.card, kit_values::current_year_month(), &mut v);
        match (address, card) {
            (Some(address), Some(card)) if v.is_empty() => Ok(PlaceOrder {
                idempotency_key,
                customer_email: parts.customer_email.to_string(),
                lines,
                address,
                shipping: parts.shipping,
                card,
                card_message: CardMessage(parts.card.cloned().unwrap_or_default()),
            }),
            _ => Err(v.into()),
        }
    }

    /// What a repeated call must match to count as the same order.
    pub fn fingerprint(&self) -> String {
        let lines: Vec<String> = self
            .lines
            .iter()
            .map(|l| format!("{}x{}", l.product_id, l.quantity))
            .collect();
        format!(
            "{}|{}|{}|{}|{}:{}",
            self.customer_email,
            lines.join(","),
            serde_json::to_string(&self.address).unwrap_or_default(),
            self.shipping.as_str(),
            self.card.brand,
            self.card.last4()
        )
    }
}

/// Checks an email address: one `@`, a dotted domain, no spaces, at most 254 characters.
pub fn check_email(email: &str, v: &mut Violations) {
    let well_formed = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        });
    if !well_formed {
        v.add(
            "customer_email",
            format!(
                "must be an email address such as \"ada@example.com\", got {}",
                kit_values::quoted(email)
            ),
        );
    }
}

/// A product line priced from the catalog.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PricedLine {
    /// The product (SKU).
    pub product_id: String,
    /// Its name when ordered.
    pub product_name: String,
    /// Units.
    pub quantity: i32,
    /// The catalog price of one unit.
    pub unit_price: Amount,
    /// Where the line stands.
    pub status: LineStatus,
    /// The catalog weight of one unit, for the shipment.
    #[serde(default)]
    pub unit_weight_grams: i32,
}

impl PricedLine {
    /// unit_price times quantity.
    pub fn total(&self) -> Option<Amount> {
        self.unit_price.checked_mul(i64::from(self.quantity))
    }
}

/// An order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Order {
    /// Assigned by the service.
    pub order_id: String,
    /// The key it was placed with.
    pub idempotency_key: Option<String>,
    /// The buyer.
    pub customer_email: String,
    /// What was ordered.
    pub lines: Vec<PricedLine>,
    /// Where it ships.
    pub address: PostalAddress,
    /// How fast.
    pub shipping: ShippingOption,
    /// What shipping costs.
    pub shipping_cost: Amount,
    /// Where it stands.
    pub status: OrderStatus,
    /// Why it failed or was cancelled.
    pub status_reason: String,
    /// Placed, in microseconds since the epoch.
    pub create_micros: i64,
    /// Last changed.
    pub update_micros: i64,
    /// The card token from payments the saga charges (never the card).
    #[serde(default)]
    pub card_token: String,
    /// The saga's execution name (the order id), once orders has one.
    #[serde(default)]
    pub execution_name: String,
    /// Whether the workflow service accepted the saga's execution.
    #[serde(default)]
    pub saga_started: bool,
    /// While PENDING, the saga's current step (read from workflow, not stored).
    #[serde(default)]
    pub progress: String,
}

impl Order {
    /// What the order costs: one amount per currency, by currency code.
    pub fn totals(&self) -> Result<Vec<Amount>, OrdersError> {
        let mut sums: BTreeMap<String, Amount> = BTreeMap::new();
        let parts = self
            .lines
            .iter()
            .map(|l| l.total())
            .chain([Some(self.shipping_cost.clone())]);
        for part in parts {
            let part = part.ok_or(OrdersError::TooLarge)?;
            let sum = sums
                .entry(part.currency().to_string())
                .or_insert_with(|| Amount::zero(part.currency()));
            *sum = sum.checked_add(&part).ok_or(OrdersError::TooLarge)?;
        }
        // Free shipping in a currency the items are not priced in adds nothing worth showing.
        let shown: Vec<Amount> = sums.into_values().filter(|a| a.nanos() != 0).collect();
        Ok(if shown.is_empty() {
            vec![Amount::zero(self.shipping_cost.currency())]
        } else {
            shown
        })
    }
}

/// A validated ListOrders request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderQuery {
    /// Only this customer's orders.
    pub customer_email: Option<String>,
    /// Only orders in this status.
    pub status: Option<OrderStatus>,
    /// Which page.
    pub page: PageRequest,
}

/// Everything that can go wrong in orders.
#[derive(Debug, thiserror::Error)]
pub enum OrdersError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(#[from] Violations),
    /// No order has the id.
    #[error("order `{0}` does not exist")]
    NotFound(String),
    /// The key was used before for another order.
    #[error("an order was already placed with key `{0}` and other contents; use a new key for a new order")]
    Conflict(String),
    /// The order is past cancelling.
    #[error("order `{id}` is {} and can no longer be cancelled", .status.as_str())]
    NotCancellable {
        /// The order.
        id: String,
        /// Where it stands.
        status: OrderStatus,
    },
    /// An amount overflowed.
    #[error("the order is too large to total")]
    TooLarge,
    /// The catalog could not price the order now.
    #[error("the catalog could not be reached to price the order ({0}); retry the same request")]
    CatalogUnavailable(String),
    /// payments could not tokenize the card.
    #[error("payments could not be reached to tokenize the card ({0}); retry the same request")]
    PaymentsUnavailable(String),
    /// workflow did not take the saga (yet).
    #[error("the workflow service did not start the saga ({0})")]
    WorkflowUnavailable(String),
    /// workflow could not draw the saga now.
    #[error("the workflow service could not draw the saga ({0}); retry")]
    GraphUnavailable(String),
    /// The order's totals are in more than one currency.
    #[error("the order totals {0}; one charge takes one currency, so order items priced in one currency")]
    MixedCurrencies(String),
    /// The saga reported an outcome for an order that is no longer PENDING.
    #[error("order `{id}` is {} and cannot become {to}", .status.as_str())]
    NotPending {
        /// The order.
        id: String,
        /// Where it stands.
        status: OrderStatus,
        /// What the saga wanted.
        to: &'static str,
    },
    /// The database failed.
    #[error("orders store: {0}")]
    Store(#[from] sea_orm::DbErr),
    /// Claiming or replaying an idempotency key failed.
    #[error("orders store: {0}")]
    Idempotency(#[from] kit_store::IdempotencyError),
    /// A stored row does not make sense.
    #[error("orders store holds an invalid row: {0}")]
    Corrupt(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked() {
        for good in ["ada@example.com", "a.b+c@mail.example.org"] {
            let mut v = Violations::new();
            check_email(good, &mut v);
            assert!(v.is_empty(), "{good}");
        }
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a da@example.com",
            "a@b@c.com",
            "ada@.com",
        ] {
            let mut v = Violations::new();
            check_email(bad, &mut v);
            assert!(!v.is_empty(), "{bad}");
        }
    }
}
