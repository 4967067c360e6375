#!/usr/bin/env bash
# Hot-SKU purchases alone, then while anonymous clients page through the
# catalog with a search that matches nothing (each page scans up to 5,000
# product records in RocksDB). Shows whether listing traffic holds up the
# purchases. Usage: bench/wrk/catalog_flood.sh [shopd binary]
# Starts its own shopd on 127.0.0.1:${PORT:-18993} with a fresh data dir, and stops it.
set -euo pipefail
cd "$(dirname "$0")/../.."
SHOPD=${1:-build/cluster/shopd}
PORT=${PORT:-18993}
PRODUCTS=${PRODUCTS:-5000}
. bench/wrk/node.sh
start_shopd "$SHOPD"
AT=$(token admin bench-admin-pw)
# The catalog: $PRODUCTS products with 200-byte descriptions, over one keep-alive connection.
python3 - "$PORT" "$AT" "$PRODUCTS" <<'PY'
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(int(sys.argv[3])):
    body = json.dumps({"sku": f"p{i:05d}", "name": f"Item {i}", "price_cents": 100, "stock": 10,
                       "description": "d" * 200})
    c.request("POST", "/api/v1/products", body, {"Authorization": "Bearer " + sys.argv[2]})
    r = c.getresponse()
    r.read()
    assert r.status == 201, r.status
PY
hot_sale cat-sale 128
purchases() { # label
  wrk -t1 -c16 -d8s --latency -s bench/wrk/purchase.lua "http://127.0.0.1:$PORT" \
    | grep -E "Requests/sec|p50_ms|Non-2xx" | sed "s/^/$1: /"
}
echo "== $PRODUCTS products, one search page: $(curl -s -o /dev/null -w '%{time_total}' "$B/products?q=zzzz&limit=100") s"
purchases "purchases alone"
wrk -t1 -c4 -d10s "http://127.0.0.1:$PORT/api/v1/products?q=zzzz&limit=100" >"$WORK/catalog.txt" &
FLOOD=$!
sleep 1
purchases "purchases during the flood"
wait $FLOOD
grep -E "Requests/sec" "$WORK/catalog.txt" | sed 's/^/catalog pages: /'
