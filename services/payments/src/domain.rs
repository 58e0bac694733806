//! The payments rules: charges and refunds are idempotent by their ids,
//! refunds never exceed the charge, and only a card's brand and last four
//! digits are kept. Test cards behave as documented in the README.

use kit_values::Violations;
use kit_values::{Amount, Card, check_request_id};

/// How a card number behaves, in the manner of the card networks' test numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CardBehaviour {
    /// The charge goes through.
    Succeeds,
    /// The charge is declined with this reason.
    Declined(&'static str),
    /// The first attempt of each payment fails transiently; a retry goes through.
    FailsOnce,
}

/// The behaviour of a card number (digits only).
pub fn behaviour_of(number: &str) -> CardBehaviour {
    match number {
        "4000000000000002" => CardBehaviour::Declined("CARD_DECLINED"),
        "4000000000009995" => CardBehaviour::Declined("INSUFFICIENT_FUNDS"),
        "4000000000000119" => CardBehaviour::FailsOnce,
        _ => CardBehaviour::Succeeds,
    }
}

/// What is known of the card a charge goes to: never its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargedCard {
    /// "visa", "mastercard", ...
    pub brand: String,
    /// The last four digits.
    pub last4: String,
    /// How the test network treats it.
    pub behaviour: CardBehaviour,
}

impl From<&Card> for ChargedCard {
    fn from(card: &Card) -> Self {
        ChargedCard {
            brand: card.brand.to_string(),
            last4: card.last4().to_string(),
            behaviour: behaviour_of(&card.number),
        }
    }
}

impl CardBehaviour {
    /// As stored with a card token.
    pub fn as_stored(&self) -> String {
        match self {
            CardBehaviour::Succeeds => "succeeds".into(),
            CardBehaviour::Declined(reason) => format!("declined:{reason}"),
            CardBehaviour::FailsOnce => "fails_once".into(),
        }
    }

    /// From [`CardBehaviour::as_stored`]; `None` for text it never wrote.
    pub fn from_stored(text: &str) -> Option<Self> {
        match text {
            "succeeds" => Some(CardBehaviour::Succeeds),
            "fails_once" => Some(CardBehaviour::FailsOnce),
            "declined:CARD_DECLINED" => Some(CardBehaviour::Declined("CARD_DECLINED")),
            "declined:INSUFFICIENT_FUNDS" => Some(CardBehaviour::Declined("INSUFFICIENT_FUNDS")),
            _ => None,
        }
    }
}

/// The card a Charge names: given whole, or by a token from TokenizeCard.
#[derive(Debug, Clone)]
pub enum CardSource {
    /// The card itself; its number is dropped with the request.
    Card(ChargedCard),
    /// A token to look up.
    Token(String),
}

/// A validated Charge request whose card may still be a token.
#[derive(Debug, Clone)]
pub struct ChargeRequest {
    /// The caller's idempotency id.
    pub payment_id: String,
    /// The order paid for.
    pub order_id: String,
    /// How much; more than zero.
    pub amount: Amount,
    /// The card or its token.
    pub source: CardSource,
}

/// A validated Charge with its card known.
#[derive(Debug, Clone)]
pub struct Charge {
    /// The caller's idempotency id.
    pub payment_id: String,
    /// The order paid for.
    pub order_id: String,
    /// How much; more than zero.
    pub amount: Amount,
    /// The card's brand, last four digits and behaviour.
    pub card: ChargedCard,
}

/// How long a card token is accepted.
pub const TOKEN_LIFETIME_MICROS: i64 = 24 * 3600 * 1_000_000;

impl Charge {
    /// What a repeated call must match to count as the same charge.
    pub fn fingerprint(&self) -> String {
        // The exact amount: 30.009 and 30.001 are different charges.
        format!(
            "{}|{}|{}|{}",
            self.order_id,
            self.amount.exact(),
            self.card.brand,
            self.card.last4
        )
    }
}

/// Checks an order id as payments receives it.
pub fn check_order_id(text: &str, violations: &mut Violations) -> Option<String> {
    if text.is_empty() || text.len() > 128 {
        violations.add(
            "order_id",
            format!("must be 1 to 128 characters, got {}", text.len()),
        );
        return None;
    }
    Some(text.to_string())
}

/// Checks an amount that must be more than zero.
pub fn positive_amount(
    field: &str,
    money: Option<&kit_values::pb::ferrymesh::common::v1::Money>,
    v: &mut Violations,
) -> Option<Amount> {
    let amount = Amount::parse(field, money, v)?;
    if !amount.is_positive() {
        v.add(field, format!("must be more than zero, got {amount}"));
        return None;
    }
    Some(amount)
}

/// A validated Refund request.
#[derive(Debug, Clone)]
pub struct RefundRequest {
    /// The caller's idempotency id.
    pub refund_id: String,
    /// The payment to refund.
    pub payment_id: String,
    /// How much; more than zero.
    pub amount: Amount,
    /// Why.
    pub reason: String,
}

