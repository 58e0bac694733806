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
    let db = kit::db::connect_and_migrate::<migrations::Migrator>(&url).await?;
    Ok(service_with(db, &config.server))
}

/// The service over an open, migrated database.
pub fn service_with(db: sea_orm::DatabaseConnection, args: &kit::ServerArgs) -> kit::Service {
    let api = api::CatalogApi::new(store::Store::new(db));
    kit::Service::new("catalog")
        .serving(
            CatalogServiceServer::new(api)
                .max_decoding_message_size(args.max_message_bytes)
                .max_encoding_message_size(args.max_message_bytes),
        )
        .reflect(pb::FILE_DESCRIPTOR_SET)
}
