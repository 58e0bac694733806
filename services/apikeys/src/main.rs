//! The apikeys service binary.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    kit::server::main::<apikeys::Config, _, _>(std::env::args_os().collect(), apikeys::service)
}
