//! The trace sink binary.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    kit::server::main::<tracesink::Config, _, _>(std::env::args_os().collect(), tracesink::service)
}
