-- enqueue: adds one or more jobs.
-- ARGV: now_ms (the caller's clock), count, then per job: record (msgpack),
--       run_at_ms (caller's clock; 0 = now), priority, unique_key ('' = none),
--       unique_ttl_ms.
-- Returns {id, created (1) or existing (0), ...} in argument order.
-- Every argument is checked before anything is written, so a bad one fails
-- the whole call instead of enqueuing some of its jobs without their ids.
local caller_now, count = argNumber(1, 'now_ms'), argNumber(2, 'count')
if count < 0 or count ~= math.floor(count) or #ARGV ~= 2 + count * 5 then
  return redis.error_reply('enqueue: ' .. #ARGV .. ' arguments do not hold count (' .. ARGV[2] .. ') jobs of 5')
end
for j = 0, count - 1 do
  local base = 3 + j * 5
  argNumber(base + 1, 'run_at_ms')
  argNumber(base + 4, 'unique_ttl_ms')
  local prio = argNumber(base + 2, 'priority')
  if prio ~= math.floor(prio) or prio < -1000 or prio > 1000 then
    return redis.error_reply('enqueue: priority ' .. ARGV[base + 2] .. ' is not an integer in -1000..1000')
  end
  if ARGV[base] == '' then return redis.error_reply('enqueue: job ' .. (j + 1) .. ' has an empty record') end
end
local now = serverMs()
local out = {}
local woke = false
local expired = redis.call('ZRANGEBYSCORE', K_UNIQUE_EXP, '-inf', now, 'LIMIT', 0, 20)
for _, key in ipairs(expired) do
  redis.call('HDEL', K_UNIQUE, key)
  redis.call('ZREM', K_UNIQUE_EXP, key)
end
for j = 0, count - 1 do
  local base = 3 + j * 5
  local record, prio = ARGV[base], tonumber(ARGV[base + 2])
  local run_at = toServer(tonumber(ARGV[base + 1]), caller_now, now)
  local ukey, uttl = ARGV[base + 3], tonumber(ARGV[base + 4])
  local existing = nil
  if ukey ~= '' then
    existing = redis.call('HGET', K_UNIQUE, ukey)
    if existing then
      local exp = redis.call('ZSCORE', K_UNIQUE_EXP, ukey)
      if exp and tonumber(exp) <= now then
        redis.call('HDEL', K_UNIQUE, ukey)
        redis.call('ZREM', K_UNIQUE_EXP, ukey)
        existing = nil
      end
    end
  end
  if existing then
    out[#out + 1] = existing
    out[#out + 1] = 0
  else
    local id = tostring(redis.call('HINCRBY', K_SEQ, 'job', 1))
    redis.call('HSET', K_JOBS, id, record)
    if ukey ~= '' then
      redis.call('HSET', K_UNIQUE, ukey, id)
      redis.call('ZREM', K_UNIQUE_EXP, ukey)
      redis.call('HSET', K_UNIQUE_OF, id, uttl .. ':' .. ukey)
    end
    if run_at > now then
      redis.call('ZADD', K_DELAYED, run_at, id)
    else
      pushReady(id, prio, false)
    end
    woke = true
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
local created = 0
for i = 2, #out, 2 do created = created + out[i] end
if created > 0 then redis.call('HINCRBY', K_STATS, 'enqueued', created) end
if woke then wake() end
return out
