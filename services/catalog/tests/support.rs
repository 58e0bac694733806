//! Starts the catalog on a fresh database and gives a client for it.

use catalog::pb::ferrymesh::catalog::v1::catalog_service_client::CatalogServiceClient;
use kit_testing::{TestDatabase, TestServer};
use tonic::transport::Channel;

pub(crate) use kit_testing::assert_invalid;

pub(crate) struct Catalog {
    pub(crate) server: TestServer,
    client: CatalogServiceClient<Channel>,
}

impl Catalog {
    pub(crate) async fn start(db: TestDatabase) -> Self {
        let server = TestServer::start::<catalog::migrations::Migrator>(db, catalog::service_with).await;
        let client = CatalogServiceClient::new(server.channel().await);
        Catalog { server, client }
    }

    pub(crate) fn client(&self) -> CatalogServiceClient<Channel> {
        self.client.clone()
    }

    pub(crate) async fn stop(self) {
        self.server.stop().await;
    }
}
