# Sourced by the wrk scripts: a throwaway shopd on 127.0.0.1:$PORT with a
# fresh data dir under /tmp, stopped (and its files removed) when the script exits.
#   start_shopd [prefix...] SHOPD [extra options]   e.g. start_shopd taskset -c 0-7 build/cluster/shopd
# sets DATA, WORK (scratch; the node's log is $WORK/shopd.log), PID and B (the API's base URL).
# KEEP_LOG=<file> copies the node's log there when the script exits.
# The node: --password-hash-cost 3, admin password bench-admin-pw, and a payment timeout
# of a day (no reservation expires during a run).

# wrk holds a descriptor per connection: a login shell's soft limit (1,024)
# would cap the connections a run can ask for. (shopd raises its own.)
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

stop_shopd() {
  [ -n "${PID:-}" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
  [ -n "${KEEP_LOG:-}" ] && cp "$WORK/shopd.log" "$KEEP_LOG"; rm -rf "${DATA:-}" "${WORK:-}"
}

start_shopd() {
  DATA=$(mktemp -d /tmp/shop-bench-XXXXXX)
  WORK=$(mktemp -d /tmp/shop-bench-work-XXXXXX)
  B=http://127.0.0.1:$PORT/api/v1
  trap stop_shopd EXIT
  "$@" --data-dir "$DATA" --http-port "$PORT" --password-hash-cost 3 \
    --admin-password bench-admin-pw --payment-timeout 86400 >"$WORK/shopd.log" 2>&1 &
  PID=$!
  for _ in $(seq 100); do
    kill -0 "$PID" 2>/dev/null || { echo "shopd did not start:"; cat "$WORK/shopd.log"; exit 1; }
    grep -q "shopd ready" "$WORK/shopd.log" && return 0
    sleep 0.1
  done
  echo "shopd did not get ready in 10 s:"; cat "$WORK/shopd.log"; exit 1
}

# A user's token: token USERNAME PASSWORD
token() {
  curl -sf -XPOST "$B/auth/login" -d "{\"username\":\"$1\",\"password\":\"$2\"}" |
    sed 's/.*"token":"\([^"]*\)".*/\1/'
}

# The hot SKU and its sale, and buyers: hot_sale SALE_ID USERS
# Product `hot` (10^9 units), a sale of all of it (per-user limit 10,000) open
# from 2020 to 2100, and USERS users (bench_1, ...) logged in, one token a line
# in $WORK/tokens.txt; exports TOKENS and SALE for purchase.lua.
hot_sale() {
  local at i
  at=$(token admin bench-admin-pw)
  curl -sf -XPOST "$B/products" -H "Authorization: Bearer $at" \
    -d '{"sku":"hot","name":"Hot item","price_cents":100,"stock":1000000000}' >/dev/null
  curl -sf -XPOST "$B/flash-sales" -H "Authorization: Bearer $at" \
    -d "{\"id\":\"$1\",\"sku\":\"hot\",\"price_cents\":99,\"quantity\":1000000000,\"per_user_limit\":10000,\"starts_at\":\"2020-01-01T00:00:00Z\",\"ends_at\":\"2100-01-01T00:00:00Z\"}" >/dev/null
  for i in $(seq "$2"); do
    curl -sf -XPOST "$B/users" -d "{\"username\":\"bench_$i\",\"password\":\"password-$i\"}" >/dev/null
    echo "$(token "bench_$i" "password-$i")" >>"$WORK/tokens.txt"
  done
  export TOKENS="$WORK/tokens.txt" SALE=$1
}
