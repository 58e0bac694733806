//! The trace sink: traces without Jaeger. It takes spans over OTLP/gRPC,
//! keeps the most recent ones in bounded memory, and answers for a trace
//! (by trace, order, execution or correlation id) and for the service map.
//! Optionally it passes every span on to a collector or Jaeger.

#![forbid(unsafe_code)]

mod api;
pub mod store;

/// Generated code of the contract this service serves.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/ferrymesh.rs"));
}

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
use pb::ferrymesh::traces::v1::traces_service_server::TracesServiceServer;

/// The trace sink's default port: OTLP/gRPC's, as Jaeger and collectors use.
pub const DEFAULT_PORT: u16 = 4317;

/// The trace sink's flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "tracesink",
    about = "ferrymesh trace sink: takes spans over OTLP, keeps recent traces, answers for traces and the service map"
)]
pub struct Config {
    /// Flags every service takes.
    #[command(flatten)]
    pub server: kit::ServerArgs,
    /// The most spans kept; the oldest go first.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub max_spans: usize,
    /// Passes every span on to this OTLP/gRPC endpoint too (a collector or
    /// Jaeger, e.g. http://127.0.0.1:4317).
    #[arg(long, value_name = "URL")]
    pub forward: Option<String>,
}

impl kit::ServiceConfig for Config {
    const NAME: &'static str = "tracesink";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn server(&self) -> &kit::ServerArgs {
        &self.server
    }
}

/// Builds the service.
pub async fn service(config: Config) -> Result<kit::Service, kit::BoxError> {
    let store = std::sync::Arc::new(store::Store::new(config.max_spans));
    let forward = match &config.forward {
        Some(url) => Some(api::Forwarder::start(url)?),
        None => None,
    };
    let max = config.server.max_message_bytes;
    Ok(kit::Service::new("tracesink")
        .serving(
            TraceServiceServer::new(api::Receiver::new(store.clone(), forward))
                .max_decoding_message_size(max),
        )
        .serving(
            TracesServiceServer::new(api::TracesApi::new(store))
                .max_decoding_message_size(max)
                .max_encoding_message_size(max),
        )
        .reflect(pb::FILE_DESCRIPTOR_SET))
}
