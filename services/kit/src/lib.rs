//! What every ferrymesh service stands on: config, telemetry, server bootstrap,
//! database, errors and fault injection. No domain code lives here.

#![forbid(unsafe_code)]

pub mod client;
pub mod config;
pub mod db;
pub mod error;
pub mod fault;
pub mod paging;
pub mod rpc_telemetry;
pub mod server;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod values;

/// The shared value types of `ferrymesh.common.v1`, used by every service.
#[allow(unreachable_pub, missing_docs)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/ferrymesh.rs"));
}

pub use config::{LogFormat, ServerArgs, ServiceConfig};
pub use error::Violations;
pub use server::{Running, Service};

/// Errors that cross the kit's boundaries, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
