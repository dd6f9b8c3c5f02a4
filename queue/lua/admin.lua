-- admin: per-queue controls.
-- ARGV: now_ms, op, arg
-- op: pause | resume
--     drain            delete every waiting and delayed job
--     clean            arg = age_ms: drop completed and dead jobs finished
--                      more than age_ms ago (0 = all of them)
--     retry            arg = id: a dead job goes back to waiting, attempts reset
--     delete           arg = id: remove a job that is not active
--     config           arg = field, ARGV[4] = value ('' deletes the field)
-- Returns the number of jobs affected (pause/resume/config: 1), or an error.
local now, op, arg = tonumber(ARGV[1]), ARGV[2], ARGV[3]
if op == 'pause' then
  redis.call('HSET', K_CONFIG, 'paused', '1')
  return 1
elseif op == 'resume' then
  redis.call('HDEL', K_CONFIG, 'paused')
  wake()
  return 1
elseif op == 'drain' then
  local ids = redis.call('LRANGE', K_WAIT, 0, -1)
  for _, id in ipairs(redis.call('ZRANGE', K_PRIO, 0, -1)) do ids[#ids + 1] = id end
  for _, id in ipairs(redis.call('ZRANGE', K_DELAYED, 0, -1)) do ids[#ids + 1] = id end
  if #ids > 0 then
    releaseUnique(ids, 0)
    deleteJobs(ids)
  end
  redis.call('DEL', K_WAIT, K_PRIO, K_DELAYED)
  return #ids
elseif op == 'clean' then
  local age = tonumber(arg) or 0
  local total = 0
  for _, z in ipairs({K_COMPLETED, K_DEAD}) do
    while true do
      local old = redis.call('ZRANGEBYSCORE', z, '-inf', now - age, 'LIMIT', 0, 1000)
      if #old == 0 then break end
      deleteJobs(old)
      redis.call('ZREM', z, unpack(old))
      total = total + #old
    end
  end
  return total
elseif op == 'retry' then
  if not redis.call('ZSCORE', K_DEAD, arg) then
    return redis.error_reply('job ' .. arg .. ' is not dead')
  end
  redis.call('ZREM', K_DEAD, arg)
  local meta = loadMeta(arg)
  meta.attempt, meta.stalls, meta.reason, meta.finished, meta.permanent = 0, 0, nil, nil, nil
  redis.call('HSET', K_META, arg, cmsgpack.pack(meta))
  pushReady(arg, recordPriority(arg), false)
  wake()
  return 1
elseif op == 'delete' then
  if redis.call('HGET', K_ACTIVE, arg) then
    return redis.error_reply('job ' .. arg .. ' is active; wait for it to finish')
  end
  if not redis.call('HGET', K_JOBS, arg) then return 0 end
  redis.call('LREM', K_WAIT, 0, arg)
  redis.call('ZREM', K_PRIO, arg)
  redis.call('ZREM', K_DELAYED, arg)
  redis.call('ZREM', K_COMPLETED, arg)
  redis.call('ZREM', K_DEAD, arg)
  releaseUnique({arg}, 0)
  deleteJobs({arg})
  return 1
elseif op == 'config' then
  if ARGV[4] == '' then
    redis.call('HDEL', K_CONFIG, arg)
  else
    redis.call('HSET', K_CONFIG, arg, ARGV[4])
  end
  return 1
end
return redis.error_reply('unknown admin op ' .. op)
