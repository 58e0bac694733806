#!/usr/bin/env bash
# Chaos: 2,000 orders at a fixed rate while the workflow process is killed
# with SIGKILL every few seconds and one domain service (payments) is
# killed once; `ferrymesh up` starts each again. Then it waits for every
# saga to end and checks, straight from the services' SQLite files:
#   - every order the load placed is in orders' table and none is PENDING (lost: 0),
#   - no order has two payments, two live shipments or two reservations (duplicated: 0),
#   - for every SKU: on hand + committed = seeded + received, nothing left reserved,
#   - charges minus refunds = the totals of CONFIRMED orders,
#   - no execution is left RUNNING.
#
#   bash bench/chaos.sh                       # 2000 orders at 100/s, workflow killed every 3s
#   ORDERS=500 RATE=50 KILL_EVERY=2 bash bench/chaos.sh
#
# Outside the test suite; only loopback ports; it stops by itself.
set -euo pipefail

ORDERS="${ORDERS:-2000}"
RATE="${RATE:-100}"
KILL_EVERY="${KILL_EVERY:-3}"
OFFSET="${OFFSET:-7000}"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
cargo build --release -q -p ferrymesh
bin="$root/target/release/ferrymesh"
data="$(mktemp -d)"
up_log="$data/up.log"
trap 'kill "$up_pid" 2>/dev/null || true; wait "$up_pid" 2>/dev/null || true; rm -rf "$data"' EXIT

port() { echo $(( $1 + OFFSET )); }
"$bin" up --data-dir "$data" --port-offset "$OFFSET" >"$up_log" 2>&1 &
up_pid=$!
for _ in $(seq 1 120); do
  grep -q "all services are SERVING" "$up_log" && break
  sleep 0.5
done
grep -q "all services are SERVING" "$up_log" || { cat "$up_log"; echo "chaos: the mesh did not come up" >&2; exit 1; }

python3 - "$data" snapshot <<'EOF'
import sqlite3, sys, json
data = sys.argv[1]
db = sqlite3.connect(f"file:{data}/inventory.db?mode=ro", uri=True)
json.dump({sku: on_hand for sku, on_hand in db.execute("select sku, on_hand from stock")}, open(f"{data}/seeded.json", "w"))
EOF

duration="$(python3 -c "print(f'{$ORDERS / $RATE:.3f}s')")"
echo "chaos: $ORDERS orders at $RATE/s ($duration); workflow killed every ${KILL_EVERY}s, payments once" >&2
"$bin" load place-order --rate "$RATE" --duration "$duration" --drain 120s --cards mixed --json \
  --orders-url "http://127.0.0.1:$(port 50055)" --workflow-url "http://127.0.0.1:$(port 50056)" \
  --inventory-url "http://127.0.0.1:$(port 50052)" >"$data/load.json" 2>"$data/load.err" &
load_pid=$!

kills=0
payments_killed=0
start=$(date +%s)
while kill -0 "$load_pid" 2>/dev/null; do
  sleep "$KILL_EVERY"
  pid="$(pgrep -f "serve workflow --listen 127.0.0.1:$(port 50056)" || true)"
  if [ -n "$pid" ] && kill -0 "$load_pid" 2>/dev/null; then
    kill -9 $pid && kills=$((kills + 1))
  fi
  if [ "$payments_killed" = 0 ] && [ $(( $(date +%s) - start )) -ge 7 ]; then
    pid="$(pgrep -f "serve payments --listen 127.0.0.1:$(port 50053)" || true)"
    [ -n "$pid" ] && kill -9 $pid && payments_killed=1
  fi
done
wait "$load_pid" || true
echo "chaos: workflow killed $kills times, payments killed $payments_killed time(s)" >&2

python3 - "$data" check "$kills" "$payments_killed" "$ORDERS" <<'EOF'
import json, sqlite3, sys, time
data, kills, payments_killed, total = sys.argv[1], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
# What `ferrymesh load` received before the run: total/5 + 1 of each product it orders.
LOAD_PRODUCTS = ["mug", "canvas-tote", "air-plant", "tank-top", "sunglasses"]
def db(name):
    return sqlite3.connect(f"file:{data}/{name}.db?mode=ro", uri=True)
