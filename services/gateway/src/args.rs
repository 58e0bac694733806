//! The gateway's flags.

use std::path::PathBuf;
use std::time::Duration;

use crate::DEFAULT_PORT;

/// The gateway's flags.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "gateway",
    about = "ferrymesh gateway: the public endpoint, with keys, throttling, quotas, stages, canaries and metering"
)]
pub struct Config {
    /// Flags every service takes.
    #[command(flatten)]
    pub server: kit::ServerArgs,
    /// The configuration file (TOML: public methods, stages, routes,
    /// canaries, limits); reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The apikeys service.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:50057")]
    pub apikeys_url: String,
    /// apikeys' admin token [default: read from DATA_DIR/admin-token].
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// Longest wait for apikeys on a key's first call.
    #[arg(long, value_name = "DURATION", value_parser = kit::duration::parse_duration, default_value = "2s")]
    pub apikeys_timeout: Duration,
    /// Most concurrent calls on one client connection (HTTP/2 streams).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    pub max_streams_per_connection: u32,
    /// Most headers (metadata entries) on one call; more is INVALID_ARGUMENT.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_headers: usize,
    /// Largest header block of one call, in bytes (HTTP/2 SETTINGS_MAX_HEADER_LIST_SIZE).
    #[arg(long, value_name = "BYTES", default_value_t = 16 * 1024)]
    pub max_header_bytes: u32,
    /// Calls one connection may make per second, counted before any key
    /// is checked; more is RESOURCE_EXHAUSTED with RetryInfo. 0 for no limit.
    #[arg(long, value_name = "N", default_value_t = 5000)]
    pub connection_rate: u32,
    /// Calls one connection may make at once above --connection-rate.
    #[arg(long, value_name = "N", default_value_t = 10000)]
    pub connection_burst: u32,
    /// Longest wait for the next piece of a request body; a client that
    /// stalls longer gets DEADLINE_EXCEEDED.
    #[arg(long, value_name = "DURATION", value_parser = kit::duration::parse_duration, default_value = "30s")]
    pub body_timeout: Duration,
    /// A new connection that has not sent a call within this is closed.
    #[arg(long, value_name = "DURATION", value_parser = kit::duration::parse_duration, default_value = "10s")]
    pub first_call_timeout: Duration,
    /// The certificate (PEM) the gateway shows its clients; with
    /// --public-tls-key its port serves TLS only (HTTP/2 by ALPN). Reloaded
    /// when it changes. Without it the port is plaintext (h2c).
    #[arg(long, value_name = "FILE", requires = "public_tls_key")]
    pub public_tls_cert: Option<PathBuf>,
    /// The private key of --public-tls-cert (PEM).
    #[arg(long, value_name = "FILE", requires = "public_tls_cert")]
    pub public_tls_key: Option<PathBuf>,
    /// A connection with no call in flight for this long is closed.
    #[arg(long, value_name = "DURATION", value_parser = kit::duration::parse_duration, default_value = "5m")]
    pub idle_timeout: Duration,
    /// Threads serving calls, each with its own listening socket
    /// [default: one per core].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// A service the console's operations view shows, as NAME=URL of its
    /// Prometheus metrics (its admin port, which also answers gRPC health);
    /// a host name that resolves to several addresses is several replicas.
    /// Repeatable, or separated by commas.
    #[arg(long = "metrics-target", value_name = "NAME=URL", value_parser = parse_target, value_delimiter = ',')]
    pub metrics_targets: Vec<(String, String)>,
    /// The directory of the mesh's logs (`NAME.log`, as `ferrymesh up`
    /// writes them), searched by correlation id in the console.
    #[arg(long, value_name = "DIR")]
    pub logs_dir: Option<PathBuf>,
    /// Jaeger's UI (e.g. http://127.0.0.1:16686), for the console's links to a trace.
    #[arg(long, value_name = "URL")]
    pub jaeger_url: Option<String>,
    /// Where `ferrymesh audit --every` serves its last report (e.g.
    /// http://127.0.0.1:9190), for the console's operations view.
    #[arg(long, value_name = "URL")]
    pub audit_url: Option<String>,
}

fn parse_target(text: &str) -> Result<(String, String), String> {
    let (name, url) = text.split_once('=').ok_or_else(|| {
        format!("metrics target `{text}` must be NAME=URL, e.g. catalog=http://127.0.0.1:51051/metrics")
    })?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "metrics target `{text}`: the name must be letters, digits, - or _"
        ));
    }
    if !url.starts_with("http://") {
        return Err(format!(
            "metrics target `{text}`: the URL must start with http://"
        ));
    }
    Ok((name.to_string(), url.to_string()))
}

impl kit::ServiceConfig for Config {
    const NAME: &'static str = "gateway";
    const DEFAULT_PORT: u16 = DEFAULT_PORT;

    fn server(&self) -> &kit::ServerArgs {
        &self.server
    }
}
