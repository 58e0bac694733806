//! Starts the inventory on a fresh database and gives a client for it.

use inventory::pb::ferrymesh::inventory::v1::inventory_service_client::InventoryServiceClient;
use inventory::pb::ferrymesh::inventory::v1::{
    GetStockRequest, ReservationItem, ReserveStockRequest, ReserveStockResponse, StockLevel,
};
use kit_testing::{TestDatabase, TestServer};
use sea_orm::EntityTrait;
use tonic::transport::Channel;

pub(crate) struct Inventory {
    pub(crate) server: TestServer,
    client: InventoryServiceClient<Channel>,
}

impl Inventory {
    pub(crate) async fn start(db: TestDatabase) -> Self {
        let server = TestServer::start::<inventory::migrations::Migrator>(db, inventory::service_with).await;
        let client = InventoryServiceClient::new(server.channel().await);
        Inventory { server, client }
    }

    pub(crate) fn client(&self) -> InventoryServiceClient<Channel> {
        self.client.clone()
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }

    pub(crate) async fn level(&self, sku: &str) -> StockLevel {
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

    pub(crate) async fn reserve(
        &self,
        id: &str,
        items: &[(&str, i32)],
    ) -> Result<ReserveStockResponse, tonic::Status> {
        self.client()
            .reserve_stock(reserve_request(id, items))
            .await
            .map(|r| r.into_inner())
    }

    /// The stock row as the database holds it, read past the service.
    pub(crate) async fn stored(&self, sku: &str) -> inventory::store::stock::Model {
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