load = json.load(open(f"{data}/load.json"))
# Wait for every saga to end (the load stops watching after its drain).
deadline = time.time() + 180
while True:
    running = db("workflow").execute("select count(*) from executions where status = 'RUNNING'").fetchone()[0]
    pending = db("orders").execute("select count(*) from orders where status = 'PENDING'").fetchone()[0]
    if (running == 0 and pending == 0) or time.time() > deadline:
        break
    time.sleep(1)
orders = db("orders")
placed = orders.execute("select count(*) from orders where idempotency_key like 'load-%'").fetchone()[0]
accepted = load["sent"] - sum(load["errors"].values())
lost = max(accepted - placed, 0) + pending
pay = db("payments")
dup_payments = pay.execute("select count(*) from (select order_id from payments group by order_id having count(*) > 1)").fetchone()[0]
ship = db("shipping")
dup_shipments = ship.execute("select count(*) from (select order_id from shipments where status = 'CREATED' group by order_id having count(*) > 1)").fetchone()[0]
inv = db("inventory")
# One reservation per order: the saga's reservation ids are derived per order.
reservations = inv.execute("select count(*) from reservations").fetchone()[0]
executions_with_reserve = db("workflow").execute(
    "select count(distinct execution) from history_events where state_name = 'Reserve stock' and kind = 'TaskSucceeded'").fetchone()[0]
dup_reservations = max(reservations - executions_with_reserve, 0)
duplicated = dup_payments + dup_shipments + dup_reservations
seeded = json.load(open(f"{data}/seeded.json"))
received = {sku: (total // len(LOAD_PRODUCTS) + 1 if sku in LOAD_PRODUCTS else 0) for (sku,) in inv.execute("select sku from stock")}
committed = {}
for sku, qty in orders.execute("select i.product_id, sum(i.quantity) from order_items i join orders o on o.order_id = i.order_id where o.status = 'CONFIRMED' group by i.product_id"):
    committed[sku] = qty
stock_ok = True
stock_lines = []
for sku, on_hand, reserved in inv.execute("select sku, on_hand, reserved from stock"):
    # on hand + reserved + committed = seeded + received (reserved must be 0 by now).
    got = on_hand + committed.get(sku, 0) - seeded[sku]
    if reserved != 0 or got != received[sku]:
        stock_ok = False
        print(f"  {sku}: seeded {seeded[sku]} received {received[sku]} committed {committed.get(sku, 0)} on hand {on_hand} reserved {reserved}")
    stock_lines.append((sku, seeded[sku], got, committed.get(sku, 0), on_hand, reserved))
kept = pay.execute("select coalesce(sum(amount_nanos - refunded_nanos), 0) from payments").fetchone()[0]
confirmed_total = orders.execute(
    "select coalesce((select sum(i.quantity * i.unit_price_nanos) from order_items i join orders o on o.order_id = i.order_id where o.status = 'CONFIRMED'), 0)"
    " + coalesce((select sum(shipping_nanos) from orders where status = 'CONFIRMED'), 0)").fetchone()[0]
status = dict(orders.execute("select status, count(*) from orders group by status").fetchall())
print(f"chaos: {load['sent']} sent, {accepted} accepted, {placed} in orders' table; "
      f"by status {status}; load errors {load['errors']}")
print(f"chaos: workflow killed {kills}x, payments killed {payments_killed}x; "
      f"saga latency p50 {load['latency_ms']['p50']:.0f} ms, p99 {load['latency_ms']['p99']:.0f} ms")
print(f"invariant  executions RUNNING            {running:>8}   {'ok' if running == 0 else 'FAIL'}")
print(f"invariant  orders lost (PENDING/missing)  {lost:>8}   {'ok' if lost == 0 else 'FAIL'}")
print(f"invariant  duplicated effects             {duplicated:>8}   {'ok' if duplicated == 0 else 'FAIL'}"
      f"   (payments {dup_payments}, shipments {dup_shipments}, reservations {dup_reservations})")
print(f"invariant  stock adds up, none reserved {'yes' if stock_ok else 'no':>8}   {'ok' if stock_ok else 'FAIL'}")
print(f"invariant  charges - refunds = CONFIRMED  {kept / 1e9:>8.2f} = {confirmed_total / 1e9:.2f}   {'ok' if kept == confirmed_total else 'FAIL'}")
ok = running == 0 and lost == 0 and duplicated == 0 and stock_ok and kept == confirmed_total
print(f"chaos: lost {lost}, duplicated {duplicated}: {'PASS' if ok else 'FAIL'}")
sys.exit(0 if ok else 1)
EOF
