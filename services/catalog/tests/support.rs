//! Starts the catalog on a fresh database and gives a client for it.

use catalog::pb::ferrymesh::catalog::v1::catalog_service_client::CatalogServiceClient;
use kit::testing::TestDatabase;
use tonic::transport::Channel;
use tonic_types::StatusExt;

pub(crate) struct Catalog {
    pub(crate) client: CatalogServiceClient<Channel>,
    pub(crate) running: kit::Running,
    pub(crate) db: TestDatabase,
}

impl Catalog {
    pub(crate) async fn start(db: TestDatabase) -> Self {
        let conn = kit::db::connect_and_migrate::<catalog::migrations::Migrator>(&db.url)
            .await
            .unwrap_or_else(|e| panic!("open {} database: {e}", db.backend()));
        let args = kit::ServerArgs::for_tests(db.url.clone());
        let running = kit::server::spawn(catalog::service_with(conn, &args), &args, 0)
            .await
            .expect("start catalog");
        let client = CatalogServiceClient::connect(running.uri())
            .await
            .expect("connect to catalog");
        Catalog { client, running, db }
    }

    pub(crate) fn client(&self) -> CatalogServiceClient<Channel> {
        self.client.clone()
    }

    pub(crate) async fn stop(self) {
        self.running.stop().await.expect("catalog stops cleanly");
        self.db.cleanup().await;
    }
}

/// Asserts INVALID_ARGUMENT naming `field` in a BadRequest violation whose
/// description contains `says`, and that the message carries it too.
pub(crate) fn assert_invalid(status: &tonic::Status, field: &str, says: &str) {
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(&format!("{field}: ")),
        "message names {field}: {}",
        status.message()
    );
    assert!(
        status.message().contains(says),
        "message says {says:?}: {}",
        status.message()
    );
    let details = status.get_error_details();
    let bad_request = details.bad_request().expect("a google.rpc.BadRequest detail");
    let violation = bad_request
        .field_violations
        .iter()
        .find(|v| v.field == field)
        .unwrap_or_else(|| panic!("a violation for {field} in {:?}", bad_request.field_violations));
    assert!(
        violation.description.contains(says),
        "{:?}",
        violation.description
    );
}
