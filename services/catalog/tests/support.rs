//! Starts the catalog on a fresh database and gives a client for it.

use catalog::pb::ferrymesh::catalog::v1::catalog_service_client::CatalogServiceClient;
use kit_testing::{TestDatabase, TestService};
use tonic::transport::Channel;

pub(crate) use kit_testing::assert_invalid;

/// The catalog service under test and its client.
pub(crate) type Catalog = TestService<CatalogServiceClient<Channel>>;

/// Starts catalog on `db`.
pub(crate) async fn start(db: TestDatabase) -> Catalog {
    TestService::start::<catalog::migrations::Migrator>(db, catalog::service_with, CatalogServiceClient::new)
        .await
}
