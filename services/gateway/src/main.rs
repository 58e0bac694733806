//! The gateway binary.

#![forbid(unsafe_code)]

// glibc's malloc, not the mimalloc `ferrymesh` uses: in the gateway,
// mimalloc gave 4% more throughput for twice the peak RSS (README,
// Performance).

fn main() -> std::process::ExitCode {
    gateway::main(std::env::args_os().collect())
}
