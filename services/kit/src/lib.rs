//! The serving runtime every ferrymesh service stands on: config, telemetry,
//! server bootstrap, outgoing calls, deadlines, errors and fault injection.
//!
//! It links no database driver, so the gateway can stand on it too; storage
//! is `kit-store`, the shared value types are `kit-values`, the test harness
//! is `kit-testing`. No domain code lives here.

#![forbid(unsafe_code)]

pub mod authz;
pub mod backoff;
pub mod balance;
pub mod client;
pub mod config;
pub mod deadline;
pub mod duration;
pub mod error;
pub mod fault;
pub mod identity;
pub mod metrics;
pub mod rpc_telemetry;
pub mod sampling;
pub mod server;
pub mod telemetry;
pub mod tls;

pub use config::{LogFormat, ServerArgs, ServiceConfig};
pub use server::{Running, Service};

/// Errors that cross the kit's boundaries, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;
