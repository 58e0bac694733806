//! The gateway binary.

#![forbid(unsafe_code)]

fn main() -> std::process::ExitCode {
    gateway::main(std::env::args_os().collect())
}
