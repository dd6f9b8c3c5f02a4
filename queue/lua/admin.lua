-- admin: per-queue controls.
-- ARGV: now_ms (unused: times are the server's clock), op, arg
-- op: pause | resume
--     drain            delete up to 1000 waiting and delayed jobs
--     clean            arg = age_ms: drop up to 1000 completed and dead jobs
--                      finished more than age_ms ago (0 = all of them)
--                      (drain and clean work in batches so that no call blocks
--                      Redis for long: callers repeat them until a call
--                      affects fewer than 1000 jobs)
--     retry            arg = id: a dead job goes back to waiting, attempts reset
--     delete           arg = id: remove a job that is not active
--     config           arg = field, ARGV[4] = value ('' deletes the field)
-- Returns the number of jobs affected (pause/resume/config: 1), or an error.
local now, op, arg = serverMs(), ARGV[2], ARGV[3]
if op == 'pause' then
  redis.call('HSET', K_CONFIG, 'paused', '1')
  return 1
elseif op == 'resume' then
  redis.call('HDEL', K_CONFIG, 'paused')
  wake()
  return 1
elseif op == 'drain' then
  local ids = redis.call('LRANGE', K_WAIT, 0, BATCH_MAX - 1)
  if #ids > 0 then redis.call('LTRIM', K_WAIT, #ids, -1) end
  for _, z in ipairs({K_PRIO, K_DELAYED}) do
    if #ids < BATCH_MAX then
      local more = redis.call('ZRANGE', z, 0, BATCH_MAX - #ids - 1)
      if #more > 0 then
        redis.call('ZREM', z, unpack(more))
        for _, id in ipairs(more) do ids[#ids + 1] = id end
      end
    end
  end
  if #ids > 0 then
    releaseUnique(ids, 0)
    deleteJobs(ids)
  end
  return #ids
elseif op == 'clean' then
  local age = tonumber(arg) or 0
  local total = 0
  for _, z in ipairs({K_COMPLETED, K_DEAD}) do
    if total < BATCH_MAX then
      local old = redis.call('ZRANGEBYSCORE', z, '-inf', now - age, 'LIMIT', 0, BATCH_MAX - total)
      if #old > 0 then
        deleteJobs(old)
        redis.call('ZREM', z, unpack(old))
        total = total + #old
      end
    end
  end
  return total
elseif op == 'retry' then
  if not arg or not redis.call('ZSCORE', K_DEAD, arg) then
    return redis.error_reply('job ' .. tostring(arg) .. ' is not dead')
  end
  redis.call('ZREM', K_DEAD, arg)
  local meta = loadMeta(arg)
  meta.attempt, meta.stalls, meta.reason, meta.finished, meta.permanent = 0, 0, nil, nil, nil
  redis.call('HSET', K_META, arg, cmsgpack.pack(meta))
  pushReady(arg, recordPriority(arg), false)
  wake()
  return 1
elseif op == 'delete' then
  if not arg then return redis.error_reply('delete: the job id is missing') end
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
  if not arg or not ARGV[4] then return redis.error_reply('config: field and value are required') end
  if ARGV[4] == '' then
    redis.call('HDEL', K_CONFIG, arg)
  else
    redis.call('HSET', K_CONFIG, arg, ARGV[4])
  end
  return 1
end
return redis.error_reply('unknown admin op ' .. tostring(op))
