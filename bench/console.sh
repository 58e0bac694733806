#!/usr/bin/env bash
# What serving the console costs gRPC calls: the gateway of a base revision
# (before the console, gRPC-Web and HTTP/1.1 on its port) against this
# tree's, side by side in one run, on one catalog and one apikeys, with the
# same key. h2load drives GetProduct with a key through each in turn, in
# ABBA order, and the script prints requests/s, mean latency and CPU seconds
# per 1,000 calls of each, their ratios (after / before), and each
# gateway's peak RSS.
#
#   bash bench/console.sh                       # base 71c766a, 4 rounds of 5 s
#   BASE=<rev> ROUNDS=8 SECONDS_PER=3 bash bench/console.sh
#
# The base is built once with `git worktree` into target/bench-base (a
# release build: minutes). Outside the test suite; installs h2load from
# Debian when missing. Only loopback addresses; stops by itself.
set -euo pipefail

BASE="${BASE:-71c766a}"
ROUNDS="${ROUNDS:-4}"
SECONDS_PER="${SECONDS_PER:-5}"
CLIENTS="${CLIENTS:-8}"
STREAMS="${STREAMS:-16}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
if ! command -v h2load >/dev/null; then
  echo "bench: installing h2load (nghttp2-client)" >&2
  apt-get update -qq && apt-get install -y -qq nghttp2-client >&2
fi

cargo build --release -q -p ferrymesh -p gateway
bin="$root/target/release/ferrymesh"
after_bin="$root/target/release/gateway"
base_dir="$root/target/bench-base"
before_bin="$base_dir/release/gateway"
if [ ! -x "$before_bin" ] || [ "$(cat "$base_dir/rev" 2>/dev/null)" != "$BASE" ]; then
  echo "bench: building the gateway of $BASE (once)" >&2
  tree="$(mktemp -d)/base"
  git worktree add -q --detach "$tree" "$BASE"
  (cd "$tree" && cargo build --release -q -p gateway --target-dir "$base_dir")
  git worktree remove --force "$tree"
  echo "$BASE" >"$base_dir/rev"
fi

work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

TOKEN="bench-admin-token-$(date +%s)"
CATALOG=48151 APIKEYS=48157 BEFORE=48181 AFTER=48182
wait_port() { # name port
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return; fi
    sleep 0.05
  done
  echo "bench: $1 did not start:" >&2; cat "$work/$1.log" >&2 || true; exit 1
}
OFF=(env OTEL_TRACES_SAMPLER=always_off)
"${OFF[@]}" "$bin" serve catalog --listen "127.0.0.1:$CATALOG" --data-dir "$work/data" >"$work/catalog.log" 2>&1 &
pids+=($!)
wait_port catalog "$CATALOG"
"$bin" serve apikeys --listen "127.0.0.1:$APIKEYS" --data-dir "$work/data" --admin-token "$TOKEN" >"$work/apikeys.log" 2>&1 &
pids+=($!)
wait_port apikeys "$APIKEYS"
printf 'public = ["ferrymesh.catalog.v1.*"]\n[stages.prod.routes]\n"ferrymesh.catalog.v1" = "http://127.0.0.1:%s"\n' \
  "$CATALOG" >"$work/gateway.toml"
declare -A pid_of
for side in before after; do
  if [ "$side" = before ]; then gw="$before_bin" port="$BEFORE"; else gw="$after_bin" port="$AFTER"; fi
  "${OFF[@]}" "$gw" --listen "127.0.0.1:$port" --data-dir "$work/data" --config "$work/gateway.toml" \
    --apikeys-url "http://127.0.0.1:$APIKEYS" --admin-token "$TOKEN" >"$work/gateway-$side.log" 2>&1 &
  pids+=($!)
  pid_of[$side]="${pids[-1]}"
  wait_port "gateway-$side" "$port"
done

