-- wrk script: hot-SKU purchases spread over many users' tokens.
-- Tokens come from the file named by env TOKENS (one per line); SALE names the sale.
-- Every request is formatted once, up front: building it per call in Lua would
-- cost the load generator more CPU than the /healthz run it is compared with.
-- Up front means in init (once per thread): wrk.format takes the Host header
-- from wrk.headers, which wrk fills in only then, and shopd refuses an
-- HTTP/1.1 request without Host (400).
local requests = {}
local sale = os.getenv("SALE") or "bench-sale"
function init(args)
  for line in io.lines(os.getenv("TOKENS") or "tokens.txt") do
    requests[#requests + 1] = wrk.format("POST", "/api/v1/flash-sales/" .. sale .. "/purchase",
      { ["Authorization"] = "Bearer " .. line, ["Content-Type"] = "application/json" },
      '{"quantity":1}')
  end
end
local i = 0
request = function()
  i = i % #requests + 1
  return requests[i]
end

-- KEYED=1: every purchase carries its own Idempotency-Key, as a careful client
-- sends it. This request is built per call (costs wrk more CPU), so compare
-- shopd's CPU per purchase, not requests/s, with the keyless run.
if os.getenv("KEYED") == "1" then
  local tokens, n = {}, 0
  for line in io.lines(os.getenv("TOKENS") or "tokens.txt") do tokens[#tokens + 1] = line end
  local path = "/api/v1/flash-sales/" .. sale .. "/purchase"
  local prefix = string.format("%x-", math.random(0, 2^30))
  request = function()
    n = n + 1
    return wrk.format("POST", path, { ["Authorization"] = "Bearer " .. tokens[n % #tokens + 1],
      ["Content-Type"] = "application/json", ["Idempotency-Key"] = prefix .. n }, '{"quantity":1}')
  end
end
done = function(summary, latency, requests)
  io.write(string.format("p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f\n",
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency:percentile(99.9) / 1000, latency.max / 1000))
end
