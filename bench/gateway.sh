#!/usr/bin/env bash
# The gateway's cost, measured side by side in one run: h2load on catalog's
# GetProduct three ways --
#   direct     straight to catalog
#   nginx      through nginx grpc_pass (upstream keepalive on)
#   gateway    through the ferrymesh gateway with a key: auth, throttle
#              (limits high), quota, routing, metering and server spans on,
#              10,000 keys issued and cached
#   untraced   the same gateway with tracing off (OTEL_TRACES_SAMPLER=always_off)
#   traced     the same gateway with every trace kept (always_on) and
#              exported over OTLP, with its catalog's, to the trace sink
#   mtls       the same gateway as `gateway`, its hop to catalog over mutual
#              TLS (certificates from `ferrymesh certs init`)
# -- rounds interleaved. Prints requests/s, mean and p99 latency under load,
# the added latency of one sequential call, the ratios gateway/direct and
# gateway/nginx, the gateway's CPU seconds per 1,000 requests and its peak
# RSS, and the answers the gateway refused with a non-OK grpc-status
# (h2load sees only HTTP status; the gateway meters every call it
# forwards, so refusals = answered - metered).
#
#   bash bench/gateway.sh                 # 3 rounds of 5 s per way
#   ROUNDS=1 SECONDS_PER=3 KEYS=1000 bash bench/gateway.sh
#
# Outside the test suite; installs h2load (nghttp2-client) and nginx from
# Debian when missing. Only loopback addresses; stops by itself.
set -euo pipefail

ROUNDS="${ROUNDS:-3}"
SECONDS_PER="${SECONDS_PER:-5}"
CLIENTS="${CLIENTS:-8}"
STREAMS="${STREAMS:-16}"
KEYS="${KEYS:-10000}"
SEQUENTIAL="${SEQUENTIAL:-3001}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

install() { # command package
  command -v "$1" >/dev/null && return
  echo "bench: installing $2" >&2
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq "$2" >&2
  else sudo apt-get update -qq && sudo apt-get install -y -qq "$2" >&2; fi
}
install h2load nghttp2-client
install nghttp nghttp2-client
[ -x /usr/sbin/nginx ] || install nginx nginx
nginx_bin="$(command -v nginx || echo /usr/sbin/nginx)"

cargo build --release -q -p ferrymesh -p gateway
bin="$root/target/release/ferrymesh"
# The gateway as it is deployed: its own binary (no database driver linked).
gateway_bin="$root/target/release/gateway"
work="$(mktemp -d)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

TOKEN="bench-admin-token-$(date +%s)"
CATALOG=47151 APIKEYS=47157 NGINX=47180 GATEWAY=47181
# Tracing on and off, each gateway with its own catalog so neither's spans
# weigh on the other; the sink is the OTLP receiver.
CATALOG_OFF=47251 GATEWAY_OFF=47281 CATALOG_ON=47351 GATEWAY_ON=47381 SINK=47317
# The gateway -> catalog hop over mutual TLS.
CATALOG_TLS=47451 GATEWAY_TLS=47481

wait_port() { # name port
  for _ in $(seq 1 200); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return; fi
    sleep 0.05
  done
  echo "bench: $1 did not start:" >&2; cat "$work/$1.log" >&2 || true; exit 1
}
start() { # name port flags...
  local name="$1" port="$2"; shift 2
  "$bin" serve "$name" --listen "127.0.0.1:$port" --data-dir "$work/data" "$@" >"$work/$name.log" 2>&1 &
  pids+=($!)
  wait_port "$name" "$port"
}
start catalog "$CATALOG"
start apikeys "$APIKEYS" --admin-token "$TOKEN"
# The sink keeps every span of the run, so it can say how many arrived.
start tracesink "$SINK" --max-spans 4000000
OFF=(env OTEL_TRACES_SAMPLER=always_off)
# Export as a deployment would, with a queue deep enough that no span is dropped.
ON=(env OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:$SINK" OTEL_METRICS_EXPORTER=none
  OTEL_BSP_MAX_QUEUE_SIZE=65536 OTEL_BSP_MAX_EXPORT_BATCH_SIZE=2048 OTEL_BSP_SCHEDULE_DELAY=200)
"${OFF[@]}" "$bin" serve catalog --listen "127.0.0.1:$CATALOG_OFF" --data-dir "$work/data" >"$work/catalog-off.log" 2>&1 &
pids+=($!)
wait_port catalog-off "$CATALOG_OFF"
# catalog follows the gateway's decision (parent-based), as in the mesh.
"${ON[@]}" "$bin" serve catalog --listen "127.0.0.1:$CATALOG_ON" --data-dir "$work/data" >"$work/catalog-on.log" 2>&1 &
pids+=($!)
wait_port catalog-on "$CATALOG_ON"

