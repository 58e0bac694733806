//! The gRPC face of payments: pb <-> domain, and errors to statuses.

use std::time::Duration;

use tonic::{Request, Response, Status};

use crate::domain::{
    CardBehaviour, CardSource, Charge, ChargeRequest, ChargedCard, Payment, PaymentStatus, PaymentsError,
    Refund, RefundRequest, check_order_id, positive_amount,
};
use crate::pb::ferrymesh::payments::v1 as pb;
use crate::store::Store;
use kit_values::Violations;
use kit_values::{Card, check_request_id, current_year_month, timestamp};

pub(crate) struct PaymentsApi {
    store: Store,
}

impl PaymentsApi {
    pub(crate) fn new(store: Store) -> Self {
        PaymentsApi { store }
    }
}

#[tonic::async_trait]
impl pb::payments_service_server::PaymentsService for PaymentsApi {
    async fn charge(
        &self,
        request: Request<pb::ChargeRequest>,
    ) -> Result<Response<pb::ChargeResponse>, Status> {
        let request = ChargeRequest::try_from(request.into_inner())?;
        let card = match request.source {
            CardSource::Card(card) => card,
            CardSource::Token(token) => self.store.card_of(&token).await?,
        };
        let charge = Charge {
            payment_id: request.payment_id,
            order_id: request.order_id,
            amount: request.amount,
            card,
        };
        // The test cards behave as the README says, before anything is stored.
        match charge.card.behaviour {
            CardBehaviour::Declined(reason) => {
                return Err(PaymentsError::Declined {
                    reason,
                    last4: charge.card.last4.clone(),
                }
                .into());
            }
            CardBehaviour::FailsOnce if self.store.first_attempt(&charge.payment_id).await? => {
                return Err(PaymentsError::Transient(charge.payment_id.clone()).into());
            }
            CardBehaviour::FailsOnce | CardBehaviour::Succeeds => {}
        }
        let payment = self.store.charge(&charge).await?;
        Ok(Response::new(pb::ChargeResponse {
            payment: Some(to_pb(payment)),
        }))
    }

    async fn refund(
        &self,
        request: Request<pb::RefundRequest>,
    ) -> Result<Response<pb::RefundResponse>, Status> {
        let r = request.into_inner();
        let refund = RefundRequest::parse(&r.refund_id, &r.payment_id, r.amount.as_ref(), &r.reason)?;
        let (refund, payment) = self.store.refund(&refund).await?;
        Ok(Response::new(pb::RefundResponse {
            refund: Some(refund_to_pb(refund)),
            payment: Some(to_pb(payment)),
        }))
    }

    async fn tokenize_card(
        &self,
        request: Request<pb::TokenizeCardRequest>,
    ) -> Result<Response<pb::TokenizeCardResponse>, Status> {
        let mut v = Violations::new();
        let card = Card::parse(
            "card",
            request.get_ref().card.as_ref(),
            current_year_month(),
            &mut v,
        );
        let card = match card {
            Some(card) if v.is_empty() => ChargedCard::from(&card),
            _ => return Err(PaymentsError::from(v).into()),
        };
        let (card_token, expire_micros) = self.store.tokenize(&card).await?;
        Ok(Response::new(pb::TokenizeCardResponse {
            card_token,
            card_brand: card.brand,
            card_last4: card.last4,
            expire_time: Some(timestamp(expire_micros)),
        }))
    }

    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::GetPaymentResponse>, Status> {
        let mut v = Violations::new();
        let id = check_request_id("payment_id", &request.get_ref().payment_id, &mut v);
        let id = id.ok_or_else(|| PaymentsError::from(v))?;
        let payment = self.store.get(&id).await?;
        Ok(Response::new(pb::GetPaymentResponse {
            payment: Some(to_pb(payment)),
        }))
    }
}

impl TryFrom<pb::ChargeRequest> for ChargeRequest {
    type Error = PaymentsError;

