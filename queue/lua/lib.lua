-- Shared prologue of every queue script (prepended at build time).
-- KEYS are the queue's keys in the fixed order documented in docs/QUEUE.md;
-- all share the {queue} hash tag, so a queue lives in one Redis Cluster slot.
local K_WAIT, K_PRIO, K_DELAYED, K_JOBS, K_META = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_ACTIVE, K_LEASES, K_LEASE_JOBS, K_CONFIG = KEYS[6], KEYS[7], KEYS[8], KEYS[9]
local K_STATS, K_TPUT, K_COMPLETED, K_DEAD, K_WAKE = KEYS[10], KEYS[11], KEYS[12], KEYS[13], KEYS[14]
local K_SEQ, K_RATE, K_UNIQUE, K_UNIQUE_OF, K_UNIQUE_EXP = KEYS[15], KEYS[16], KEYS[17], KEYS[18], KEYS[19]
-- Handlers' results of completed jobs; nil for a caller that passes only the
-- first 19 keys (a client written before results existed).
local K_RESULTS = KEYS[20]

local PRIO_SHIFT = 1099511627776 -- 2^40: priority above, enqueue order below
local TPUT_BUCKET = 10000        -- throughput buckets of 10 s; six make a minute
-- The most ids one call takes from a set (a reservation, a drain or clean
-- batch, a retention trim), so no call blocks Redis for long or passes
-- unpack() more values than Lua's stack holds (about 8,000).
local BATCH_MAX = 1000
local LEASE_MAX = 86400000       -- a lease (or an extension) is at most a day

-- A numeric argument, or an error reply naming it, raised before the
-- script writes anything: a half-run script is not rolled back.
local function argNumber(i, what)
  local v = tonumber(ARGV[i])
  if not v or v ~= v then error({err = 'ARGV[' .. i .. '] (' .. what .. ') is not a number'}) end
  return v
end

