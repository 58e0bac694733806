//! The payments service binary.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    kit::server::main::<payments::Config, _, _>(std::env::args_os().collect(), payments::service)
}
