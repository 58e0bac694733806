//! The catalog service: what the shop sells and at what price, in its own database.

#![forbid(unsafe_code)]

mod api;
pub mod domain;
pub mod migrations;
mod store;

/// Generated code of the contracts this service serves.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/ferrymesh.rs"));
}

use std::time::Duration;

use pb::ferrymesh::catalog::v1::catalog_service_server::CatalogServiceServer;

/// The catalog's default port.
pub const DEFAULT_PORT: u16 = 50051;

/// The catalog's flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "catalog", about = "ferrymesh catalog service: products and prices")]
pub struct Config {
    /// Flags every service takes.
    #[command(flatten)]
    pub server: kit::ServerArgs,
    /// How often the in-memory catalog is re-read from the database.
    #[arg(long, value_name = "DURATION", value_parser = kit::duration::parse_duration, default_value = "2s")]
    pub snapshot_refresh: Duration,
}

impl kit::ServiceConfig for Config {
    const NAME: &'static str = "catalog";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn server(&self) -> &kit::ServerArgs {
        &self.server
    }
}

/// Opens (and migrates) the catalog's database and builds the service.
pub async fn service(config: Config) -> Result<kit::Service, kit::BoxError> {
    let url = config.server.database_url("catalog");
    let db_pool = kit_store::Pool::new(config.server.db_pool_size, config.server.db_timeout);
    let db = kit_store::connect_and_migrate_with::<migrations::Migrator>(&url, db_pool).await?;
    serve_snapshot(db, &config.server, config.snapshot_refresh).await
}

/// Who may call catalog under mutual TLS: the gateway (its methods are all
/// public reads), orders pricing an order, workflow tasks reading products.
pub const CALLERS: kit::authz::Callers = &[
    ("gateway", "ferrymesh.catalog.v1.CatalogService/*"),
    ("orders", "ferrymesh.catalog.v1.CatalogService/GetProduct"),
    ("workflow", "ferrymesh.catalog.v1.CatalogService/*"),
];

/// The service over an open, migrated database.
pub async fn service_with(db: kit_store::Db, args: &kit::ServerArgs) -> Result<kit::Service, kit::BoxError> {
    serve_snapshot(db, args, SNAPSHOT_REFRESH).await
}

/// How often the in-memory catalog is re-read, unless `--snapshot-refresh` says otherwise.
pub const SNAPSHOT_REFRESH: Duration = Duration::from_secs(2);

async fn serve_snapshot(
    db: kit_store::Db,
    args: &kit::ServerArgs,
    refresh: Duration,
) -> Result<kit::Service, kit::BoxError> {
    let snapshot = store::Snapshot::start(store::Store::new(db), refresh).await?;
    let api = api::CatalogApi::new(snapshot);
    Ok(kit::Service::new("catalog")
        .callers(CALLERS)
        .serving(
            CatalogServiceServer::new(api)
                .max_decoding_message_size(args.max_message_bytes)
                .max_encoding_message_size(args.max_message_bytes),
        )
        .reflect(pb::FILE_DESCRIPTOR_SET))
}