impl RefundRequest {
    /// What a repeated call must match to count as the same refund.
    pub fn fingerprint(&self) -> String {
        format!("{}|{}", self.payment_id, self.amount.exact())
    }

    /// Checks the parts of a Refund request.
    pub fn parse(
        refund_id: &str,
        payment_id: &str,
        amount: Option<&kit_values::pb::ferrymesh::common::v1::Money>,
        reason: &str,
    ) -> Result<Self, PaymentsError> {
        let mut v = Violations::new();
        let refund_id = check_request_id("refund_id", refund_id, &mut v);
        let payment_id = check_request_id("payment_id", payment_id, &mut v);
        let amount = positive_amount("amount", amount, &mut v);
        if reason.chars().count() > 500 {
            v.add("reason", "must be at most 500 characters");
        }
        match (refund_id, payment_id, amount) {
            (Some(refund_id), Some(payment_id), Some(amount)) if v.is_empty() => Ok(RefundRequest {
                refund_id,
                payment_id,
                amount,
                reason: reason.to_string(),
            }),
            _ => Err(v.into()),
        }
    }
}

/// A refund of (part of) a payment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refund {
    /// The caller's id.
    pub refund_id: String,
    /// How much.
    pub amount: Amount,
    /// Why.
    pub reason: String,
    /// When, in microseconds since the epoch.
    pub create_micros: i64,
}

/// A captured payment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Payment {
    /// The caller's id.
    pub payment_id: String,
    /// The order paid for.
    pub order_id: String,
    /// How much was charged.
    pub amount: Amount,
    /// How much of it was refunded.
    pub refunded: Amount,
    /// The card brand.
    pub card_brand: String,
    /// The card's last four digits.
    pub card_last4: String,
    /// Its refunds, oldest first.
    pub refunds: Vec<Refund>,
    /// When, in microseconds since the epoch.
    pub create_micros: i64,
}

/// Where a payment stands, derived from what was refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PaymentStatus {
    /// Nothing refunded.
    Captured,
    /// Part refunded.
    PartiallyRefunded,
    /// All refunded.
    Refunded,
}

impl Payment {
    /// Where it stands.
    pub fn status(&self) -> PaymentStatus {
        match self.refunded.nanos() {
            0 => PaymentStatus::Captured,
            n if n >= self.amount.nanos() => PaymentStatus::Refunded,
            _ => PaymentStatus::PartiallyRefunded,
        }
    }
}

/// Everything that can go wrong in payments.
#[derive(Debug, thiserror::Error)]
pub enum PaymentsError {
    /// The request is malformed.
    #[error("{0}")]
    Invalid(#[from] Violations),
    /// The card token is unknown or past its lifetime.
    #[error("card token `{0}` is unknown or expired; tokenize the card again with TokenizeCard")]
    TokenExpired(String),
    /// The card was declined.
    #[error("the card ending {last4} was declined ({reason})")]
    Declined {
        /// CARD_DECLINED, INSUFFICIENT_FUNDS.
        reason: &'static str,
        /// The card's last four digits.
        last4: String,
    },
    /// The processor failed for now; the same call may be retried.
    #[error("the card processor is unavailable for payment `{0}`; retry with the same payment_id")]
    Transient(String),
    /// No payment has the id.
    #[error("payment `{0}` does not exist")]
    NotFound(String),
    /// The id was used before for something else.
    #[error("{kind} `{id}` already exists with other details; use a new {kind}_id")]
    Conflict {
        /// "payment" or "refund".
        kind: &'static str,
        /// The id.
        id: String,
    },
    /// The refund is in another currency than the payment.
    #[error("the refund is in {refund} but payment `{payment_id}` was charged in {charged}")]
    CurrencyMismatch {
        /// The payment.
        payment_id: String,
        /// The payment's currency.
        charged: String,
        /// The refund's currency.
        refund: String,
    },
    /// The refund is more than what is left to refund.
    #[error("a refund of {requested} exceeds the {refundable} still refundable on payment `{payment_id}`")]
    ExceedsCharge {
        /// The payment.
        payment_id: String,
        /// Asked for.
        requested: Amount,
        /// Left.
        refundable: Amount,
    },
    /// The database failed.
    #[error("payments store: {0}")]
    Store(#[from] sea_orm::DbErr),
    /// Claiming or replaying an id failed.
    #[error("payments store: {0}")]
    Idempotency(#[from] kit_store::IdempotencyError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_cards_behave_as_documented() {
        assert_eq!(behaviour_of("4242424242424242"), CardBehaviour::Succeeds);
        assert_eq!(
            behaviour_of("4000000000000002"),
            CardBehaviour::Declined("CARD_DECLINED")
        );
        assert_eq!(behaviour_of("4000000000000119"), CardBehaviour::FailsOnce);
        for number in [
            "4000000000000002",
            "4000000000009995",
            "4000000000000119",
            "5555555555554444",
        ] {
            assert!(kit_values::luhn_valid(number), "{number} is a valid test number");
        }
    }
}
