//! The catalog service binary.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    kit::server::main::<catalog::Config, _, _>(std::env::args_os().collect(), catalog::service)
}
