-- wrk script: hot-SKU purchases spread over many users' tokens.
-- Tokens come from the file named by env TOKENS (one per line); SALE names the sale.
local tokens = {}
local sale = os.getenv("SALE") or "bench-sale"
for line in io.lines(os.getenv("TOKENS") or "tokens.txt") do
  tokens[#tokens + 1] = line
end
local i = 0
request = function()
  i = i + 1
  local t = tokens[(i % #tokens) + 1]
  return wrk.format("POST", "/api/v1/flash-sales/" .. sale .. "/purchase",
    { ["Authorization"] = "Bearer " .. t, ["Content-Type"] = "application/json" },
    '{"quantity":1}')
end
done = function(summary, latency, requests)
  io.write(string.format("p50_ms=%.3f p99_ms=%.3f\n", latency:percentile(50) / 1000,
    latency:percentile(99) / 1000))
end
