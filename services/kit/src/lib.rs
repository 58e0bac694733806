//! What every ferrymesh service stands on: config, telemetry, server bootstrap,
//! database, errors and fault injection. No domain code lives here.

#![forbid(unsafe_code)]

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

pub use config::{LogFormat, ServerArgs, ServiceConfig};
pub use error::Violations;
pub use server::{Running, Service};

/// Errors that cross the kit's boundaries, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
