//! Starts the inventory on a fresh database and gives a client for it.

use inventory::pb::ferrymesh::inventory::v1::inventory_service_client::InventoryServiceClient;
use inventory::pb::ferrymesh::inventory::v1::{
    GetStockRequest, ReservationItem, ReserveStockRequest, ReserveStockResponse, StockLevel,
};
use kit_testing::{TestDatabase, TestService};
use sea_orm::EntityTrait;
use tonic::transport::Channel;

/// The inventory service under test and its client.
pub(crate) type Inventory = TestService<InventoryServiceClient<Channel>>;

/// Starts inventory on `db`.
pub(crate) async fn start(db: TestDatabase) -> Inventory {
    TestService::start::<inventory::migrations::Migrator>(
        db,
        inventory::service_with,
        InventoryServiceClient::new,
    )
    .await
}

/// What the scenarios ask inventory often.
pub(crate) trait InventoryCalls {
    async fn level(&self, sku: &str) -> StockLevel;
    async fn reserve(&self, id: &str, items: &[(&str, i32)]) -> Result<ReserveStockResponse, tonic::Status>;
    async fn stored(&self, sku: &str) -> inventory::store::stock::Model;
}

impl InventoryCalls for Inventory {
    async fn level(&self, sku: &str) -> StockLevel {
        let request = GetStockRequest {
            skus: vec![sku.to_string()],
        };
        self.client()
            .get_stock(request)
            .await
            .expect("get stock")
            .into_inner()
            .levels
            .remove(0)
    }

    async fn reserve(&self, id: &str, items: &[(&str, i32)]) -> Result<ReserveStockResponse, tonic::Status> {
        self.client()
            .reserve_stock(reserve_request(id, items))
            .await
            .map(|r| r.into_inner())
    }

    /// The stock row as the database holds it, read past the service.
    async fn stored(&self, sku: &str) -> inventory::store::stock::Model {
        let db = sea_orm::Database::connect(self.server.db.url.as_str())
            .await
            .unwrap();
        let row = inventory::store::stock::Entity::find_by_id(sku.to_string())
            .one(&db)
            .await
            .unwrap()
            .unwrap();
        db.close().await.unwrap();
        row
    }
}

pub(crate) fn reserve_request(id: &str, items: &[(&str, i32)]) -> ReserveStockRequest {
    ReserveStockRequest {
        reservation_id: id.to_string(),
        items: items
            .iter()
            .map(|(sku, quantity)| ReservationItem {
                sku: sku.to_string(),
                quantity: *quantity,
            })
            .collect(),
    }
}
