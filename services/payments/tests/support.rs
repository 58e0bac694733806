//! Starts payments on a fresh database and gives a client for it.

use kit_testing::{TestDatabase, TestService};
use kit_values::pb::ferrymesh::common::v1::Money;
use payments::pb::ferrymesh::payments::v1::payments_service_client::PaymentsServiceClient;
use payments::pb::ferrymesh::payments::v1::{ChargeRequest, Payment, RefundRequest, RefundResponse};
use tonic::transport::Channel;

pub(crate) use kit_testing::fixtures::{DECLINED_CARD, FLAKY_CARD, GOOD_CARD, card, usd};

/// The payments service under test and its client.
pub(crate) type Payments = TestService<PaymentsServiceClient<Channel>>;

/// Starts payments on `db`.
pub(crate) async fn start(db: TestDatabase) -> Payments {
    TestService::start::<payments::migrations::Migrator>(
        db,
        payments::service_with,
        PaymentsServiceClient::new,
    )
    .await
}

/// What the scenarios ask payments often.
pub(crate) trait PaymentsCalls {
    async fn charge(&self, request: ChargeRequest) -> Result<Payment, tonic::Status>;
    async fn refund_owned(
        &self,
        refund_id: String,
        payment_id: &str,
        amount: Money,
    ) -> Result<RefundResponse, tonic::Status>;
    async fn refund(
        &self,
        refund_id: &str,
        payment_id: &str,
        amount: Money,
    ) -> Result<RefundResponse, tonic::Status>;
}

impl PaymentsCalls for Payments {
    async fn charge(&self, request: ChargeRequest) -> Result<Payment, tonic::Status> {
        self.client()
            .charge(request)
            .await
            .map(|r| r.into_inner().payment.unwrap())
    }

    async fn refund_owned(
        &self,
        refund_id: String,
        payment_id: &str,
        amount: Money,
    ) -> Result<RefundResponse, tonic::Status> {
        self.refund(&refund_id, payment_id, amount).await
    }

    async fn refund(
        &self,
        refund_id: &str,
        payment_id: &str,
        amount: Money,
    ) -> Result<RefundResponse, tonic::Status> {
        let request = RefundRequest {
            refund_id: refund_id.into(),
            payment_id: payment_id.into(),
            amount: Some(amount),
            reason: "customer returned it".into(),
        };
        self.client().refund(request).await.map(|r| r.into_inner())
    }
}

pub(crate) fn charge_request(payment_id: &str, amount: Money, number: &str) -> ChargeRequest {
    ChargeRequest {
        payment_id: payment_id.into(),
        order_id: format!("order-of-{payment_id}"),
        amount: Some(amount),
        card: Some(card(number)),
        card_token: String::new(),
    }
}
