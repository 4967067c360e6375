#!/usr/bin/env bash
# The edge loop thread's CPU per request, purchases and /healthz, for two shopd
# builds in alternating rounds. On a node the loop bounds (bench/RESULTS.md), the
# purchase rate over the /healthz rate follows its CPU per /healthz over its CPU
# per purchase: this compares that figure between builds on a machine too small
# to show the bound itself.
#   Usage: bench/wrk/loop_ab.sh OLD_SHOPD NEW_SHOPD [rounds]   (default 3 rounds)
# Each run: a fresh node (sync), USERS users (256: each may buy 10,000 units,
# so none reaches the sale's per-user limit within a run even at 180,000
# purchases/s; answers refused at the limit would cost the loop less than
# purchases), `wrk -c64` for 14 s; the loop's CPU time (from /proc) is taken
# over the middle 8 s. SHOPD_CPUS, WRK_CPUS and WRK_THREADS as for run.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 2 ] || { echo "usage: $0 OLD_SHOPD NEW_SHOPD [rounds]" >&2; exit 2; }
OLD=$1 NEW=$2 ROUNDS=${3:-3}
PORT=${PORT:-18991}
USERS=${USERS:-256}
WRK_THREADS=${WRK_THREADS:-1}
PIN_SHOPD=() PIN_WRK=()
[ -n "${SHOPD_CPUS:-}" ] && PIN_SHOPD=(taskset -c "$SHOPD_CPUS")
[ -n "${WRK_CPUS:-}" ] && PIN_WRK=(taskset -c "$WRK_CPUS")
HZ=$(getconf CLK_TCK)

one_run() { # build label, shopd binary, what (purchase|healthz)
  (
    . bench/wrk/node.sh
    start_shopd "${PIN_SHOPD[@]}" "$2"
    hot_sale bench-sale "$USERS"
    local loop="" t
    for t in /proc/"$PID"/task/*; do [ "$(cat "$t/comm")" = shop-edge ] && loop=$t; done
    [ -n "$loop" ] || { echo "$1 $3: no shop-edge thread"; exit 1; }
    ticks() { awk '{ sub(/^.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "$loop/stat"; }
    if [ "$3" = purchase ]; then
      "${PIN_WRK[@]}" wrk -t"$WRK_THREADS" -c64 -d14s -s bench/wrk/purchase.lua \
        "http://127.0.0.1:$PORT" >"$WORK/wrk.txt" &
    else
      "${PIN_WRK[@]}" wrk -t"$WRK_THREADS" -c64 -d14s "http://127.0.0.1:$PORT/healthz" >"$WORK/wrk.txt" &
    fi
    local w=$! before after
    sleep 3
    before=$(ticks)
    sleep 8
    after=$(ticks)
    wait "$w"
    awk -v b="$1" -v w="$3" -v d=$((after - before)) -v hz="$HZ" '
      /Requests\/sec/ { r = $2 }
      /Non-2xx/ { bad = $NF }
      END { printf "%s %-8s req/s=%8.0f loop_us_per_request=%.2f%s\n", b, w, r, d * 1e6 / hz / (r * 8),
            bad ? " non-2xx=" bad : "" }' "$WORK/wrk.txt"
  )
}

echo "== loop CPU per request: old=$OLD new=$NEW, $ROUNDS rounds, $(nproc) cores," \
  "shopd on cpus ${SHOPD_CPUS:-any}, wrk -t$WRK_THREADS on cpus ${WRK_CPUS:-any}"
for round in $(seq "$ROUNDS"); do
  for build in old new; do
    bin=$OLD
    [ "$build" = new ] && bin=$NEW
    p=$(one_run "$build" "$bin" purchase) || { echo "$p"; echo "$build purchase: run failed"; continue; }
    h=$(one_run "$build" "$bin" healthz) || { echo "$h"; echo "$build healthz: run failed"; continue; }
    echo "$p"
    echo "$h"
    printf '%s round %d: loop ratio (healthz / purchase) %s\n' "$build" "$round" "$(
      printf '%s\n%s\n' "$p" "$h" | awk -F'loop_us_per_request=' '{ split($2, a, " "); v[NR] = a[1] }
        END { printf "%.3f", v[2] / v[1] }')"
  done
done
