-- reserve: recovers expired leases, promotes due delayed jobs and reserves up
-- to n jobs under one new lease.
-- ARGV: now_ms, n, lease_ms
-- Returns {token, next_due_ms (-1 = none), paused (0/1), {id, record, meta, ...}}.
return reserve(tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))
