#!/usr/bin/env bash
# Chaos, the long run of the test suite's chaos test (tests/chaos.rs):
# ORDERS orders (mixed cards and addresses) at RATE a second through the
# gateway of `ferrymesh up`, while every participant (catalog, inventory,
# payments, shipping, orders, workflow, apikeys, gateway) is killed with
# SIGKILL, one at a time, each at least twice (on a long run spaced so
# that each has run a while between its kills, as `up`'s restart backoff
# assumes: its backoff grows to 30 s for a service that dies again within a
# minute). First
# on SQLite; then on PostgreSQL, on a server of the run's own that is
# crashed (immediate shutdown) and restarted a third of the way in. Each
# run ends with: every order ended as its card and address call for, lost
# 0, duplicated 0 (one order per key, one payment per order), and
# `ferrymesh audit` clean; it prints one line saying so, or fails.
#
#   bash bench/chaos.sh                  # 5000 orders at 40/s, both backends
#   ORDERS=1000 RATE=50 bash bench/chaos.sh
#
# Outside the test suite; only loopback ports; the PostgreSQL server runs
# as the `postgres` user in a temporary directory; it stops by itself.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
export FERRYMESH_CHAOS_ORDERS="${ORDERS:-5000}"
export FERRYMESH_CHAOS_RATE="${RATE:-40}"
export FERRYMESH_CHAOS_OWN_POSTGRES=1
for test in every_participant_killed_at_random_and_every_order_ends_right \
            every_participant_killed_at_random_on_postgres_and_every_order_ends_right; do
  started=$(date +%s)
  log="$(mktemp)"
  cargo nextest run -p ferrymesh --test e2e --no-capture --no-fail-fast -E "test(=chaos::$test)" >"$log" 2>&1 || {
    grep -E 'panicked|^chaos: ' -A3 "$log" >&2 || tail -60 "$log" >&2
    echo "chaos: FAILED ($test)" >&2
    exit 1
  }
  grep -E '^chaos: ' "$log" || true
  rm -f "$log"
  echo "chaos: took $(( $(date +%s) - started )) s"
done
