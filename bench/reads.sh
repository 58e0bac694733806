#!/usr/bin/env bash
# Reads that scale: h2load against one catalog process and one inventory
# process (SQLite, as `ferrymesh up` runs them), each read RPC side by side
# with grpc.health.v1.Health/Check on the same process, in one run.
# Prints each one's req/s and its ratio to Health/Check.
#
#   bash bench/reads.sh            # 3 rounds of 5s per target
#   ROUNDS=1 SECONDS_PER=3 bash bench/reads.sh
#
# Outside the test suite: numbers depend on the machine; the ratios are what
# to compare. Installs h2load (Debian's nghttp2-client) when it is missing.
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
SECONDS_PER="${SECONDS_PER:-5}"
CLIENTS="${CLIENTS:-8}"
STREAMS="${STREAMS:-16}"
LOG_LEVEL="${LOG_LEVEL:-info}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v h2load >/dev/null; then
  echo "bench: installing h2load (nghttp2-client)" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq nghttp2-client >&2
  else sudo apt-get update -qq && sudo apt-get install -y -qq nghttp2-client >&2; fi
fi

cargo build --release -q -p ferrymesh
bin="$root/target/release/ferrymesh"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# gRPC frames: a zero flag byte, a 4-byte length, the protobuf message.
printf '\x00\x00\x00\x00\x00' > "$work/health.bin"                         # HealthCheckRequest{}
printf '\x00\x00\x00\x00\x05\x0a\x03mug' > "$work/get-product.bin"         # GetProductRequest{product_id: "mug"}
printf '\x00\x00\x00\x00\x05\x0a\x03mug' > "$work/get-stock.bin"           # GetStockRequest{skus: ["mug"]}

start() { # name port
  "$bin" serve "$1" --listen "127.0.0.1:$2" --data-dir "$work/data" --log-level "$LOG_LEVEL" \
    >"$work/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return; fi
    sleep 0.1
  done
  echo "bench: $1 did not start:" >&2; cat "$work/$1.log" >&2; exit 1
}
start catalog 47051
start inventory 47052

rate() { # port path body -> req/s
  h2load -D "$SECONDS_PER" --warm-up-time=1 -c "$CLIENTS" -m "$STREAMS" -t 1 \
    -d "$3" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://127.0.0.1:$1$2" 2>&1 |
    awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($i ~ /req\/s/) { gsub(",", "", $(i-1)); print $(i-1) } }
         /^requests:/ { failed = $10 } END { if (failed != "" && failed + 0 > 0) print "bench: " failed " requests failed" > "/dev/stderr" }'
}

declare -A total
targets=(
  "catalog Health/Check|47051|/grpc.health.v1.Health/Check|$work/health.bin"
  "catalog GetProduct|47051|/ferrymesh.catalog.v1.CatalogService/GetProduct|$work/get-product.bin"
  "inventory Health/Check|47052|/grpc.health.v1.Health/Check|$work/health.bin"
  "inventory GetStock|47052|/ferrymesh.inventory.v1.InventoryService/GetStock|$work/get-stock.bin"
)
echo "h2load -c$CLIENTS -m$STREAMS, ${SECONDS_PER}s per target, $ROUNDS rounds interleaved, log level $LOG_LEVEL, $(nproc) cores" >&2
for round in $(seq 1 "$ROUNDS"); do
  for target in "${targets[@]}"; do
    IFS='|' read -r name port path body <<<"$target"
    r="$(rate "$port" "$path" "$body")"
    echo "  round $round  $name: $r req/s" >&2
    total[$name]="$(awk -v a="${total[$name]:-0}" -v b="$r" 'BEGIN { print a + b }')"
  done
done

if grep -h "panicked" "$work"/*.log >&2; then echo "bench: a service panicked" >&2; exit 1; fi

mean() { awk -v t="${total[$1]}" -v n="$ROUNDS" 'BEGIN { printf "%.0f", t / n }'; }
ratio() { awk -v a="$(mean "$1")" -v b="$(mean "$2")" 'BEGIN { printf "%.2f", a / b }'; }
printf '\n%-24s %10s %16s\n' "target" "req/s" "vs Health/Check"
printf '%-24s %10s %16s\n' "catalog Health/Check" "$(mean 'catalog Health/Check')" "1.00"
printf '%-24s %10s %16s   (target >= 0.70)\n' "catalog GetProduct" "$(mean 'catalog GetProduct')" "$(ratio 'catalog GetProduct' 'catalog Health/Check')"
printf '%-24s %10s %16s\n' "inventory Health/Check" "$(mean 'inventory Health/Check')" "1.00"
printf '%-24s %10s %16s   (target >= 0.30)\n' "inventory GetStock" "$(mean 'inventory GetStock')" "$(ratio 'inventory GetStock' 'inventory Health/Check')"
