//! The payments service: card charges and refunds, idempotent, storing no card numbers.

#![forbid(unsafe_code)]

mod api;
pub mod domain;
pub mod migrations;
pub mod store;

/// Generated code of the contracts this service serves.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/ferrymesh.rs"));
}

use pb::ferrymesh::payments::v1::payments_service_server::PaymentsServiceServer;

/// The payments default port.
pub const DEFAULT_PORT: u16 = 50053;

/// The payments flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "payments",
    about = "ferrymesh payments service: card charges and refunds"
)]
pub struct Config {
    /// Flags every service takes.
    #[command(flatten)]
    pub server: kit::ServerArgs,
}

impl kit::ServiceConfig for Config {
    const NAME: &'static str = "payments";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn server(&self) -> &kit::ServerArgs {
        &self.server
    }
}

/// Opens (and migrates) the payments's database and builds the service.
pub async fn service(config: Config) -> Result<kit::Service, kit::BoxError> {
    let url = config.server.database_url("payments");
    let db_pool = kit_store::Pool::new(config.server.db_pool_size, config.server.db_timeout);
    let db = kit_store::connect_and_migrate_with::<migrations::Migrator>(&url, db_pool).await?;
    service_with(db, &config.server).await
}

/// Who may call payments under mutual TLS: orders only the tokenizer
/// (card data is swapped for a token before anything is kept), the
/// workflow's saga charges, refunds and reads. Not the gateway: nothing of
/// payments is public.
pub const CALLERS: kit::authz::Callers = &[
    ("orders", "ferrymesh.payments.v1.PaymentsService/TokenizeCard"),
    ("workflow", "ferrymesh.payments.v1.PaymentsService/*"),
];

/// The service over an open, migrated database.
pub async fn service_with(db: kit_store::Db, args: &kit::ServerArgs) -> Result<kit::Service, kit::BoxError> {
    let api = api::PaymentsApi::new(store::Store::new(db));
    Ok(kit::Service::new("payments")
        .callers(CALLERS)
        .serving(
            PaymentsServiceServer::new(api)
                .max_decoding_message_size(args.max_message_bytes)
                .max_encoding_message_size(args.max_message_bytes),
        )
        .reflect(pb::FILE_DESCRIPTOR_SET))
}