    fn try_from(request: pb::ChargeRequest) -> Result<Self, PaymentsError> {
        let mut v = Violations::new();
        let payment_id = check_request_id("payment_id", &request.payment_id, &mut v);
        let order_id = check_order_id(&request.order_id, &mut v);
        let amount = positive_amount("amount", request.amount.as_ref(), &mut v);
        let source = match (&request.card, request.card_token.as_str()) {
            (Some(_), token) if !token.is_empty() => {
                v.add("card_token", "set either card or card_token, not both");
                None
            }
            (None, token) if !token.is_empty() => {
                let well_formed = token.len() == 36
                    && token.starts_with("tok_")
                    && token[4..].bytes().all(|b| b.is_ascii_hexdigit());
                if well_formed {
                    Some(CardSource::Token(token.to_string()))
                } else {
                    v.add(
                        "card_token",
                        format!(
                            "must be a token from TokenizeCard, \"tok_\" and 32 hex digits; got {}",
                            kit_values::quoted(token)
                        ),
                    );
                    None
                }
            }
            (card, _) => Card::parse("card", card.as_ref(), current_year_month(), &mut v)
                .map(|card| CardSource::Card(ChargedCard::from(&card))),
        };
        match (payment_id, order_id, amount, source) {
            (Some(payment_id), Some(order_id), Some(amount), Some(source)) if v.is_empty() => {
                Ok(ChargeRequest {
                    payment_id,
                    order_id,
                    amount,
                    source,
                })
            }
            _ => Err(v.into()),
        }
    }
}

fn to_pb(payment: Payment) -> pb::Payment {
    let status = match payment.status() {
        PaymentStatus::Captured => pb::PaymentStatus::Captured,
        PaymentStatus::PartiallyRefunded => pb::PaymentStatus::PartiallyRefunded,
        PaymentStatus::Refunded => pb::PaymentStatus::Refunded,
    };
    pb::Payment {
        payment_id: payment.payment_id,
        order_id: payment.order_id,
        amount: Some(payment.amount.to_pb()),
        refunded_amount: Some(payment.refunded.to_pb()),
        status: status as i32,
        card_brand: payment.card_brand,
        card_last4: payment.card_last4,
        refunds: payment.refunds.into_iter().map(refund_to_pb).collect(),
        create_time: Some(timestamp(payment.create_micros)),
    }
}

fn refund_to_pb(refund: Refund) -> pb::PaymentRefund {
    pb::PaymentRefund {
        refund_id: refund.refund_id,
        amount: Some(refund.amount.to_pb()),
        reason: refund.reason,
        create_time: Some(timestamp(refund.create_micros)),
    }
}

/// The one place payments errors become statuses.
impl From<PaymentsError> for Status {
    fn from(error: PaymentsError) -> Status {
        use kit::error as e;
        let message = error.to_string();
        match error {
            PaymentsError::Invalid(violations) => e::invalid_argument(violations),
            PaymentsError::Declined { reason, last4 } => {
                e::failed_precondition(reason, "payments.ferrymesh", &[("card_last4", last4)], message)
            }
            PaymentsError::TokenExpired(_) => {
                e::failed_precondition("CARD_TOKEN_EXPIRED", "payments.ferrymesh", &[], message)
            }
            PaymentsError::Transient(_) => e::unavailable(message, Duration::from_millis(200)),
            PaymentsError::NotFound(id) => e::not_found("payment", &id),
            PaymentsError::Conflict { kind, id } => e::already_exists(kind, &id, message),
            PaymentsError::CurrencyMismatch { .. } => {
                let mut violations = Violations::new();
                violations.add("amount.currency_code", message);
                e::invalid_argument(violations)
            }
            PaymentsError::ExceedsCharge { .. } => {
                e::failed_precondition("REFUND_EXCEEDS_CHARGE", "payments.ferrymesh", &[], message)
            }
            PaymentsError::Store(_) | PaymentsError::Idempotency(_) => e::internal(&error),
        }
    }
}
