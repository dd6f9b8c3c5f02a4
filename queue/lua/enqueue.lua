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
local expired = redis.call('ZRANGEBYSCORE', K_UNIQUE_EXP, '-inf', now, 'LIMIT', 0, 20)
for _, key in ipairs(expired) do
  redis.call('HDEL', K_UNIQUE, key)
  redis.call('ZREM', K_UNIQUE_EXP, key)
end
-- First pass: which jobs are new. A unique key already taken (and not
-- expired) names the existing job; one taken earlier in this call names
-- that job (`dup_of`, an argument index), as if the two came in two calls.
local existing, dup_of, created = {}, {}, 0
local batch_keys = {}
for j = 0, count - 1 do
  local ukey = ARGV[3 + j * 5 + 3]
  if ukey ~= '' then
    if batch_keys[ukey] then
      dup_of[j] = batch_keys[ukey]
    else
      local id = redis.call('HGET', K_UNIQUE, ukey)
      if id then
        local exp = redis.call('ZSCORE', K_UNIQUE_EXP, ukey)
        if exp and tonumber(exp) <= now then
          redis.call('HDEL', K_UNIQUE, ukey)
          redis.call('ZREM', K_UNIQUE_EXP, ukey)
          id = nil
        end
      end
      if id then
        existing[j] = id
      else
        batch_keys[ukey] = j
      end
    end
  end
  if not existing[j] and dup_of[j] == nil then created = created + 1 end
end
-- Second pass: the new jobs take consecutive ids, in argument order, from
-- one HINCRBY; records and the FIFO list are written a batch at a time,
-- since a call from Lua costs more than the write it makes. out[2j + 1] is
-- job j's id, which a later duplicate of its unique key reads back.
local out = {}
local first_id = 0
if created > 0 then first_id = redis.call('HINCRBY', K_SEQ, 'job', created) - created end
local next_id = first_id
local records, fifo, nrecords, nfifo = {}, {}, 0, 0
for j = 0, count - 1 do
  local base = 3 + j * 5
  local id
  if existing[j] then
    id = existing[j]
    out[2 * j + 2] = 0
  elseif dup_of[j] ~= nil then
    id = out[2 * dup_of[j] + 1]
    out[2 * j + 2] = 0
  else
    next_id = next_id + 1
    id = string.format('%d', next_id)
    out[2 * j + 2] = 1
    records[nrecords + 1] = id
    records[nrecords + 2] = ARGV[base]
    nrecords = nrecords + 2
    local ukey = ARGV[base + 3]
    if ukey ~= '' then
      redis.call('HSET', K_UNIQUE, ukey, id)
      redis.call('ZREM', K_UNIQUE_EXP, ukey)
      redis.call('HSET', K_UNIQUE_OF, id, tonumber(ARGV[base + 4]) .. ':' .. ukey)
    end
    local run_at = toServer(tonumber(ARGV[base + 1]), caller_now, now)
    local prio = tonumber(ARGV[base + 2])
    if run_at > now then
      redis.call('ZADD', K_DELAYED, run_at, id)
    elseif prio ~= 0 then
      pushReady(id, prio, false)
    else
      nfifo = nfifo + 1
      fifo[nfifo] = id
    end
  end
  out[2 * j + 1] = id
end
for i = 1, nrecords, 1000 do
  redis.call('HSET', K_JOBS, unpack(records, i, math.min(i + 999, nrecords)))
end
for i = 1, nfifo, 1000 do
  redis.call('RPUSH', K_WAIT, unpack(fifo, i, math.min(i + 999, nfifo)))
end
if created > 0 then
  redis.call('HINCRBY', K_STATS, 'enqueued', created)
  wake()
end
return out
