//! The orders service binary.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    kit::server::main::<orders::Config, _, _>(std::env::args_os().collect(), orders::service)
}
