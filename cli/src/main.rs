//! The `ferrymesh` command: `up` runs the whole mesh locally; `serve` runs one service.

#![forbid(unsafe_code)]

mod mesh;
mod up;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { service, args } => mesh::serve(&service, args),
        Command::Up(args) => match tokio::runtime::Runtime::new() {
            Ok(runtime) => runtime.block_on(up::run(args)),
            Err(error) => {
                eprintln!("ferrymesh: cannot start the Tokio runtime: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
