-- reserve: recovers expired leases, promotes due delayed jobs and reserves up
-- to n jobs (at most 1000) under one new lease.
-- ARGV: now_ms (the caller's clock), n, lease_ms
-- Returns {token, next_due_ms (caller's clock; -1 = none, or n were taken and
-- more may be ready), paused (0/1),
-- {id, record, meta, ...}}. Leases run on the Redis server's clock.
local caller_now, n, lease_ms = argNumber(1, 'now_ms'), argNumber(2, 'n'), argNumber(3, 'lease_ms')
return reserve(serverMs(), n, lease_ms, caller_now)
