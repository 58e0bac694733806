//! The apikeys service: usage plans, developers, API keys stored as keyed
//! hashes, usage metering and invoices. `ApiKeysService` is for operators
//! (and the gateway) behind an admin token; `DeveloperPortalService` is the
//! self-service face the gateway exposes.

#![forbid(unsafe_code)]

mod api;
pub mod domain;
pub mod migrations;
pub mod store;

/// Generated code of the contracts this service serves.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/ferrymesh.rs"));
}

use pb::ferrymesh::apikeys::v1::api_keys_service_server::ApiKeysServiceServer;
use pb::ferrymesh::apikeys::v1::developer_portal_service_server::DeveloperPortalServiceServer;

/// The apikeys default port.
pub const DEFAULT_PORT: u16 = 50057;

/// The apikeys flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "apikeys",
    about = "ferrymesh apikeys service: usage plans, hashed API keys, metering and invoices"
)]
pub struct Config {
    /// Flags every service takes.
    #[command(flatten)]
    pub server: kit::ServerArgs,
    /// The token operators and the gateway send as `authorization: Bearer TOKEN`
    /// [default: read from DATA_DIR/admin-token, made there at first start].
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// The plan self-registered developers start on; made with free-tier
    /// limits (10 rps, burst 20, 10000 calls a day) when it does not exist.
    #[arg(long, value_name = "PLAN_ID", default_value = "free")]
    pub default_plan: String,
    /// The 32-byte key, as 64 hex digits, that secrets are hashed with
    /// [default: one made at first start and kept in the database].
    #[arg(long, value_name = "HEX")]
    pub secret_hash_key: Option<String>,
}

impl kit::ServiceConfig for Config {
    const NAME: &'static str = "apikeys";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn server(&self) -> &kit::ServerArgs {
        &self.server
    }
}

/// Opens (and migrates) the apikeys database and builds the service.
pub async fn service(config: Config) -> Result<kit::Service, kit::BoxError> {
    let url = config.server.database_url("apikeys");
    let db_pool = kit_store::Pool::new(config.server.db_pool_size, config.server.db_timeout);
    let db = kit_store::connect_and_migrate_with::<migrations::Migrator>(&url, db_pool).await?;
    service_with(db, &config).await
}

/// Who may call apikeys under mutual TLS: the gateway, which validates
/// keys, follows changes and records usage (the admin service, with the
/// admin token as well), and passes the developer portal through.
pub const CALLERS: kit::authz::Callers = &[
    ("gateway", "ferrymesh.apikeys.v1.ApiKeysService/*"),
    ("gateway", "ferrymesh.apikeys.v1.DeveloperPortalService/*"),
];

/// The service over an open, migrated database.
pub async fn service_with(db: kit_store::Db, config: &Config) -> Result<kit::Service, kit::BoxError> {
    let hash_key = match &config.secret_hash_key {
        None => None,
        Some(text) => {
            let bytes = hex::decode(text).map_err(|e| format!("--secret-hash-key is not hex: {e}"))?;
            Some(
                <[u8; 32]>::try_from(bytes.as_slice())
                    .map_err(|_| "--secret-hash-key must be 64 hex digits (32 bytes)")?,
            )
        }
    };
    let token = match &config.admin_token {
        Some(token) if token.len() >= 16 => token.clone(),
        Some(_) => return Err("--admin-token must be at least 16 characters".into()),
        None => {
            let token = kit::config::admin_token_file(&config.server.data_dir)?;
            tracing::info!(
                file = %config.server.data_dir.join("admin-token").display(),
                "the admin token is in the data directory"
            );
            token
        }
    };
    let mut v = kit_values::Violations::new();
    domain::check_slug("--default-plan", &config.default_plan, &mut v);
    if !v.is_empty() {
        return Err(format!("{v}").into());
    }
    let store = store::Store::open(db, hash_key).await?;
    store
        .ensure_plan(&domain::Plan::free(&config.default_plan))
        .await?;
    let max = config.server.max_message_bytes;
    Ok(kit::Service::new("apikeys")
        .callers(CALLERS)
        .serving(
            ApiKeysServiceServer::new(api::ApiKeysApi::new(store.clone(), api::AdminAuth::new(&token)))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .serving(
            DeveloperPortalServiceServer::new(api::PortalApi::new(store, config.default_plan.clone()))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .reflect(pb::FILE_DESCRIPTOR_SET))
}
