//! The orders service: orders v1 and v2 served side by side from one
//! database, priced from the catalog; the v1 handlers adapt onto the v2 core.

#![forbid(unsafe_code)]

mod api;
pub mod core;
pub mod domain;
pub mod migrations;
pub mod saga;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

/// Generated code of the contracts this service serves and calls.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/ferrymesh.rs"));
}

use pb::ferrymesh::orders::v1::orders_service_server::OrdersServiceServer as V1Server;
use pb::ferrymesh::orders::v2::order_fulfillment_service_server::OrderFulfillmentServiceServer as FulfillmentServer;
use pb::ferrymesh::orders::v2::orders_service_server::OrdersServiceServer as V2Server;

/// The orders default port.
pub const DEFAULT_PORT: u16 = 50055;

/// The orders flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "orders",
    about = "ferrymesh orders service: orders v1 and v2, priced from the catalog"
)]
pub struct Config {
    /// Flags every service takes.
    #[command(flatten)]
    pub server: kit::ServerArgs,
    /// Where the catalog listens.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:50051")]
    pub catalog_url: String,
    /// Longest wait for one catalog call.
    #[arg(long, value_name = "DURATION", value_parser = kit::duration::parse_duration, default_value = "2s")]
    pub catalog_timeout: Duration,
    /// Where payments listens (card tokens).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:50053")]
    pub payments_url: String,
    /// Where workflow listens (the place-order saga).
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:50056")]
    pub workflow_url: String,
    /// Longest wait for one payments or workflow call.
    #[arg(long, value_name = "DURATION", value_parser = kit::duration::parse_duration, default_value = "2s")]
    pub call_timeout: Duration,
}

impl kit::ServiceConfig for Config {
    const NAME: &'static str = "orders";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn server(&self) -> &kit::ServerArgs {
        &self.server
    }
}

/// Opens (and migrates) the orders database and builds the service.
pub async fn service(config: Config) -> Result<kit::Service, kit::BoxError> {
    let url = config.server.database_url("orders");
    let db_pool = kit_store::Pool::new(config.server.db_pool_size, config.server.db_timeout);
    let db = kit_store::connect_and_migrate_with::<migrations::Migrator>(&url, db_pool).await?;
    let tls = kit::tls::MeshTls::from_args(&config.server.tls)?;
    let upstream = |url: &str, timeout| kit::client::Upstream::with_tls(url, timeout, tls.as_ref());
    let upstreams = core::Upstreams {
        catalog: upstream(&config.catalog_url, config.catalog_timeout)?,
        payments: upstream(&config.payments_url, config.call_timeout)?,
        workflow: upstream(&config.workflow_url, config.call_timeout)?,
    };
    service_with(db, upstreams, &config.server).await
}

/// Who may call orders under mutual TLS: the gateway the customer-facing
/// services, the workflow's saga only fulfilment (confirm, fail).
pub const CALLERS: kit::authz::Callers = &[
    ("gateway", "ferrymesh.orders.v1.OrdersService/*"),
    ("gateway", "ferrymesh.orders.v2.OrdersService/*"),
    ("workflow", "ferrymesh.orders.v2.OrderFulfillmentService/*"),
];

/// The service over an open, migrated database and the services it calls;
/// starts the background starter of sagas that could not start at once.
pub async fn service_with(
    db: kit_store::Db,
    upstreams: core::Upstreams,
    args: &kit::ServerArgs,
) -> Result<kit::Service, kit::BoxError> {
    let core = Arc::new(core::Core::new(store::Store::new(db), upstreams));
    let starter = core.clone();
    tokio::spawn(async move { starter.start_pending_sagas().await });
    let max = args.max_message_bytes;
    Ok(kit::Service::new("orders")
        .callers(CALLERS)
        .serving(
            V1Server::new(api::v1::OrdersV1::new(core.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .serving(
            V2Server::new(api::v2::OrdersV2::new(core.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .serving(
            FulfillmentServer::new(api::v2::Fulfillment::new(core))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .reflect(pb::FILE_DESCRIPTOR_SET))
}
