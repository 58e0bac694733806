//! The inventory service binary.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    kit::server::main::<inventory::Config, _, _>(std::env::args_os().collect(), inventory::service)
}
