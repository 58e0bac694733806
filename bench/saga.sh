#!/usr/bin/env bash
# The place-order saga under load: `ferrymesh up` (release build, SQLite)
# and `ferrymesh load place-order` at rising fixed arrival rates, each for a
# few seconds on a fresh mesh. Prints, per rate, completed sagas per second,
# saga latency p50/p99 (from PlaceOrder sent to the final status seen by
# WatchOrder) and state transitions per second, then the same for the
# engine alone: a 10-state Pass machine started as fast as workflow takes it.
#
#   bash bench/saga.sh                     # rates 50 100 200 300 500, 10s each
#   RATES="100 200" SECONDS_PER=5 bash bench/saga.sh
#
# Outside the test suite: numbers depend on the machine. Only loopback.
set -euo pipefail

RATES="${RATES:-50 100 200 300 500}"
SECONDS_PER="${SECONDS_PER:-10}"
OFFSET="${OFFSET:-6000}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo build --release -q -p ferrymesh
bin="$root/target/release/ferrymesh"
export FERRYMESH_ORDERS_URL="http://127.0.0.1:$((50055 + OFFSET))"
export FERRYMESH_WORKFLOW_URL="http://127.0.0.1:$((50056 + OFFSET))"
export FERRYMESH_INVENTORY_URL="http://127.0.0.1:$((50052 + OFFSET))"

up_pid=""
data=""
start_mesh() {
  data="$(mktemp -d)"
  "$bin" up --data-dir "$data" --port-offset "$OFFSET" >"$data/up.log" 2>&1 &
  up_pid=$!
  for _ in $(seq 1 120); do
    grep -q "all services are SERVING" "$data/up.log" && return 0
    sleep 0.5
  done
  cat "$data/up.log" >&2
  return 1
}
stop_mesh() {
  [ -n "$up_pid" ] && kill "$up_pid" 2>/dev/null && wait "$up_pid" 2>/dev/null || true
  [ -n "$data" ] && rm -rf "$data"
  up_pid=""
}
trap stop_mesh EXIT

printf '%-8s %12s %10s %10s %10s %14s %8s\n' "rate/s" "completed/s" "p50 ms" "p90 ms" "p99 ms" "transitions/s" "errors"
for rate in $RATES; do
  start_mesh
  out="$("$bin" load place-order --rate "$rate" --duration "${SECONDS_PER}s" --drain 60s --json 2>/dev/null || true)"
  python3 - "$rate" "$out" <<'EOF'
import json, sys
rate, text = sys.argv[1], sys.argv[2]
r = json.loads(text)
errors = sum(r["errors"].values()) + r["unfinished"]
l = r["latency_ms"]
print(f'{rate:<8} {r["completed_per_second"]:>12.1f} {l["p50"]:>10.1f} {l["p90"]:>10.1f} {l["p99"]:>10.1f} '
      f'{(r["state_transitions_per_second"] or 0):>14.0f} {errors:>8}')
EOF
  stop_mesh
done

echo
echo "the engine alone: executions of 10 Pass states, 64 StartExecution calls at once"
start_mesh
"$bin" load transitions --executions 3000 --concurrency 64 --states 10 || true
stop_mesh
