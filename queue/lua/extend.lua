-- extend: moves the deadline of leases still held.
-- ARGV: deadline_ms, token...
-- Returns {1|0 per token}: 0 = the lease is gone (expired and recovered).
local deadline = tonumber(ARGV[1])
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
