-- counts: one consistent snapshot of a queue's sizes and counters.
-- ARGV: now_ms (unused: the throughput buckets are on the server's clock)
-- Returns {waiting, active, delayed, completed, dead, paused (0/1), per_min,
--          enqueued, completed_total, failed_total, dead_total, stalled_total}
local now = serverMs()
local bucket = math.floor(now / TPUT_BUCKET)
local per_min = 0
local b = redis.call('HMGET', K_TPUT, bucket, bucket - 1, bucket - 2, bucket - 3, bucket - 4, bucket - 5)
for i = 1, 6 do per_min = per_min + (tonumber(b[i]) or 0) end
local s = redis.call('HMGET', K_STATS, 'enqueued', 'completed', 'failed', 'dead', 'stalled')
return {
  redis.call('LLEN', K_WAIT) + redis.call('ZCARD', K_PRIO),
  redis.call('HLEN', K_ACTIVE),
  redis.call('ZCARD', K_DELAYED),
  redis.call('ZCARD', K_COMPLETED),
  redis.call('ZCARD', K_DEAD),
  (redis.call('HGET', K_CONFIG, 'paused') == '1') and 1 or 0,
  per_min,
  tonumber(s[1]) or 0, tonumber(s[2]) or 0, tonumber(s[3]) or 0, tonumber(s[4]) or 0, tonumber(s[5]) or 0,
}
