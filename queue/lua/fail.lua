-- fail: ends one attempt of a job that did not complete.
-- ARGV: now_ms, id, token, mode, error, run_at_ms, priority, token_done (0/1)
-- mode: 'retry'   the handler failed; run again at run_at_ms
--       'dead'    the handler failed on its last attempt
--       'permanent' the handler reported a failure retrying cannot fix: dead
--                 at once, the remaining attempts unused (meta.permanent = true)
--       'reject'  the job is malformed (bad record, unknown name): dead at once
--       'release' give the job back untouched (consumer shutting down)
-- Returns 1, or 0 when the token is stale (the lease was lost: nothing changed).
local now, id, token, mode = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4]
local err, run_at, prio, token_done = ARGV[5], tonumber(ARGV[6]), tonumber(ARGV[7]), ARGV[8]
if mode ~= 'retry' and mode ~= 'dead' and mode ~= 'permanent' and mode ~= 'reject' and mode ~= 'release' then
  return redis.error_reply('unknown fail mode ' .. mode)
end
if token_done == '1' then
  redis.call('ZREM', K_LEASES, token)
  redis.call('HDEL', K_LEASE_JOBS, token)
end
if redis.call('HGET', K_ACTIVE, id) ~= token then return 0 end
redis.call('HDEL', K_ACTIVE, id)
if mode == 'release' then
  pushReady(id, prio, true)
  wake()
  return 1
end
local meta = loadMeta(id)
if mode ~= 'reject' then
  meta.attempt = (meta.attempt or 0) + 1
  redis.call('HINCRBY', K_STATS, 'failed', 1)
end
addError(meta, now, err)
if mode == 'retry' then
  redis.call('HSET', K_META, id, cmsgpack.pack(meta))
  if run_at <= now then
    pushReady(id, prio, false)
  else
    redis.call('ZADD', K_DELAYED, run_at, id)
  end
  wake()
else
  if mode == 'permanent' then meta.permanent = true end
  toDead(id, meta, now, err)
end
return 1
