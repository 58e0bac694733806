//! Starts shipping on a fresh database and gives a client for it.

pub(crate) use kit_testing::fixtures::address;
use kit_testing::{TestDatabase, TestService};
use shipping::pb::ferrymesh::shipping::v1::shipping_service_client::ShippingServiceClient;
use shipping::pb::ferrymesh::shipping::v1::{CreateShipmentRequest, Shipment, ShipmentItem};
use tonic::transport::Channel;

/// The shipping service under test and its client.
pub(crate) type Shipping = TestService<ShippingServiceClient<Channel>>;

/// Starts shipping on `db`.
pub(crate) async fn start(db: TestDatabase) -> Shipping {
    TestService::start::<shipping::migrations::Migrator>(
        db,
        shipping::service_with,
        ShippingServiceClient::new,
    )
    .await
}

/// What the scenarios ask shipping often.
pub(crate) trait ShippingCalls {
    async fn create(&self, request: CreateShipmentRequest) -> Result<Shipment, tonic::Status>;
}

impl ShippingCalls for Shipping {
    async fn create(&self, request: CreateShipmentRequest) -> Result<Shipment, tonic::Status> {
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
