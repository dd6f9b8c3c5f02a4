-- fail: ends one attempt of a job that did not complete.
-- ARGV: now_ms (the caller's clock), id, token, mode, error, run_at_ms
--       (caller's clock), priority, token_done (0/1)
-- mode: 'retry'   the handler failed; run again at run_at_ms, if the job has
--                 attempts left (its record's `attempts`, else the queue's
--                 `attempts` setting, else 3); else dead, as for 'dead'
--       'dead'    the handler failed on its last attempt
--       'permanent' the handler reported a failure retrying cannot fix: dead
--                 at once, the remaining attempts unused (meta.permanent = true)
--       'reject'  the job is malformed (bad record, unknown name): dead at once
--       'release' give the job back untouched (consumer shutting down), with
--                 its record's priority whatever `priority` says: a consumer
--                 may release a job before it decoded the record
-- Returns 1, 2 when a 'retry' found no attempts left (the job is dead), or 0
-- when the token is stale (the lease was lost: nothing changed).
local caller_now, id, token, mode = argNumber(1, 'now_ms'), ARGV[2], ARGV[3], ARGV[4]
local err, run_at, prio, token_done = ARGV[5] or '', argNumber(6, 'run_at_ms'), argNumber(7, 'priority'), ARGV[8]
if mode ~= 'retry' and mode ~= 'dead' and mode ~= 'permanent' and mode ~= 'reject' and mode ~= 'release' then
  return redis.error_reply('unknown fail mode ' .. tostring(mode))
end
if not id or not token then return redis.error_reply('fail: id and token are required') end
if prio ~= math.floor(prio) or prio < -1000 or prio > 1000 then
  return redis.error_reply('fail: priority ' .. ARGV[7] .. ' is not an integer in -1000..1000')
end
local now = serverMs()
if token_done == '1' then
  redis.call('ZREM', K_LEASES, token)
  redis.call('HDEL', K_LEASE_JOBS, token)
end
if redis.call('HGET', K_ACTIVE, id) ~= token then return 0 end
redis.call('HDEL', K_ACTIVE, id)
if mode == 'release' then
  pushReady(id, recordPriority(id), true)
  wake()
  return 1
end
local meta = loadMeta(id)
if mode ~= 'reject' then
  meta.attempt = meta.attempt + 1
  redis.call('HINCRBY', K_STATS, 'failed', 1)
end
addError(meta, now, err)
local reply = 1
if mode == 'retry' then
  -- The attempt budget holds for every client, not only for those that
  -- count attempts themselves and send 'dead' on the last one.
  local allowed = recordAttempts(id)
  if meta.attempt >= allowed then
    mode = 'dead'
    err = err .. ' (no attempts left: ' .. meta.attempt .. ' of ' .. allowed .. ' used)'
    reply = 2
  end
end
if mode == 'retry' then
  redis.call('HSET', K_META, id, cmsgpack.pack(meta))
  run_at = toServer(run_at, caller_now, now)
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
return reply
