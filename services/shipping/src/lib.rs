//! The shipping service: quotes priced by weight and zone, and idempotent shipments.

#![forbid(unsafe_code)]

mod api;
pub mod domain;
pub mod migrations;
pub mod store;

/// Generated code of the contracts this service serves.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/ferrymesh.rs"));
}

use pb::ferrymesh::shipping::v1::shipping_service_server::ShippingServiceServer;

/// The shipping default port.
pub const DEFAULT_PORT: u16 = 50054;

/// The shipping flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "shipping", about = "ferrymesh shipping service: quotes and shipments")]
pub struct Config {
    /// Flags every service takes.
    #[command(flatten)]
    pub server: kit::ServerArgs,
}

impl kit::ServiceConfig for Config {
    const NAME: &'static str = "shipping";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn server(&self) -> &kit::ServerArgs {
        &self.server
    }
}

/// Opens (and migrates) the shipping database and builds the service.
pub async fn service(config: Config) -> Result<kit::Service, kit::BoxError> {
    let url = config.server.database_url("shipping");
    let db_pool = kit_store::Pool::new(config.server.db_pool_size, config.server.db_timeout);
    let db = kit_store::connect_and_migrate_with::<migrations::Migrator>(&url, db_pool).await?;
    service_with(db, &config.server).await
}

/// Who may call shipping under mutual TLS: the gateway only quotes, the
/// workflow's saga everything.
pub const CALLERS: kit::authz::Callers = &[
    ("gateway", "ferrymesh.shipping.v1.ShippingService/GetQuote"),
    ("workflow", "ferrymesh.shipping.v1.ShippingService/*"),
];

/// The service over an open, migrated database.
pub async fn service_with(db: kit_store::Db, args: &kit::ServerArgs) -> Result<kit::Service, kit::BoxError> {
    let api = api::ShippingApi::new(store::Store::new(db));
    Ok(kit::Service::new("shipping")
        .callers(CALLERS)
        .serving(
            ShippingServiceServer::new(api)
                .max_decoding_message_size(args.max_message_bytes)
                .max_encoding_message_size(args.max_message_bytes),
        )
        .reflect(pb::FILE_DESCRIPTOR_SET))
}
