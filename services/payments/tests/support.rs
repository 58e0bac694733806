//! Starts payments on a fresh database and gives a client for it.

use kit_testing::{TestDatabase, TestServer};
use kit_values::pb::ferrymesh::common::v1::Money;
use payments::pb::ferrymesh::payments::v1::payments_service_client::PaymentsServiceClient;
use payments::pb::ferrymesh::payments::v1::{ChargeRequest, Payment, RefundRequest, RefundResponse};
use tonic::transport::Channel;

pub(crate) use kit_testing::fixtures::{DECLINED_CARD, FLAKY_CARD, GOOD_CARD, card, usd};

pub(crate) struct Payments {
    pub(crate) server: TestServer,
    client: PaymentsServiceClient<Channel>,
}

impl Payments {
    pub(crate) async fn start(db: TestDatabase) -> Self {
        let server = TestServer::start::<payments::migrations::Migrator>(db, payments::service_with).await;
        let client = PaymentsServiceClient::new(server.channel().await);
        Payments { server, client }
    }

    pub(crate) fn client(&self) -> PaymentsServiceClient<Channel> {
        self.client.clone()
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }

    pub(crate) async fn charge(&self, request: ChargeRequest) -> Result<Payment, tonic::Status> {
        self.client()
            .charge(request)
            .await
            .map(|r| r.into_inner().payment.unwrap())
    }

    pub(crate) async fn refund_owned(
        &self,
        refund_id: String,
        payment_id: &str,
        amount: Money,
    ) -> Result<RefundResponse, tonic::Status> {
        self.refund(&refund_id, payment_id, amount).await
    }

    pub(crate) async fn refund(
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
