//! Starts shipping on a fresh database and gives a client for it.

pub(crate) use kit_testing::fixtures::address;
use kit_testing::{TestDatabase, TestServer};
use shipping::pb::ferrymesh::shipping::v1::shipping_service_client::ShippingServiceClient;
use shipping::pb::ferrymesh::shipping::v1::{CreateShipmentRequest, Shipment, ShipmentItem};
use tonic::transport::Channel;

pub(crate) struct Shipping {
    pub(crate) server: TestServer,
    client: ShippingServiceClient<Channel>,
}

impl Shipping {
    pub(crate) async fn start(db: TestDatabase) -> Self {
        let server = TestServer::start::<shipping::migrations::Migrator>(db, shipping::service_with).await;
        let client = ShippingServiceClient::new(server.channel().await);
        Shipping { server, client }
    }

    pub(crate) fn client(&self) -> ShippingServiceClient<Channel> {
        self.client.clone()
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }

    pub(crate) async fn create(&self, request: CreateShipmentRequest) -> Result<Shipment, tonic::Status> {
        self.client()
            .create_shipment(request)
            .await
            .map(|r| r.into_inner().shipment.unwrap())
    }
}

pub(crate) fn item(sku: &str, quantity: i32, grams: i32) -> ShipmentItem {
    ShipmentItem {
        sku: sku.into(),
        quantity,
        unit_weight_grams: grams,
    }
}

pub(crate) fn create_request(id: &str, country: &str) -> CreateShipmentRequest {
    CreateShipmentRequest {
        shipment_id: id.into(),
        order_id: format!("order-of-{id}"),
        address: Some(address(country)),
        items: vec![item("mug", 2, 300), item("watch", 1, 120)],
    }
}
