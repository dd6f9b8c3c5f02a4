-- wrk script for bench/shop.sh: POST /v1/orders with one line on a random
-- SKU among SHOP_SKUS (default 1000) per request, for a customer at
-- bench.example (a domain the demo does not throttle). With SHOP_THINK_MS
-- set to "MIN-MAX", each connection is a user who waits a random MIN..MAX ms
-- after each answer before the next checkout (wrk's delay()); latency is
-- still measured from the request's send to its answer.
local skus = tonumber(os.getenv("SHOP_SKUS") or "1000")
local counter = 0
-- Each wrk thread loads this script in its own Lua state: seed per state.
math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)") or "0", 16) % 1000003)

local think = os.getenv("SHOP_THINK_MS")
if think and think ~= "" then
  local lo, hi = think:match("^(%d+)-(%d+)$")
  lo, hi = tonumber(lo), tonumber(hi)
  if not lo or hi < lo then error("SHOP_THINK_MS: expected MIN-MAX in ms, like 50-150") end
  delay = function() return math.random(lo, hi) end
end

request = function()
  counter = counter + 1
  local sku = string.format("SKU-%06d", math.random(1, skus))
  local body = string.format(
    '{"customer":"bench%d@bench.example","lines":[{"sku":"%s","qty":1}]}', counter, sku)
  return wrk.format("POST", "/v1/orders", {["Content-Type"] = "application/json"}, body)
end

done = function(summary, latency, requests)
  io.write(string.format("SHOP_RESULT requests=%d errors=%d duration_s=%.2f p50_ms=%.2f p95_ms=%.2f p99_ms=%.2f max_ms=%.2f\n",
    summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.status + summary.errors.timeout,
    summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
