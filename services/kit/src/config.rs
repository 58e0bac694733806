//! Flags with environment fallbacks, the same for every service.
//!
//! Every flag `--some-flag` of a service named `catalog` can also be set as
//! `FERRYMESH_CATALOG_SOME_FLAG`; a flag on the command line wins.

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::duration::parse_duration;
use crate::fault::FaultRule;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, with trace_id and span_id, for log pipelines.
    Json,
}

/// The flags every service takes.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address to listen on [default: 127.0.0.1 and the service's own port]; port 0 picks a free one.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Directory for local state (SQLite files).
    #[arg(long, value_name = "DIR", default_value = ".ferrymesh")]
    pub data_dir: PathBuf,
    /// Database URL, sqlite://FILE or postgres://... [default: a SQLite file in the data directory].
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// PostgreSQL connections this process may hold (plus one, briefly, to
    /// migrate): the budget is this times the replicas at their most, per
    /// service, within the server's max_connections. SQLite is not pooled
    /// this way (one writer, its readers).
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_pool_size: u32,
    /// How long to wait to connect to the database, or for a free
    /// connection of the pool, before the call fails UNAVAILABLE.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    pub db_timeout: Duration,
    /// Log line format.
    #[arg(long, value_enum, default_value = "human")]
    pub log_format: LogFormat,
    /// Log filter, in RUST_LOG syntax.
    #[arg(long, value_name = "FILTER", default_value = "info")]
    pub log_level: String,
    /// Largest request or response message, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 4 * 1024 * 1024)]
    pub max_message_bytes: usize,
    /// Most calls handled at once; further calls wait.
    #[arg(long, value_name = "N", default_value_t = 512)]
    pub concurrency_limit: usize,
    /// On SIGTERM, how long to keep serving with health NOT_SERVING before
    /// refusing new calls, so load balancers can stop sending (e.g. 5s in Kubernetes).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "0s")]
    pub drain_delay: Duration,
    /// Longest a call may be handled before it is answered DEADLINE_EXCEEDED,
    /// when the caller's own `grpc-timeout` is not shorter.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "60s")]
    pub handler_timeout: Duration,
    /// On SIGTERM, how long in-flight calls may take to finish.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    pub shutdown_timeout: Duration,
    /// Inject a fault, for demos and tests: METHOD:latency=DURATION,error_rate=P[,code=CODE].
    /// METHOD is `*`, `Method`, `package.Service/Method` or `package.Service/*`.
    /// Repeat the flag, or separate rules with `;` in the environment.
    #[arg(long, value_name = "RULE", value_delimiter = ';')]
    pub fault: Vec<FaultRule>,
    /// Where to serve Prometheus metrics (`GET /metrics`) [default: the
    /// listen address with its port + 1000, e.g. 51051 for 50051]; `off` for none.
    #[arg(long, value_name = "ADDR|off")]
    pub admin_listen: Option<AdminListen>,
    /// Traces that start here kept each second before --trace-rate applies
    /// (X-Ray's reservoir). OTEL_TRACES_SAMPLER, when set, replaces this rule.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub trace_reservoir: u32,
    /// Share of the further traces that start here which are kept, 0 to 1.
    #[arg(long, value_name = "RATE", value_parser = crate::sampling::parse_rate, default_value = "0.05")]
    pub trace_rate: f64,
    /// Mutual TLS inside the mesh.
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
}

/// Where the admin (metrics) port listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminListen {
    /// No admin port.
    Off,
    /// This address.
    At(SocketAddr),
}

impl std::str::FromStr for AdminListen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("off") {
            return Ok(AdminListen::Off);
        }
        text.trim()
            .parse()
            .map(AdminListen::At)
            .map_err(|_| format!("{text:?} is not an address: give HOST:PORT, e.g. 127.0.0.1:51051, or off"))
    }
}