cat >"$work/gateway.toml" <<EOF
public = ["ferrymesh.catalog.v1.*"]
[stages.prod.routes]
"ferrymesh.catalog.v1" = "http://127.0.0.1:$CATALOG"
EOF
"$gateway_bin" --listen "127.0.0.1:$GATEWAY" --data-dir "$work/data" --config "$work/gateway.toml" \
  --apikeys-url "http://127.0.0.1:$APIKEYS" --admin-token "$TOKEN" >"$work/gateway.log" 2>&1 &
pids+=($!)
gateway_pid="${pids[-1]}"
wait_port gateway "$GATEWAY"
for side in off on; do
  if [ "$side" = off ]; then port="$GATEWAY_OFF" upstream="$CATALOG_OFF" envs=("${OFF[@]}")
  else port="$GATEWAY_ON" upstream="$CATALOG_ON" envs=("${ON[@]}" OTEL_TRACES_SAMPLER=always_on); fi
  printf 'public = ["ferrymesh.catalog.v1.*"]\n[stages.prod.routes]\n"ferrymesh.catalog.v1" = "http://127.0.0.1:%s"\n' \
    "$upstream" >"$work/gateway-$side.toml"
  "${envs[@]}" "$gateway_bin" --listen "127.0.0.1:$port" --data-dir "$work/data" --config "$work/gateway-$side.toml" \
    --apikeys-url "http://127.0.0.1:$APIKEYS" --admin-token "$TOKEN" >"$work/gateway-$side.log" 2>&1 &
  pids+=($!)
  wait_port "gateway-$side" "$port"
done

"$bin" certs init "$work/certs" >/dev/null
tls() { echo --tls-cert "$work/certs/$1.pem" --tls-key "$work/certs/$1.key" --tls-ca "$work/certs/ca.pem"; }
# shellcheck disable=SC2046
"$bin" serve catalog --listen "127.0.0.1:$CATALOG_TLS" --data-dir "$work/data" $(tls catalog) >"$work/catalog-tls.log" 2>&1 &
pids+=($!)
wait_port catalog-tls "$CATALOG_TLS"
printf 'public = ["ferrymesh.catalog.v1.*"]\n[stages.prod.routes]\n"ferrymesh.catalog.v1" = "https://127.0.0.1:%s"\n' \
  "$CATALOG_TLS" >"$work/gateway-tls.toml"
# shellcheck disable=SC2046
"$gateway_bin" --listen "127.0.0.1:$GATEWAY_TLS" --data-dir "$work/data" --config "$work/gateway-tls.toml" \
  --apikeys-url "http://127.0.0.1:$APIKEYS" --admin-token "$TOKEN" $(tls gateway) >"$work/gateway-tls.log" 2>&1 &
pids+=($!)
wait_port gateway-tls "$GATEWAY_TLS"

mkdir -p "$work/nginx"
cat >"$work/nginx/nginx.conf" <<EOF
worker_processes auto;
error_log $work/nginx/error.log warn;
pid $work/nginx/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path $work/nginx;
  # nginx closes a client connection after 1000 requests by default, and
  # h2load does not reconnect: without this it measures 1,600 req/s.
  keepalive_requests 1000000;
  upstream catalog { server 127.0.0.1:$CATALOG; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$NGINX http2;
    location / { grpc_pass grpc://catalog; }
  }
}
EOF
"$nginx_bin" -p "$work/nginx" -c "$work/nginx/nginx.conf" -g 'daemon off;' >"$work/nginx.log" 2>&1 &
pids+=($!)
wait_port nginx "$NGINX"

# A plan whose limits never bind, a developer on it, and the keys.
keys() { FERRYMESH_ADMIN_TOKEN="$TOKEN" "$bin" keys --address "http://127.0.0.1:$APIKEYS" "$@"; }
keys create-plan bench --rate 1000000 --burst 1000000 --quota 1000000000000 --period day >/dev/null
keys issue bench --email bench@example.com --plan bench --count "$KEYS" >"$work/keys.txt"
KEY="$(head -1 "$work/keys.txt")"
echo "bench: $(wc -l <"$work/keys.txt") keys issued; caching each in the gateway" >&2

