#!/usr/bin/env bash
# Hot-SKU purchase benchmark with wrk, next to GET /healthz on the same node
# in the same run. Usage: bench/wrk/run.sh [sync|async] [connections] [seconds]
# Starts its own shopd on 127.0.0.1:${PORT:-18990} with a fresh data dir, and stops it.
# On a machine with spare cores, keep wrk off shopd's: SHOPD_CPUS=0-7 WRK_CPUS=8-15
# WRK_THREADS=4 (taskset lists; wrk needs several threads not to be the bottleneck).
set -euo pipefail
cd "$(dirname "$0")/../.."
MODE=${1:-sync}
CONNS=${2:-64}
SECS=${3:-10}
HEALTHZ_SECS=${HEALTHZ_SECS:-$SECS} # shorter for a purchase soak
PORT=${PORT:-18990}
USERS=${USERS:-256}
SHOPD=${SHOPD:-build/cluster/shopd}
WRK_THREADS=${WRK_THREADS:-1}
PIN_SHOPD=() PIN_WRK=() # taskset prefixes, when CPUs are given
[ -n "${SHOPD_CPUS:-}" ] && PIN_SHOPD=(taskset -c "$SHOPD_CPUS")
[ -n "${WRK_CPUS:-}" ] && PIN_WRK=(taskset -c "$WRK_CPUS")
. bench/wrk/node.sh
# shellcheck disable=SC2086 # SHOPD_ARGS is a list of options
start_shopd "${PIN_SHOPD[@]}" "$SHOPD" --durability "$MODE" ${SHOPD_ARGS:-}
hot_sale bench-sale "$USERS"

echo "sample purchase: $(curl -s -XPOST "$B/flash-sales/bench-sale/purchase" -H "Authorization: Bearer $(head -1 "$WORK/tokens.txt")" -d '{"quantity":1}' | cut -c1-120)"
# shopd's own CPU time (user + system) per answered request, from /proc, in
# total and by thread name: a steadier figure than requests/s on a shared
# machine, and it shows which stage a request costs most in. Also each thread
# name's sleeps per request (voluntary context switches: a wait in epoll, on a
# futex or on the disk), which tell how often a stage idles and is woken (names
# that slept at least once per 1,000 requests).
thread_ticks() { # "tid name ticks sleeps" per thread of shopd
  local t
  for t in /proc/"$PID"/task/*; do
    awk 'FNR == NR { sub(/^[0-9]+ \(/, ""); split($0, a, ") "); split(a[2], b, " ");
                     name = a[1]; ticks = b[12] + b[13]; next }
         /^voluntary_ctxt_switches:/ { print FILENAME, name, ticks, $2 }' \
      "$t/stat" "$t/status" 2>/dev/null
  done
}
measure() { # label, then the wrk command line
  local label=$1; shift
  local before out after n
  before=$(thread_ticks)
  # `times` ends with the CPU time of this subshell's children: wrk alone.
  out=$("$@"; times)
  after=$(thread_ticks)
  echo "$out" | grep -E "Requests/sec|50%|99%|Non-2xx|p50_ms"
  n=$(echo "$out" | awk '/requests in/ {print $1}')
  # The load generator's own CPU per request: on a machine where it shares
  # shopd's cores, a costlier request script lowers requests/s by itself.
  echo "$out" | awk -v n="$n" -v label="$label" '
    function secs(t) { split(t, a, /[ms]/); return a[1] * 60 + a[2] } # bash times: 1m2.345s
    /^[0-9]+m[0-9.]+s [0-9]+m[0-9.]+s$/ { cpu = secs($1) + secs($2) } # the last such line
    END { printf "%s wrk_cpu_us_per_request=%.1f\n", label, cpu * 1e6 / n }'
  printf '%s\n--\n%s\n' "$before" "$after" | awk -v n="$n" -v hz="$(getconf CLK_TCK)" -v label="$label" '
    $0 == "--" { after = 1; next }
    !after { start[$1] = $3; slept[$1] = $4; next }
    { d = $3 - start[$1]; by[$2] += d; total += d; sleeps[$2] += $4 - slept[$1] }
    END {
      line = sprintf("%s shopd_cpu_us_per_request=%d (", label, total * 1e6 / hz / n)
      for (t in by) if (by[t] > 0) line = line sprintf(" %s=%.1f", t, by[t] * 1e6 / hz / n)
      print line " )"
      line = sprintf("%s sleeps_per_request (", label)
      for (t in sleeps) if (sleeps[t] >= n / 1000) line = line sprintf(" %s=%.3f", t, sleeps[t] / n)
      print line " )"
    }'
}
echo "== $MODE durability, $CONNS connections, ${HEALTHZ_SECS}s /healthz, ${SECS}s purchases, $(nproc) cores," \
  "shopd on cpus ${SHOPD_CPUS:-any}, wrk -t$WRK_THREADS on cpus ${WRK_CPUS:-any}"
echo "-- GET /healthz"
measure healthz "${PIN_WRK[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${HEALTHZ_SECS}s" --latency "http://127.0.0.1:$PORT/healthz"
echo "-- POST /api/v1/flash-sales/bench-sale/purchase"
measure purchase "${PIN_WRK[@]}" wrk -t"$WRK_THREADS" -c"$CONNS" -d"${SECS}s" --latency -s bench/wrk/purchase.lua \
  "http://127.0.0.1:$PORT"
curl -sf "http://127.0.0.1:$PORT/metrics" | awk -v purchase='{route="POST /api/v1/flash-sales/{id}/purchase"}' '
  /^shop_journal_groups_total/ { g = $2 } /^shop_journal_batches_total/ { b = $2 }
  /^shop_rocksdb_flush_written_bytes_total/ { f = $2 } /^shop_rocksdb_compaction_written_bytes_total/ { c = $2 }
  /^shop_rocksdb_write_stall_seconds_total/ { st = $2 } /^shop_rocksdb_l0_files/ { l0 = $2 }
  /^shop_rocksdb_pending_compaction_bytes/ { p = $2 }
  /^shop_journal_commit_duration_seconds_sum/ { cs = $2 } /^shop_journal_commit_duration_seconds_count/ { cn = $2 }
  /^shop_wal_files_total\{start="prepared"\}/ { wp = $2 } /^shop_wal_files_total\{start="empty"\}/ { we = $2 }
  index($0, "shop_http_request_duration_seconds_sum" purchase " ") == 1 { ps = $NF }
  index($0, "shop_http_request_duration_seconds_count" purchase " ") == 1 { pn = $NF }
  END {
    if (g > 0) printf "journal: %d group commits, %.1f entity batches per group, %.0f us per commit (setup included)\n", g, b / g, (cn > 0 ? cs * 1e6 / cn : 0)
    # Arrival (the request parsed) to answer handed to the kernel, as shopd sees it: the
    # rest of what wrk measures is time in sockets, in wrk and in the edge queue before parsing.
    if (pn > 0) printf "purchases: %.0f us mean inside shopd\n", ps * 1e6 / pn
    printf "wal: %d files begun from a prepared file, %d empty\n", wp, we
    printf "rocksdb: flushes wrote %.0f MiB, compactions %.0f MiB; write stalls %.2f s; now %d L0 files, %.0f MiB pending compaction\n",
      f / 1048576, c / 1048576, st, l0, p / 1048576
  }'
curl -sf "$B/inventory/hot"; echo
