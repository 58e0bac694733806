#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 300) with libFuzzer, outside
# the test suite: `bash fuzz/run.sh 600`. Installs cargo-fuzz when missing.
# The stable toolchain builds the instrumented binaries with
# RUSTC_BOOTSTRAP=1 and no sanitizer (`-s none`: Rust code is memory safe;
# the fuzzer looks for panics, hangs and broken invariants). A finding is
# written to fuzz/artifacts/TARGET/ and the script exits non-zero.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
seconds="${1:-300}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
status=0
for target in gateway_request gateway_grpc_web workflow_definition; do
  mkdir -p "target/corpus/$target"
  echo "==> $target for ${seconds}s" >&2
  if ! cargo fuzz run -s none --release "$target" "target/corpus/$target" "corpus/$target" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1; then
    status=1
  fi
done
exit "$status"
