#!/usr/bin/env bash
# The shop-bench figures of bench/RESULTS.md, each on a fresh node:
#   harness  - shop-bench http vs wrk on GET /healthz (3 alternating runs)
#   sale     - flash sale: 100,000 users, 10,000 units, sync and async durability
#   rates    - open-loop latency at 25/50/75/90% of the measured maximum purchase rate
#   shop     - the storefront mix: 2,000 shoppers, 500 products, 64 connections, 20 s, 3 runs
#              (SHOPD_OLD=<shopd>: 3 runs of that build and of $SHOPD, alternating;
#              AB_NAME=<name>: their output as <name>.txt, not shop-ab.txt)
#   expiry   - 40,000 unpaid orders of one sale falling due while it is still busy: time
#              until their stock is back, and the SKU's read latency meanwhile
#   restart  - kill -9 after 10 s of purchases at full speed, then the time until the node
#              and the hot SKU serve again (3 rounds)
#   history  - a SKU whose 10 s of purchases at full speed all expired (its history, no open
#              reservation): kill -9, start again, and the time of the first read of the
#              SKU, which activates it (3 rounds)
# Usage: bench/flash_sale_runs.sh [harness|sale|rates|shop|expiry|restart|history|all]
# (output: bench/results/)
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-all}
PORT=${PORT:-18991}
SHOPD=${SHOPD:-build/cluster/shopd}
BENCH=build/bench/shop-bench
OUT=bench/results
mkdir -p "$OUT"
PID=""
DATA=""
start_node() { # durability [extra shopd flags...]
  DATA=$(mktemp -d /tmp/shop-runs-XXXXXX)
  "$SHOPD" --data-dir "$DATA" --http-port "$PORT" --durability "$1" --password-hash-cost 3 \
    --admin-password bench-admin-pw "${@:2}" >"$DATA.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do grep -q "shopd ready" "$DATA.log" 2>/dev/null && return 0; sleep 0.1; done
  echo "shopd did not start"; cat "$DATA.log"; exit 1
}
stop_node() { kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null; rm -rf "$DATA" "$DATA.log" "$DATA.burst"; PID=""; }
trap 'if [ -n "$PID" ]; then stop_node; fi' EXIT
T=http://127.0.0.1:$PORT

if [ "$WHAT" = harness ] || [ "$WHAT" = all ]; then
  start_node sync
  for run in 1 2 3; do
    w=$(wrk -t1 -c64 -d10s "$T/healthz" | awk '/Requests\/sec/ {print $2}')
    s=$("$BENCH" http --target "$T" --path /healthz --connections 64 --duration 10 2>/dev/null \
        | awk '/^GET \/healthz/ && NF > 5 {print $4; exit}')
    echo "harness run $run: wrk $w req/s, shop-bench $s req/s, ratio $(echo "scale=3; $s / $w" | bc)"
  done | tee "$OUT/harness.txt"
  stop_node
fi

if [ "$WHAT" = sale ] || [ "$WHAT" = all ]; then
  for mode in sync async; do
    start_node "$mode"
    "$BENCH" flash-sale --target "$T" --admin-password bench-admin-pw --users 100000 \
      --stock 10000 --per-user-limit 1 --connections 64 --json "$OUT/flash-sale-$mode.json" \
      $( [ "$mode" = sync ] && echo "--plot $OUT/flash-sale-sync.png" ) 2>&1 | tee "$OUT/flash-sale-$mode.txt"
    stop_node
  done
fi

if [ "$WHAT" = rates ] || [ "$WHAT" = all ]; then
  # A sustained sale (stock that does not run out) so every request is a durable purchase.
  start_node sync
  "$BENCH" flash-sale --target "$T" --admin-password bench-admin-pw --users 2000 --stock 100000000 \
    --per-user-limit 10000 --connections 64 --duration 10 --run-id max >"$OUT/rate-max.txt" 2>&1
  stop_node
  MAX=$(awk '/^purchase/ && NF > 5 {print $3; exit}' "$OUT/rate-max.txt")
  echo "measured maximum (closed loop, 64 connections): $MAX purchases/s" | tee "$OUT/rates.txt"
  for pct in 25 50 75 90; do
    RATE=$(echo "$MAX * $pct / 100" | bc)
    start_node sync
    "$BENCH" flash-sale --target "$T" --admin-password bench-admin-pw --users 2000 --stock 100000000 \
      --per-user-limit 10000 --connections 256 --rate "$RATE" --duration 10 --run-id "r$pct" \
      --json "$OUT/rate-$pct.json" >"$OUT/rate-$pct.txt" 2>&1
    stop_node
    echo "$pct% = $RATE req/s: $(awk '/^purchase/ && NF == 7 {print "p50", $2, "p90", $3, "p99", $4, "p99.9", $5, "max", $6; exit}' "$OUT/rate-$pct.txt") ms; $(grep -E '^AUDIT' "$OUT/rate-$pct.txt")" | tee -a "$OUT/rates.txt"
  done
fi

if [ "$WHAT" = shop ] || [ "$WHAT" = all ]; then
  # With SHOPD_OLD set: an A/B of two builds, old and new alternating, to shop-ab.txt
  # ($AB_NAME.txt with AB_NAME set, to keep an earlier A/B's output).
  if [ -n "${SHOPD_OLD:-}" ]; then builds=(old new); name=${AB_NAME:-shop-ab}; else builds=(""); name=shop; fi
  : >"$OUT/$name.txt"
  for run in 1 2 3; do
    for build in "${builds[@]}"; do
      bin=$SHOPD
      if [ "$build" = old ]; then bin=$SHOPD_OLD; fi
      [ -z "$build" ] || echo "=== run $run: $build ($bin)" | tee -a "$OUT/$name.txt"
      SHOPD=$bin start_node sync --sandbox-payments
      "$BENCH" shop --target "$T" --admin-password bench-admin-pw --users 2000 --products 500 \
        --connections 64 --duration 20 --run-id "shop$run$build" \
        --json "$OUT/$name-$run${build:+-$build}.json" 2>/dev/null | tee -a "$OUT/$name.txt"
      stop_node
    done
  done
