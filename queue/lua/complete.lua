-- complete: acknowledges finished jobs, closes finished leases and may
-- reserve the next batch in the same call.
-- ARGV: now_ms (the caller's clock), n_jobs, n_done_tokens, fetch_n, lease_ms,
--       then n_jobs pairs (id, token), then n_done_tokens tokens,
--       then any number of pairs (i, result): the result (msgpack) of the
--       i-th job of this call (1-based); jobs without a result have no pair.
-- Returns {{1|0 per job: acknowledged or refused (stale token)}, reserve
-- result as in reserve.lua or {} when fetch_n is 0}.
local caller_now, n, ndone = argNumber(1, 'now_ms'), argNumber(2, 'n_jobs'), argNumber(3, 'n_done_tokens')
local fetch_n, lease_ms = argNumber(4, 'fetch_n'), argNumber(5, 'lease_ms')
local base = 6 + 2 * n
if n < 0 or ndone < 0 or #ARGV < base + ndone - 1 then
  return redis.error_reply('complete: ' .. #ARGV .. ' arguments are fewer than n_jobs and n_done_tokens say')
end
local now = serverMs()
local results = {}
local has_results = false
for i = base + ndone, #ARGV - 1, 2 do
  local at = tonumber(ARGV[i])
  if at then
    results[at] = ARGV[i + 1]
    has_results = true
  end
end
if has_results and not K_RESULTS then
  return redis.error_reply('complete: results need the 20th key (results); see docs/QUEUE.md')
end
-- The loops below run once per job, so they fill their tables by index
-- (t[#t + 1] costs a length lookup per element).
local flags, done, stored = {}, {}, {}
local ndone_jobs, nstored = 0, 0
-- One HMGET for the batch's lease holders (at most BATCH_MAX ids a call):
-- a call from Lua costs more than the lookup it makes.
local holders = {}
for first = 0, n - 1, BATCH_MAX do
  local ids = {}
  for i = first, math.min(first + BATCH_MAX, n) - 1 do ids[i - first + 1] = ARGV[6 + 2 * i] end
  local got = redis.call('HMGET', K_ACTIVE, unpack(ids))
  if first == 0 then
    holders = got
  else
    for k = 1, #got do holders[first + k] = got[k] end
  end
end
-- A job named twice in one call is acknowledged once.
local seen = {}
for i = 0, n - 1 do
  local id, token = ARGV[6 + 2 * i], ARGV[7 + 2 * i]
  if holders[i + 1] == token and not seen[id] then
    seen[id] = true
    ndone_jobs = ndone_jobs + 1
    done[ndone_jobs] = id
    flags[i + 1] = 1
    if has_results then
      local result = results[i + 1]
      if result and result ~= '' then
        stored[nstored + 1] = id
        stored[nstored + 2] = result
        nstored = nstored + 2
      end
    end
  else
    flags[i + 1] = 0
  end
end
if ndone_jobs > 0 then
  for i = 1, ndone_jobs, 500 do
    redis.call('HDEL', K_ACTIVE, unpack(done, i, math.min(i + 499, ndone_jobs)))
  end
  -- Stored before retain(), which deletes them with their jobs when the
  -- queue keeps no completed jobs or trims old ones.
  for i = 1, nstored, 1000 do
    redis.call('HSET', K_RESULTS, unpack(stored, i, math.min(i + 999, nstored)))
  end
  redis.call('HINCRBY', K_STATS, 'completed', ndone_jobs)
  local bucket = math.floor(now / TPUT_BUCKET)
  -- Buckets older than a minute go when a new one starts, not on every
  -- call; all of them, so an idle spell leaves none behind.
  if redis.call('HINCRBY', K_TPUT, bucket, ndone_jobs) == ndone_jobs then
    local old = {}
    for _, b in ipairs(redis.call('HKEYS', K_TPUT)) do
      local t = tonumber(b)
      if not t or t < bucket - 6 then old[#old + 1] = b end
      if #old >= BATCH_MAX then break end
    end
    if #old > 0 then redis.call('HDEL', K_TPUT, unpack(old)) end
  end
  retain(K_COMPLETED, done, now, cfgNumbers({'keep_completed', 1000, 'keep_completed_age', 3600000}))
end
for i = 0, ndone - 1 do
  local token = ARGV[base + i]
  redis.call('ZREM', K_LEASES, token)
  redis.call('HDEL', K_LEASE_JOBS, token)
end
local reply = {}
if fetch_n > 0 then reply = reserve(now, fetch_n, lease_ms, caller_now) end
return {flags, reply}