printf '\x00\x00\x00\x00\x05\x0a\x03mug' >"$work/get-product.bin" # GetProductRequest{product_id: "mug"}
URL_PATH=/ferrymesh.catalog.v1.CatalogService/GetProduct
# One call per key, so the gateway holds every key as it would in service.
xargs -P 4 -I{} nghttp -n -H 'content-type: application/grpc' -H 'te: trailers' -H 'x-api-key: {}' \
  -d "$work/get-product.bin" "http://127.0.0.1:$GATEWAY$URL_PATH" <"$work/keys.txt"
for port in "$GATEWAY_OFF" "$GATEWAY_ON" "$GATEWAY_TLS"; do
  nghttp -n -H 'content-type: application/grpc' -H 'te: trailers' -H "x-api-key: $KEY" \
    -d "$work/get-product.bin" "http://127.0.0.1:$port$URL_PATH"
done
[ -x "$root/.tools/bin/grpcurl" ] || bash build-support/install-tools.sh >&2
sink_spans() { # spans the sink holds
  "$root/.tools/bin/grpcurl" -plaintext -d '{}' "127.0.0.1:$SINK" ferrymesh.traces.v1.TracesService/GetServiceMap |
    awk -F'"' '/"spanCount"/ { print $4 }'
}

metered() { # calls apikeys has counted for the bench developer
  sleep 1.5 # one flush interval and a little
  local now; now="$(date -u +%s)"
  FERRYMESH_ADMIN_TOKEN="$TOKEN" "$bin" keys --address "http://127.0.0.1:$APIKEYS" usage bench --days 1 |
    awk '/^total/ { print $2 }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$gateway_pid/stat"; }

# h2load with a per-request log: prints "req/s mean_us p99_us answered"
load() { # port clients streams seconds-or-count extra-header...
  local port="$1" c="$2" m="$3" amount="$4"; shift 4
  local headers=(-H 'content-type: application/grpc' -H 'te: trailers')
  for h in "$@"; do headers+=(-H "$h"); done
  local log="$work/h2load.tsv"; rm -f "$log"
  local span=(-D "$amount")
  [ "$amount" -gt 1000 ] && span=(-n "$amount")
  h2load "${span[@]}" -c "$c" -m "$m" -t 1 --log-file="$log" -d "$work/get-product.bin" "${headers[@]}" \
    "http://127.0.0.1:$port$URL_PATH" >"$work/h2load.out" 2>&1
  local rps; rps="$(awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($i ~ /req\/s/) { gsub(",", "", $(i-1)); print $(i-1) } }' "$work/h2load.out")"
  local bad; bad="$(awk '$2 != 200 { n++ } END { print n + 0 }' "$log")"
  [ "$bad" = 0 ] || echo "bench: $bad answers with an HTTP status other than 200" >&2
  cut -f3 "$log" | sort -n | awk -v rps="$rps" '{ v[NR] = $1; s += $1 } END {
    i = int(NR * 0.99); if (i < 1) i = 1; printf "%s %.0f %.0f %d\n", rps, s / NR, v[i], NR }'
}

declare -A rps mean p99
WAYS=(direct nginx gateway untraced traced mtls)
for way in "${WAYS[@]}"; do rps[$way]=0; mean[$way]=0; p99[$way]=0; done
gateway_answered=0 traced_answered=0 cpu_ticks_total=0
spans_before="$(sink_spans)"
echo "h2load -c$CLIENTS -m$STREAMS, ${SECONDS_PER}s per way, $ROUNDS rounds interleaved, $(nproc) cores" >&2
for round in $(seq 1 "$ROUNDS"); do
  for way in "${WAYS[@]}"; do
    [ "$way" = gateway ] && cpu_start="$(cpu_ticks)"
    case $way in
      direct) r="$(load "$CATALOG" "$CLIENTS" "$STREAMS" "$SECONDS_PER")" ;;
      nginx) r="$(load "$NGINX" "$CLIENTS" "$STREAMS" "$SECONDS_PER")" ;;
      gateway) r="$(load "$GATEWAY" "$CLIENTS" "$STREAMS" "$SECONDS_PER" "x-api-key: $KEY")" ;;
      untraced) r="$(load "$GATEWAY_OFF" "$CLIENTS" "$STREAMS" "$SECONDS_PER" "x-api-key: $KEY")" ;;
      traced) r="$(load "$GATEWAY_ON" "$CLIENTS" "$STREAMS" "$SECONDS_PER" "x-api-key: $KEY")" ;;
      mtls) r="$(load "$GATEWAY_TLS" "$CLIENTS" "$STREAMS" "$SECONDS_PER" "x-api-key: $KEY")" ;;
    esac
    [ "$way" = gateway ] && cpu_ticks_total=$((cpu_ticks_total + $(cpu_ticks) - cpu_start))
    read -r a b c n <<<"$r"
    echo "  round $round  $way: $a req/s, mean $b us, p99 $c us" >&2
    rps[$way]="$(awk -v x="${rps[$way]}" -v y="$a" 'BEGIN { print x + y }')"
    mean[$way]="$(awk -v x="${mean[$way]}" -v y="$b" 'BEGIN { print x + y }')"
    p99[$way]="$(awk -v x="${p99[$way]}" -v y="$c" 'BEGIN { print x + y }')"
    [ "$way" = gateway ] && gateway_answered=$((gateway_answered + n))
    [ "$way" = traced ] && traced_answered=$((traced_answered + n))
  done
