//! The `ferrymesh` command: `up` runs the whole mesh locally; `serve` runs one service.

#![forbid(unsafe_code)]

mod audit_cmd;
mod audit_serve;
mod certs_cmd;
mod keys_cmd;
mod load;
mod mesh;
mod trace_cmd;
mod up;
mod up_flags;
mod up_process;
mod up_ready;
mod workflow_cmd;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Every service runs in this binary; glibc's malloc was a tenth of the
// gateway's and the saga's profiles, mimalloc a fraction of that.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "ferrymesh",
    version,
    about = "Run and operate the ferrymesh microservices"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start every service as its own process, wait until all are SERVING, stream their logs.
    Up(UpArgs),
    /// Generate load at a fixed arrival rate and report throughput and latency.
    Load(load::LoadArgs),
    /// Operate API keys: plans, developers and keys, usage, invoices.
    Keys(keys_cmd::KeysArgs),
    /// Make the mesh's CA and each service's certificate, for mutual TLS.
    Certs(certs_cmd::CertsArgs),
    /// Read workflow executions: list, describe, history, graph.
    Workflow(workflow_cmd::WorkflowArgs),
    /// Check every order against what its saga did in each service; exit 1
    /// naming each order whose stock, payment or shipment is not as it must be.
    Audit(audit_cmd::AuditArgs),
    /// Show a trace as a waterfall (by trace, order, execution or correlation
    /// id), or `map` for the service map, from the trace sink of `up --trace-sink`.
    Trace(trace_cmd::TraceArgs),
    /// Run one service in this process (what `up` starts for each service).
    Serve {
        /// The service to run.
        #[arg(value_parser = clap::builder::PossibleValuesParser::new(mesh::names()))]
        service: String,
        /// The service's own flags; see `ferrymesh serve SERVICE -- --help`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<OsString>,
    },
}

/// Flags of `ferrymesh up`.
#[derive(Debug, Clone, clap::Args)]
struct UpArgs {
    /// Where every service keeps its state (SQLite files).
    #[arg(
        long,
        value_name = "DIR",
        default_value = ".ferrymesh",
        env = "FERRYMESH_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Added to every default port, to run a second mesh beside the first.
    #[arg(long, value_name = "N", default_value_t = 0)]
    port_offset: u16,
    /// Log format of the services.
    #[arg(long, value_enum, default_value = "human")]
    log_format: kit::LogFormat,
    /// How long to wait for every service to answer SERVING, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    ready_timeout: u64,
    /// Passes a flag to one service, e.g.
    /// `--pass shipping=--fault=CreateShipment:latency=1s`; repeatable.
    #[arg(long, value_name = "SERVICE=FLAG", value_parser = parse_pass)]
    pass: Vec<(String, String)>,
    /// Sends every service's traces and metrics over OTLP/gRPC to this
    /// collector or Jaeger (v2 takes OTLP on 4317), e.g. http://127.0.0.1:4317.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Starts the trace sink (OTLP on port 4317), which keeps recent traces
    /// for `ferrymesh trace`; with --otlp-endpoint, it passes them on there.
    #[arg(long)]
    trace_sink: bool,
    /// Audits the mesh (as `ferrymesh audit`) every DURATION, e.g. 1m; the
    /// console's operations view shows the last report, and
    /// http://127.0.0.1:9190/report (plus --port-offset) serves it.
    #[arg(long, value_name = "DURATION", value_parser = kit::duration::parse_duration)]
    audit_every: Option<std::time::Duration>,
    /// Mutual TLS on every hop inside the mesh: makes the CA and every
    /// service's certificate in DATA_DIR/certs when missing (as `ferrymesh
    /// certs init` does) and gives each service its own. The gateway still
    /// serves its clients plaintext; the trace sink stays plaintext.
    #[arg(long)]
    tls: bool,
    /// Runs every service on this PostgreSQL server, each in a database of
    /// its own (PREFIX_SERVICE, created when missing), instead of SQLite
    /// files, e.g. postgres://postgres@127.0.0.1:5432/postgres.
    #[arg(long, value_name = "URL", env = "FERRYMESH_POSTGRES_URL")]
    postgres: Option<String>,
    /// The prefix of the databases --postgres makes.
    #[arg(long, value_name = "PREFIX", default_value = "ferrymesh")]
    postgres_prefix: String,
}

fn parse_pass(text: &str) -> Result<(String, String), String> {
    let (service, flag) = text.split_once('=').ok_or_else(|| {
        format!("`{text}` must be SERVICE=FLAG, e.g. shipping=--fault=CreateShipment:latency=1s")
    })?;
    if !mesh::names().contains(&service) {
        return Err(format!(
            "no service named {service}; the services are {}",
            mesh::names().join(", ")
        ));
    }
    Ok((service.to_string(), flag.to_string()))
}

fn in_runtime(work: impl std::future::Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(work),
        Err(error) => {
            eprintln!("ferrymesh: cannot start the Tokio runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { service, args } => {
            up_process::follow_parent();
            mesh::serve(&service, args)
        }
        Command::Up(args) => in_runtime(up::run(args)),
        Command::Workflow(args) => in_runtime(workflow_cmd::run(args)),
        Command::Audit(args) => in_runtime(audit_cmd::run(args)),
        Command::Keys(args) => in_runtime(keys_cmd::run(args)),
        Command::Load(args) => in_runtime(load::run(args)),
        Command::Trace(args) => in_runtime(trace_cmd::run(args)),
        Command::Certs(args) => certs_cmd::run(args),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// Every default address a command offers is where `up` puts a service
    /// (the flags' defaults are literals; this keeps them the table's).
    #[test]
    fn default_addresses_are_the_services_ports() {
        let ports: Vec<u16> = crate::mesh::SERVICES
            .iter()
            .chain([&crate::mesh::TRACE_SINK])
            .map(|s| s.port)
            .collect();
        let mut seen = 0;
        let mut pending = vec![super::Cli::command()];
        while let Some(command) = pending.pop() {
            for arg in command.get_arguments() {
                for default in arg.get_default_values() {
                    let text = default.to_string_lossy();
                    let Some(port) = text.strip_prefix("http://127.0.0.1:") else {
                        continue;
                    };
                    let port: u16 = port.parse().unwrap();
                    assert!(
                        ports.contains(&port),
                        "{} --{}: {text}",
                        command.get_name(),
                        arg.get_id()
                    );
                    seen += 1;
                }
            }
            pending.extend(command.get_subcommands().cloned());
        }
        assert!(seen >= 6, "{seen} default addresses");
    }
}