fi

if [ "$WHAT" = expiry ] || [ "$WHAT" = all ]; then
  # A 3 s payment timeout: the orders of a sale that sells out in ~2 s fall due while
  # the losers of the race are still hammering it. Reads of the SKU's
  # inventory every 100 ms (curl's total time each) show when all the stock is back. The
  # bench's own audit cannot hold here (orders expire under it), so it is not quoted.
  start_node async --payment-timeout 3
  "$BENCH" flash-sale --target "$T" --admin-password bench-admin-pw --users 40000 --stock 40000 \
    --per-user-limit 1 --connections 64 --duration 3 --run-id exp >"$OUT/expiry-sale.txt" 2>&1 || true
  for _ in $(seq 600); do
    r=$(curl -s -m 10 -w ' %{time_total}' "$T/api/v1/inventory/bench-exp-0")
    echo "$(date +%s.%N) $r"
    case "$r" in *'"reserved":0,'*) break ;; esac
    sleep 0.1
  done >"$OUT/expiry-polls.txt"
  stop_node
  awk '{ if ($NF > max) max = $NF; if (NR == 1) first = $1; last = $1; line = $0 }
       END { printf "after the bench: all 40,000 units available again %.1f s later (%d reads, slowest %.1f ms)\nlast read: %s\n",
             last - first, NR, max * 1000, line }' "$OUT/expiry-polls.txt" | tee "$OUT/expiry.txt"
  grep -E '^(request kind|purchase|latency)' "$OUT/expiry-sale.txt" | tee -a "$OUT/expiry.txt"
fi

if [ "$WHAT" = restart ] || [ "$WHAT" = all ]; then
  : >"$OUT/restart.txt"
  for run in 1 2 3; do
    start_node sync
    "$BENCH" flash-sale --target "$T" --admin-password bench-admin-pw --users 2000 \
      --stock 100000000 --per-user-limit 10000 --connections 64 --duration 10 --run-id rs \
      >"$DATA.burst" 2>&1 || true
    kill -9 "$PID"; wait "$PID" 2>/dev/null || true
    logged=$(wc -l <"$DATA.log")
    begin=$(date +%s.%N)
    "$SHOPD" --data-dir "$DATA" --http-port "$PORT" --password-hash-cost 3 \
      --admin-password bench-admin-pw >>"$DATA.log" 2>&1 &
    PID=$!
    until curl -sf "$T/healthz" >/dev/null; do sleep 0.02; done
    ready=$(date +%s.%N)
    until curl -sf "$T/api/v1/inventory/bench-rs-0" >/dev/null; do sleep 0.02; done
    serving=$(date +%s.%N)
    inv=$(curl -sf "$T/api/v1/inventory/bench-rs-0")
    echo "run $run: $(awk '/^purchase/ && NF > 7 {print $4; exit}' "$DATA.burst") orders" \
      "in 10 s; restart to /healthz $(echo "$ready - $begin" | bc) s, to the hot SKU" \
      "$(echo "$serving - $begin" | bc) s; $(tail -n +$((logged + 1)) "$DATA.log" | grep -oE '(storage opened|loaded from storage) in [0-9]+ ms' | tr '\n' ';') $inv" |
      tee -a "$OUT/restart.txt"
    stop_node
  done
fi

if [ "$WHAT" = history ] || [ "$WHAT" = all ]; then
  : >"$OUT/history.txt"
  for run in 1 2 3; do
    start_node sync --payment-timeout 2
    "$BENCH" flash-sale --target "$T" --admin-password bench-admin-pw --users 2000 \
      --stock 100000000 --per-user-limit 10000 --connections 64 --duration 10 --run-id hs \
      >"$DATA.burst" 2>&1 || true
    until curl -sf "$T/api/v1/inventory/bench-hs-0" | grep -q '"reserved":0,'; do sleep 0.5; done
    kill -9 "$PID"; wait "$PID" 2>/dev/null || true
    logged=$(wc -l <"$DATA.log")
    "$SHOPD" --data-dir "$DATA" --http-port "$PORT" --password-hash-cost 3 --payment-timeout 2 \
      --admin-password bench-admin-pw >>"$DATA.log" 2>&1 &
    PID=$!
    until curl -sf "$T/healthz" >/dev/null; do sleep 0.02; done
    first=$(curl -s -o /dev/null -w '%{time_total}' "$T/api/v1/inventory/bench-hs-0")
    next=$(curl -s -o /dev/null -w '%{time_total}' "$T/api/v1/inventory/bench-hs-0")
    echo "run $run: $(awk '/^purchase/ && NF > 7 {print $4; exit}' "$DATA.burst") orders in 10 s," \
      "all expired; after kill -9 and a start, the SKU's first read took $first s, the next $next s;" \
      "$(tail -n +$((logged + 1)) "$DATA.log" | grep -oE 'loaded from storage in [0-9]+ ms' | tr '\n' ';')" \
      "$(curl -sf "$T/api/v1/inventory/bench-hs-0")" | tee -a "$OUT/history.txt"
    stop_node
  done
fi
