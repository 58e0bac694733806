//! The shipping service binary.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    kit::server::main::<shipping::Config, _, _>(std::env::args_os().collect(), shipping::service)
}
