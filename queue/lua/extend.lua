-- extend: moves the deadline of leases still held to lease_ms from now, on
-- the Redis server's clock (at most a day).
-- ARGV: lease_ms, token...
-- A first argument of 10^11 or more is an absolute deadline in the caller's
-- clock, as clients written before sent it; it is taken as it is.
-- Returns {1|0 per token}: 0 = the lease is gone (expired and recovered).
local arg = argNumber(1, 'lease_ms')
local deadline
if arg >= 1e11 then
  deadline = arg
else
  deadline = serverMs() + math.min(math.max(math.floor(arg), 1), LEASE_MAX)
end
local out = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', K_LEASES, ARGV[i]) then
    redis.call('ZADD', K_LEASES, deadline, ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
