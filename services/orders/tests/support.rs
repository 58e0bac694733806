//! Starts orders on a fresh database, with a catalog beside it, and gives
//! a v1 and a v2 client.

use std::time::Duration;

use kit_testing::{TestDatabase, TestServer, fixtures};
use kit_values::pb::ferrymesh::common::v1::Address;
use orders::pb::ferrymesh::orders::{v1, v2};
use tonic::transport::Channel;

pub(crate) struct Orders {
    catalog: TestServer,
    payments: TestServer,
    pub(crate) server: TestServer,
    v1: v1::orders_service_client::OrdersServiceClient<Channel>,
    v2: v2::orders_service_client::OrdersServiceClient<Channel>,
}

impl Orders {
    pub(crate) async fn start(db: TestDatabase) -> Self {
        let catalog =
            TestServer::start::<catalog::migrations::Migrator>(TestDatabase::sqlite(), catalog::service_with)
                .await;
        let payments = TestServer::start::<payments::migrations::Migrator>(
            TestDatabase::sqlite(),
            payments::service_with,
        )
        .await;
        let upstreams = orders::core::Upstreams {
            catalog: kit::client::Upstream::new(&catalog.uri(), Duration::from_secs(2)).unwrap(),
            payments: kit::client::Upstream::new(&payments.uri(), Duration::from_secs(2)).unwrap(),
            // No workflow here: orders stay PENDING, their sagas waiting to start.
            workflow: kit::client::Upstream::new("http://127.0.0.1:9", Duration::from_millis(200)).unwrap(),
        };
        let server = TestServer::start::<orders::migrations::Migrator>(db, async |conn, args| {
            orders::service_with(conn, upstreams, args).await
        })
        .await;
        let channel = server.channel().await;
        Orders {
            catalog,
            payments,
            server,
            v1: v1::orders_service_client::OrdersServiceClient::new(channel.clone()),
            v2: v2::orders_service_client::OrdersServiceClient::new(channel),
        }
    }

    /// Another orders process over the same database, as a second replica.
    pub(crate) async fn second_replica(
        &self,
    ) -> (
        kit::server::Running,
        v2::orders_service_client::OrdersServiceClient<Channel>,
    ) {
        let db = kit_store::connect_and_migrate::<orders::migrations::Migrator>(&self.server.db.url)
            .await
            .unwrap();
        let args = kit::ServerArgs::for_tests(self.server.db.url.clone());
        let upstreams = orders::core::Upstreams {
            catalog: kit::client::Upstream::new(&self.catalog.uri(), Duration::from_secs(2)).unwrap(),
            payments: kit::client::Upstream::new(&self.payments.uri(), Duration::from_secs(2)).unwrap(),
            workflow: kit::client::Upstream::new("http://127.0.0.1:9", Duration::from_millis(200)).unwrap(),
        };
        let service = orders::service_with(db, upstreams, &args).await.unwrap();
        let running = kit::server::spawn(service, &args, 0).await.unwrap();
        let channel = tonic::transport::Endpoint::from_shared(running.uri())
            .unwrap()
            .connect()
            .await
            .unwrap();
        (
            running,
            v2::orders_service_client::OrdersServiceClient::new(channel),
        )
    }

    pub(crate) fn v1(&self) -> v1::orders_service_client::OrdersServiceClient<Channel> {
        self.v1.clone()
    }

    pub(crate) fn v2(&self) -> v2::orders_service_client::OrdersServiceClient<Channel> {
        self.v2.clone()
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
        self.catalog.stop().await;
        self.payments.stop().await;
    }

    pub(crate) async fn place_v2(&self, request: v2::PlaceOrderRequest) -> Result<v2::Order, tonic::Status> {
        self.v2()
            .place_order(request)
            .await
            .map(|r| r.into_inner().order.unwrap())
    }

    pub(crate) async fn get_v1(&self, order_id: &str) -> v1::Order {
        let request = v1::GetOrderRequest {
            order_id: order_id.into(),
        };
        self.v1()
            .get_order(request)
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap()
    }

    pub(crate) async fn get_v2(&self, order_id: &str) -> v2::Order {
        let request = v2::GetOrderRequest {
            order_id: order_id.into(),
        };
        self.v2()
            .get_order(request)
            .await
            .unwrap()
            .into_inner()
            .order
            .unwrap()
    }
}

pub(crate) const EMAIL: &str = "ada@example.com";

/// The shipping address every test order goes to.
pub(crate) fn address() -> Address {
    fixtures::address("US")
}

pub(crate) fn v1_request(request_id: &str, items: &[(&str, i32)]) -> v1::PlaceOrderRequest {
    v1::PlaceOrderRequest {
        request_id: request_id.into(),
        customer_email: EMAIL.into(),
        items: items
            .iter()
            .map(|(id, quantity)| v1::LineItem {
                product_id: id.to_string(),
                quantity: *quantity,
                unit_price: None,
            })
            .collect(),
        shipping_address: Some(address()),
        card: Some(fixtures::card(fixtures::GOOD_CARD)),
    }
}

pub(crate) fn v2_request(key: &str, items: &[(&str, i32)]) -> v2::PlaceOrderRequest {
    v2::PlaceOrderRequest {
        idempotency_key: key.into(),
        customer_email: EMAIL.into(),
        items: items
            .iter()
            .map(|(id, quantity)| v2::PlaceOrderItem {
                product_id: id.to_string(),
                quantity: *quantity,
            })
            .collect(),
        shipping_address: Some(address()),
        shipping_option: v2::ShippingOption::Standard as i32,
        card: Some(fixtures::card(fixtures::GOOD_CARD)),
    }
}