done
sleep 1 # the last export
spans_after="$(sink_spans)"

# A fixed count, every call answered, to count the gateway's non-OK
# answers: it meters every call it forwards, and refusals are not forwarded.
metered_before="$(metered)"
CENSUS="${CENSUS:-50000}"
census="$(load "$GATEWAY" "$CLIENTS" "$STREAMS" "$CENSUS" "x-api-key: $KEY" | awk '{ print $4 }')"
metered_after="$(metered)"

# One call at a time: what each hop adds to a call's latency.
declare -A seq_mean
seq_mean[direct]="$(load "$CATALOG" 1 1 "$SEQUENTIAL" | awk '{ print $2 }')"
seq_mean[nginx]="$(load "$NGINX" 1 1 "$SEQUENTIAL" | awk '{ print $2 }')"
seq_mean[gateway]="$(load "$GATEWAY" 1 1 "$SEQUENTIAL" "x-api-key: $KEY" | awk '{ print $2 }')"
seq_mean[mtls]="$(load "$GATEWAY_TLS" 1 1 "$SEQUENTIAL" "x-api-key: $KEY" | awk '{ print $2 }')"

rss_kb="$(awk '/^VmHWM/ { print $2 }' "/proc/$gateway_pid/status")"
hz="$(getconf CLK_TCK)"
if grep -h "panicked" "$work"/*.log >&2; then echo "bench: a process panicked" >&2; exit 1; fi

avg() { awk -v t="$1" -v n="$ROUNDS" 'BEGIN { printf "%.0f", t / n }'; }
printf '\n%-10s %10s %12s %12s %16s\n' "way" "req/s" "mean (us)" "p99 (us)" "sequential (us)"
for way in "${WAYS[@]}"; do
  printf '%-10s %10s %12s %12s %16s\n' "$way" "$(avg "${rps[$way]}")" "$(avg "${mean[$way]}")" "$(avg "${p99[$way]}")" "${seq_mean[$way]:--}"
done
awk -v g="${rps[gateway]}" -v d="${rps[direct]}" -v n="${rps[nginx]}" \
    -v sg="${seq_mean[gateway]}" -v sd="${seq_mean[direct]}" -v sn="${seq_mean[nginx]}" \
    -v ticks="$cpu_ticks_total" -v hz="$hz" -v answered="$gateway_answered" \
    -v on="${rps[traced]}" -v off="${rps[untraced]}" -v traced="$traced_answered" -v spans="$((${spans_after:-0} - ${spans_before:-0}))" \
    -v tls="${rps[mtls]}" -v stls="${seq_mean[mtls]}" \
    -v census="$census" -v metered="$((metered_after - metered_before))" -v rss="$rss_kb" -v keys="$KEYS" 'BEGIN {
  printf "\ngateway / direct throughput   %.2f   (target >= 0.50)\n", g / d
  printf "gateway / nginx throughput    %.2f   (target >= 2.00)\n", g / n
  printf "added per sequential call     gateway %+.0f us, nginx %+.0f us   (target: gateway below nginx)\n", sg - sd, sn - sd
  printf "gateway CPU per 1000 requests %.4f s   (target <= 0.05)\n", (ticks / hz) / (answered / 1000)
  printf "gateway peak RSS              %.1f MB with %d keys cached   (target < 30 MB)\n", rss / 1024, keys
  printf "gateway non-OK grpc-status    %d of %d answered (forwarded and metered: %d)\n", census - metered, census, metered
  printf "traced / untraced throughput  %.2f   (target >= 0.90; every call traced and exported to the sink)\n", on / off
  printf "mtls / plaintext hop          %.2f   (gateway -> catalog over mutual TLS, throughput)\n", tls / g
  printf "mTLS added per sequential call %+.0f us\n", stls - sg
  printf "spans the sink received       %d for %d traced calls (%.2f per call)\n", spans, traced, spans / traced
}'