-- The scripts' one clock is the Redis server's (TIME), so a consumer whose
-- own clock is ahead cannot expire another consumer's live lease, nor keep
-- its own alive past its deadline. Times a caller sends (run_at) or gets back
-- (next_due) are in the caller's clock, and are moved by the difference
-- between the two clocks at the call: caller_now is the caller's now_ms
-- argument (nil or 0: the caller's times are taken as they are).
local function serverMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function toServer(t, caller_now, now)
  if not caller_now or caller_now <= 0 or t <= 0 then return t end
  return t - caller_now + now
end

local function toCaller(t, caller_now, now)
  if not caller_now or caller_now <= 0 or t < 0 then return t end
  return t - now + caller_now
end

local function cfgNumber(field, default)
  local v = redis.call('HGET', K_CONFIG, field)
  if v then return tonumber(v) or default end
  return default
end

-- Several settings in one call (a call from Lua costs more than the lookup):
-- cfgNumbers({'a', 1, 'b', 2}) returns the values of a and b, or their defaults.
local function cfgNumbers(pairs_)
  local fields = {}
  for i = 1, #pairs_, 2 do fields[#fields + 1] = pairs_[i] end
  local got = redis.call('HMGET', K_CONFIG, unpack(fields))
  local out = {}
  for i = 1, #fields do
    local default = pairs_[2 * i]
    out[i] = got[i] and (tonumber(got[i]) or default) or default
  end
  return unpack(out)
end

local function prioScore(prio, id)
  return (1000 - prio) * PRIO_SHIFT + (tonumber(id) or 0) % PRIO_SHIFT
end

-- Makes a job reservable: priority jobs in the priority set, others at the
-- tail of the wait list (or its head for jobs that go back to work).
local function pushReady(id, prio, front)
  if prio and prio ~= 0 then
    redis.call('ZADD', K_PRIO, prioScore(prio, id), id)
  elseif front then
    redis.call('LPUSH', K_WAIT, id)
  else
    redis.call('RPUSH', K_WAIT, id)
  end
end

local function recordPriority(id)
  local rec = redis.call('HGET', K_JOBS, id)
  if not rec then return 0 end
  local ok, t = pcall(cmsgpack.unpack, rec)
  local prio = ok and type(t) == 'table' and tonumber(t.priority)
  if prio and prio == math.floor(prio) and prio >= -1000 and prio <= 1000 then return prio end
  return 0
end

-- A job's meta with every field the scripts use of the type they use it as:
-- meta written by another client may be anything, and an arithmetic error on
-- it inside recoverExpired would fail every reservation of the queue.
local function loadMeta(id)
  local m = redis.call('HGET', K_META, id)
  if m then
    local ok, t = pcall(cmsgpack.unpack, m)
    if ok and type(t) == 'table' then
      t.attempt = tonumber(t.attempt) or 0
      t.stalls = tonumber(t.stalls) or 0
      local errs = {}
      if type(t.errors) == 'table' then
        for _, e in ipairs(t.errors) do
          if type(e) == 'table' then errs[#errs + 1] = e end
        end
      end
      t.errors = errs
      if t.reason ~= nil and type(t.reason) ~= 'string' then t.reason = nil end
      return t
    end
  end
  return {attempt = 0, stalls = 0, errors = {}}
end

-- How many runs the job may have: its record's `attempts`, else the queue's
-- `attempts` setting, else 3 (as the consumer reads a record).
local function recordAttempts(id)
  local rec = redis.call('HGET', K_JOBS, id)
  if rec then
    local ok, t = pcall(cmsgpack.unpack, rec)
    if ok and type(t) == 'table' and tonumber(t.attempts) and tonumber(t.attempts) >= 1 then
      return math.floor(tonumber(t.attempts))
    end
  end
  local d = cfgNumber('attempts', 3)
  if d < 1 then d = 1 end
  return d
end

local function addError(meta, now, text)
  local errs = meta.errors
  errs[#errs + 1] = {at = now, attempt = meta.attempt, error = string.sub(text, 1, 2000)}
  while #errs > 10 do table.remove(errs, 1) end
end

-- Meta exists only for jobs that failed or stalled, results only for jobs
-- whose handler reported one: while a hash is empty there is nothing of it to
-- delete, and skipping the HDEL saves passing every id to it.
local function hashInUse(key)
  return key ~= nil and redis.call('HLEN', key) > 0
end

local function deleteJobs(ids)
  local meta, results = hashInUse(K_META), hashInUse(K_RESULTS)
  for i = 1, #ids, 500 do
    local j = math.min(i + 499, #ids)
    redis.call('HDEL', K_JOBS, unpack(ids, i, j))
    if meta then redis.call('HDEL', K_META, unpack(ids, i, j)) end
    if results then redis.call('HDEL', K_RESULTS, unpack(ids, i, j)) end
  end
end

-- Frees the unique keys of finished jobs: each stays taken for its TTL after
-- the job finished (0 = free at once).
local function releaseUnique(ids, now)
  if redis.call('HLEN', K_UNIQUE_OF) == 0 then return end
  local owned = redis.call('HMGET', K_UNIQUE_OF, unpack(ids))
  for i, v in ipairs(owned) do
    local sep = v and string.find(v, ':', 1, true)
    if sep then
      local ttl, key = tonumber(string.sub(v, 1, sep - 1)) or 0, string.sub(v, sep + 1)
      if ttl > 0 then
        redis.call('ZADD', K_UNIQUE_EXP, now + ttl, key)
      elseif redis.call('HGET', K_UNIQUE, key) == ids[i] then
        redis.call('HDEL', K_UNIQUE, key)
      end
      redis.call('HDEL', K_UNIQUE_OF, ids[i])
    elseif v then
      redis.call('HDEL', K_UNIQUE_OF, ids[i])
    end
  end
end

-- Records finished jobs in a retention set (completed or dead) and trims it
-- by count and age, deleting the trimmed jobs' records.
local function retain(zkey, ids, now, keep, age)
  releaseUnique(ids, now)
  if keep <= 0 then
    deleteJobs(ids)
    return
  end
  -- The score as text once: Lua would format the number again for every job.
  local score = string.format('%d', now)
  local args = {}
  for i, id in ipairs(ids) do
    args[2 * i - 1] = score
    args[2 * i] = id
  end
  for i = 1, #args, 1000 do
    redis.call('ZADD', zkey, unpack(args, i, math.min(i + 999, #args)))
  end
  -- At most BATCH_MAX per call: after `keep` was lowered a long way, the
  -- excess goes over the next calls instead of in one long one.
  local n = redis.call('ZCARD', zkey)
  if n > keep then
    local over = math.min(n - keep, BATCH_MAX)
    local old = redis.call('ZRANGE', zkey, 0, over - 1)
    deleteJobs(old)
    redis.call('ZREMRANGEBYRANK', zkey, 0, over - 1)
  end
  if age > 0 then
    local old = redis.call('ZRANGEBYSCORE', zkey, '-inf', now - age, 'LIMIT', 0, 200)
    if #old > 0 then
      deleteJobs(old)
      redis.call('ZREM', zkey, unpack(old))
    end
  end
end

local function toDead(id, meta, now, reason)
  meta.reason = reason
  meta.finished = now
  redis.call('HSET', K_META, id, cmsgpack.pack(meta))
  redis.call('HINCRBY', K_STATS, 'dead', 1)
  retain(K_DEAD, {id}, now, cfgNumber('keep_dead', 10000), cfgNumber('keep_dead_age', 604800000))
end

local function wake()
  redis.call('ZADD', K_WAKE, 0, '1')
end

-- Puts the jobs of expired leases back to work (or to dead past the stall
-- cap). Any consumer runs this on every reservation, so no reaper is needed.
local function recoverExpired(now)
  local tokens = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', now, 'LIMIT', 0, 20)
  local recovered = 0
  for _, token in ipairs(tokens) do
    local list = redis.call('HGET', K_LEASE_JOBS, token)
    if list then
      for id in string.gmatch(list, '[^,]+') do
        if redis.call('HGET', K_ACTIVE, id) == token then
          redis.call('HDEL', K_ACTIVE, id)
          local meta = loadMeta(id)
          meta.stalls = meta.stalls + 1
          addError(meta, now, 'lease expired: the consumer stopped or lost Redis while running the job')
          redis.call('HINCRBY', K_STATS, 'stalled', 1)
          local cap = cfgNumber('max_stalls', 3)
          if meta.stalls > cap then
            toDead(id, meta, now, 'stalled ' .. meta.stalls .. ' times (max_stalls ' .. cap .. ')')
          else
            redis.call('HSET', K_META, id, cmsgpack.pack(meta))
            pushReady(id, recordPriority(id), true)
            recovered = recovered + 1
          end
        end
      end
    end
    redis.call('HDEL', K_LEASE_JOBS, token)
    redis.call('ZREM', K_LEASES, token)
  end
  if recovered > 0 then wake() end
end

local function promoteDelayed(now)
  local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, 500)
  if #due == 0 then return end
  redis.call('ZREM', K_DELAYED, unpack(due))
  for _, id in ipairs(due) do pushReady(id, recordPriority(id), false) end
end

local function popReady(n)
  -- Positive priorities first, then the FIFO list, then negative priorities.
  local ids = redis.call('ZRANGEBYSCORE', K_PRIO, '-inf', '(' .. (1000 * PRIO_SHIFT), 'LIMIT', 0, n)
  if #ids > 0 then redis.call('ZREM', K_PRIO, unpack(ids)) end
  if #ids < n then
    local got = redis.call('LPOP', K_WAIT, n - #ids)
    if got and #ids == 0 then
      ids = got  -- the usual case: no priority jobs, nothing to copy
    elseif got then
      local k = #ids
      for i = 1, #got do ids[k + i] = got[i] end
    end
  end
  if #ids < n then
    local lo = redis.call('ZRANGE', K_PRIO, 0, n - #ids - 1)
    for _, id in ipairs(lo) do ids[#ids + 1] = id end
    if #lo > 0 then redis.call('ZREM', K_PRIO, unpack(lo)) end
  end
  return ids
end

-- The earliest time something may become reservable without an enqueue
-- (a delayed job, an expiring lease, a rate window); -1 when none.
local function nextDue(extra)
  local due = extra or -1
  local d = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  if d[2] then
    local t = tonumber(d[2])
    if due < 0 or t < due then due = t end
  end
  local l = redis.call('ZRANGE', K_LEASES, 0, 0, 'WITHSCORES')
  if l[2] then
    local t = tonumber(l[2])
    if due < 0 or t < due then due = t end
  end
  return due
end

-- Reserves up to n jobs (at most BATCH_MAX) under one lease (one fencing
-- token for the batch); now is the server's clock, caller_now the caller's.
-- Returns {token, next_due (caller's clock), paused, {id, record, meta, ...}}.
local function reserve(now, n, lease_ms, caller_now)
  n = math.min(math.floor(n), BATCH_MAX)
  lease_ms = math.min(math.max(math.floor(lease_ms), 1), LEASE_MAX)
  recoverExpired(now)
  promoteDelayed(now)
  local paused, limit, window = cfgNumbers({'paused', 0, 'rate_limit', 0, 'rate_window', 1000})
  if paused == 1 then
    return {'', toCaller(nextDue(), caller_now, now), 1, {}}
  end
  local rate_due = nil
  local rnow = now
  if limit > 0 and n > 0 then
    -- Sliding window: K_RATE holds one entry per job reserved within the
    -- last `window` ms, scored by the Redis server's clock (one clock for
    -- every host), so no span of `window` ms ever holds more than `limit`.
    if redis.call('TYPE', K_RATE)['ok'] == 'string' then redis.call('DEL', K_RATE) end
    redis.call('ZREMRANGEBYSCORE', K_RATE, '-inf', rnow - window)
    local used = redis.call('ZCARD', K_RATE)
    if used >= limit then
      -- Full until the oldest entry leaves the window.
      local oldest = redis.call('ZRANGE', K_RATE, 0, used - limit, 'WITHSCORES')
      n = 0
      rate_due = now + math.max(tonumber(oldest[#oldest]) + window - rnow, 1)
    elseif n > limit - used then
      n = limit - used
    end
  end
  if n <= 0 then return {'', toCaller(nextDue(rate_due), caller_now, now), 0, {}} end
  local ids = popReady(n)
  if #ids == 0 then return {'', toCaller(nextDue(), caller_now, now), 0, {}} end
  local token = tostring(redis.call('HINCRBY', K_SEQ, 'lease', 1))
  if limit > 0 then
    local entries = {}
    local score = string.format('%d', rnow)
    for i = 1, #ids do
      entries[#entries + 1] = score
      entries[#entries + 1] = token .. ':' .. i
    end
    for i = 1, #entries, 1000 do
      redis.call('ZADD', K_RATE, unpack(entries, i, math.min(i + 999, #entries)))
    end
    redis.call('PEXPIRE', K_RATE, window)
  end
  local recs = redis.call('HMGET', K_JOBS, unpack(ids))
  local metas = hashInUse(K_META) and redis.call('HMGET', K_META, unpack(ids)) or {}
  -- Filled by index, not by t[#t + 1]: this loop runs once per job.
  local out, held, active = {}, {}, {}
  local nheld = 0
  for i, id in ipairs(ids) do
    if recs[i] then
      nheld = nheld + 1
      held[nheld] = id
      active[2 * nheld - 1] = id
      active[2 * nheld] = token
      out[3 * nheld - 2] = id
      out[3 * nheld - 1] = recs[i]
      out[3 * nheld] = metas[i] or ''
    else
      local meta = loadMeta(id)
      toDead(id, meta, now, 'malformed job: no record for id ' .. id)
    end
  end
  if nheld > 0 then
    redis.call('HSET', K_ACTIVE, unpack(active))
    redis.call('HSET', K_LEASE_JOBS, token, table.concat(held, ','))
    redis.call('ZADD', K_LEASES, now + lease_ms, token)
  else
    token = ''
  end
  -- A short batch took every ready job: nothing is left to wake another
  -- consumer for, and the caller may want to know when to look again. A
  -- full one may have left work: pass the wake-up on to a blocked consumer;
  -- its caller asks again at once, so no next_due (-1) is worked out.
  if #ids < n then return {token, toCaller(nextDue(), caller_now, now), 0, out} end
  if redis.call('LLEN', K_WAIT) > 0 or redis.call('ZCARD', K_PRIO) > 0 then wake() end
  return {token, -1, 0, out}
end