impl ServerArgs {
    /// The listen address, or loopback on `default_port`.
    pub fn listen_addr(&self, default_port: u16) -> SocketAddr {
        self.listen
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, default_port)))
    }

    /// Where the admin port listens, given where gRPC listens: the flag, or
    /// the same host with the port + 1000 (port 0 stays 0).
    pub fn admin_addr(&self, grpc: SocketAddr) -> Option<SocketAddr> {
        match self.admin_listen {
            Some(AdminListen::Off) => None,
            Some(AdminListen::At(addr)) => Some(addr),
            None => {
                let port = match grpc.port() {
                    0 => 0,
                    p => p.checked_add(1000)?,
                };
                Some(SocketAddr::new(grpc.ip(), port))
            }
        }
    }

    /// The database URL, or a SQLite file named after the service in the data directory.
    pub fn database_url(&self, service: &str) -> String {
        match &self.database_url {
            Some(url) => url.clone(),
            None => format!("sqlite://{}/{service}.db?mode=rwc", self.data_dir.display()),
        }
    }

    /// Arguments for running in tests: port 0, a given database, no faults.
    pub fn for_tests(database_url: impl Into<String>) -> Self {
        ServerArgs {
            listen: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))),
            data_dir: std::env::temp_dir(),
            database_url: Some(database_url.into()),
            db_pool_size: 16,
            db_timeout: Duration::from_secs(10),
            log_format: LogFormat::Human,
            log_level: "info".into(),
            max_message_bytes: 4 * 1024 * 1024,
            concurrency_limit: 512,
            drain_delay: Duration::ZERO,
            handler_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            fault: Vec::new(),
            admin_listen: Some(AdminListen::Off),
            trace_reservoir: 1,
            trace_rate: 0.05,
            tls: crate::tls::TlsArgs::default(),
        }
    }
}

/// The admin token of the mesh, kept in `DATA_DIR/admin-token` (mode 0600)
/// and made there when missing: apikeys checks it, the gateway and the
/// `ferrymesh keys` commands send it.
pub fn admin_token_file(data_dir: &std::path::Path) -> Result<String, crate::BoxError> {
    let path = data_dir.join("admin-token");
    match std::fs::read_to_string(&path) {
        Ok(token) if !token.trim().is_empty() => return Ok(token.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display()).into()),
    }
    std::fs::create_dir_all(data_dir)?;
    let token = format!("fma_{}", uuid::Uuid::new_v4().simple());
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(&path) {
        Ok(mut file) => {
            std::io::Write::write_all(&mut file, token.as_bytes())?;
            Ok(token)
        }
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(std::fs::read_to_string(&path)?.trim().to_string())
        }
        Err(e) => Err(format!("cannot write {}: {e}", path.display()).into()),
    }
}

/// A service's whole configuration: its own flags plus the shared [`ServerArgs`].
pub trait ServiceConfig: clap::Parser + Send + 'static {
    /// The service's name, as in `FERRYMESH_<NAME>_...` and `service.name`.
    const NAME: &'static str;
    /// The port the service listens on by default.
    const DEFAULT_PORT: u16;
    /// The shared flags.
    fn server(&self) -> &ServerArgs;
}

/// Parses a service's flags from `args` (the first item is the program name),
/// falling back to `FERRYMESH_<SERVICE>_<FLAG>` environment variables.
pub fn parse_from<C, I, T>(args: I) -> Result<C, clap::Error>
where
    C: ServiceConfig,
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let prefix = format!("FERRYMESH_{}_", C::NAME.to_uppercase());
    let command = C::command().mut_args(|arg| {
        let id = arg.get_id().as_str();
        if id == "help" || id == "version" || arg.is_positional() {
            return arg;
        }
        let env = format!("{prefix}{}", id.to_uppercase().replace('-', "_"));
        arg.env(env)
    });
    let matches = command.try_get_matches_from(args)?;
    C::from_arg_matches(&matches)
}
