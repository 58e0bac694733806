//! The inventory service: stock per SKU and reservations against it, in its own database.

#![forbid(unsafe_code)]

mod api;
pub mod domain;
pub mod migrations;
pub mod store;

/// Generated code of the contracts this service serves.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/ferrymesh.rs"));
}

use pb::ferrymesh::inventory::v1::inventory_service_server::InventoryServiceServer;

/// The inventory's default port.
pub const DEFAULT_PORT: u16 = 50052;

/// The inventory's flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "inventory",
    about = "ferrymesh inventory service: stock per SKU and reservations"
)]
pub struct Config {
    /// Flags every service takes.
    #[command(flatten)]
    pub server: kit::ServerArgs,
}

impl kit::ServiceConfig for Config {
    const NAME: &'static str = "inventory";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn server(&self) -> &kit::ServerArgs {
        &self.server
    }
}

/// Opens (and migrates) the inventory's database and builds the service.
pub async fn service(config: Config) -> Result<kit::Service, kit::BoxError> {
    let url = config.server.database_url("inventory");
    let db_pool = kit_store::Pool::new(config.server.db_pool_size, config.server.db_timeout);
    let db = kit_store::connect_and_migrate_with::<migrations::Migrator>(&url, db_pool).await?;
    service_with(db, &config.server).await
}

/// Who may call inventory under mutual TLS: the gateway only the public
/// read, the workflow's saga steps everything.
pub const CALLERS: kit::authz::Callers = &[
    ("gateway", "ferrymesh.inventory.v1.InventoryService/GetStock"),
    ("workflow", "ferrymesh.inventory.v1.InventoryService/*"),
];

/// The service over an open, migrated database.
pub async fn service_with(db: kit_store::Db, args: &kit::ServerArgs) -> Result<kit::Service, kit::BoxError> {
    let api = api::InventoryApi::new(store::Store::new(db));
    Ok(kit::Service::new("inventory")
        .callers(CALLERS)
        .serving(
            InventoryServiceServer::new(api)
                .max_decoding_message_size(args.max_message_bytes)
                .max_encoding_message_size(args.max_message_bytes),
        )
        .reflect(pb::FILE_DESCRIPTOR_SET))
}
