-- list: jobs in one state, newest finished first.
-- ARGV: state (waiting|active|delayed|completed|dead), offset, limit (at
-- most 1000; more are cut to 1000)
-- Returns {id, record, meta, ...} (record/meta '' when missing).
local state, offset, limit = ARGV[1], math.floor(argNumber(2, 'offset')), math.floor(argNumber(3, 'limit'))
if offset < 0 then offset = 0 end
limit = math.min(limit, BATCH_MAX)
if limit <= 0 then return {} end
local ids = {}
if state == 'waiting' then
  local p = redis.call('ZRANGE', K_PRIO, offset, offset + limit - 1)
  for _, id in ipairs(p) do ids[#ids + 1] = id end
  if #ids < limit then
    local skip = math.max(0, offset - redis.call('ZCARD', K_PRIO))
    local w = redis.call('LRANGE', K_WAIT, skip, skip + limit - #ids - 1)
    for _, id in ipairs(w) do ids[#ids + 1] = id end
  end
elseif state == 'active' then
  local cursor, seen = '0', 0
  repeat
    local r = redis.call('HSCAN', K_ACTIVE, cursor, 'COUNT', 200)
    cursor = r[1]
    for i = 1, #r[2], 2 do
      seen = seen + 1
      if seen > offset and #ids < limit then ids[#ids + 1] = r[2][i] end
    end
  until cursor == '0' or #ids >= limit
elseif state == 'delayed' then
  ids = redis.call('ZRANGE', K_DELAYED, offset, offset + limit - 1)
elseif state == 'completed' then
  ids = redis.call('ZREVRANGE', K_COMPLETED, offset, offset + limit - 1)
elseif state == 'dead' then
  ids = redis.call('ZREVRANGE', K_DEAD, offset, offset + limit - 1)
else
  return redis.error_reply('unknown state ' .. state)
end
local out = {}
if #ids == 0 then return out end
local recs = redis.call('HMGET', K_JOBS, unpack(ids))
local metas = redis.call('HMGET', K_META, unpack(ids))
for i, id in ipairs(ids) do
  out[#out + 1] = id
  out[#out + 1] = recs[i] or ''
  out[#out + 1] = metas[i] or ''
end
return out