keys() { FERRYMESH_ADMIN_TOKEN="$TOKEN" "$bin" keys --address "http://127.0.0.1:$APIKEYS" "$@"; }
keys create-plan bench --rate 1000000 --burst 1000000 --quota 1000000000000 --period day >/dev/null
KEY="$(keys issue bench --email bench@example.com --plan bench --count 1 | tail -1)"
printf '\x00\x00\x00\x00\x05\x0a\x03mug' >"$work/get-product.bin" # GetProductRequest{product_id: "mug"}
URL_PATH=/ferrymesh.catalog.v1.CatalogService/GetProduct

ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
declare -A reqs secs cpu lat
for side in before after; do reqs[$side]=0 secs[$side]=0 cpu[$side]=0 lat[$side]=0; done
run() { # side
  local side="$1" port
  if [ "$side" = before ]; then port="$BEFORE"; else port="$AFTER"; fi
  local t0; t0="$(ticks "${pid_of[$side]}")"
  h2load -D "$SECONDS_PER" -c "$CLIENTS" -m "$STREAMS" -t 1 -d "$work/get-product.bin" \
    -H 'content-type: application/grpc' -H 'te: trailers' -H "x-api-key: $KEY" \
    "http://127.0.0.1:$port$URL_PATH" >"$work/h2load.out" 2>&1
  local t1; t1="$(ticks "${pid_of[$side]}")"
  local done_; done_="$(awk '/^requests:/ { print $8 }' "$work/h2load.out")"
  local mean; mean="$(awk '/^time for request:/ { v = $6; if (v ~ /ms$/) { sub("ms", "", v); v *= 1000 } else if (v ~ /us$/) sub("us", "", v); print v }' "$work/h2load.out")"
  local ok; ok="$(awk '/^status codes:/ { print $3 }' "$work/h2load.out")"
  [ "$ok" = "$done_" ] || echo "bench: $side: $((done_ - ok)) answers were not HTTP 200" >&2
  reqs[$side]=$((reqs[$side] + done_))
  secs[$side]=$((secs[$side] + SECONDS_PER))
  cpu[$side]=$((cpu[$side] + t1 - t0))
  lat[$side]="$(awk -v a="${lat[$side]}" -v b="$mean" 'BEGIN { print a + b }')"
  printf 'bench: %-6s %8d req/s  mean %6.0f us\n' "$side" "$((done_ / SECONDS_PER))" "$mean" >&2
}
# Warm both (connections, key cache), then ABBA rounds.
h2load -n 2000 -c 2 -m 4 -t 1 -d "$work/get-product.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
  -H "x-api-key: $KEY" "http://127.0.0.1:$BEFORE$URL_PATH" >/dev/null
h2load -n 2000 -c 2 -m 4 -t 1 -d "$work/get-product.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
  -H "x-api-key: $KEY" "http://127.0.0.1:$AFTER$URL_PATH" >/dev/null
for round in $(seq 1 "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then run before; run after; else run after; run before; fi
done
hz="$(getconf CLK_TCK)"
rss() { awk '/^VmHWM/ { print $2 }' "/proc/$1/status"; }
echo
printf '%-8s %12s %14s %20s %14s\n' gateway "req/s" "mean latency" "CPU s / 1,000 calls" "peak RSS"
for side in before after; do
  awk -v s="$side" -v r="${reqs[$side]}" -v t="${secs[$side]}" -v c="${cpu[$side]}" -v hz="$hz" -v l="${lat[$side]}" \
    -v n="$ROUNDS" -v m="$(rss "${pid_of[$side]}")" 'BEGIN {
      printf "%-8s %12.0f %11.0f us %20.4f %11.1f MB\n", s, r / t, l / n, c / hz / (r / 1000), m / 1024 }'
done
awk -v rb="${reqs[before]}" -v ra="${reqs[after]}" -v cb="${cpu[before]}" -v ca="${cpu[after]}" \
  -v lb="${lat[before]}" -v la="${lat[after]}" 'BEGIN {
    printf "\nafter / before: throughput %.3f, mean latency %.3f, CPU per call %.3f\n", ra / rb, la / lb, (ca / ra) / (cb / rb) }'
