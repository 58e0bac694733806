//! Runs the workflow service.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    kit::server::main::<workflow::Config, _, _>(std::env::args_os().collect(), workflow::service)
}
