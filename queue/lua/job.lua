-- job: one job with its state.
-- ARGV: id
-- Returns {state, record, meta, when_ms, result} or {} when the job does not
-- exist; result is the handler's result (msgpack) of a completed job, else ''.
-- state: waiting | active | delayed | completed | dead; when_ms is run_at
-- (delayed), finished (completed/dead), the lease deadline (active), else 0.
local id = ARGV[1]
local rec = redis.call('HGET', K_JOBS, id)
if not rec then return {} end
local meta = redis.call('HGET', K_META, id) or ''
local state, when = 'waiting', 0
local s = redis.call('ZSCORE', K_DELAYED, id)
if s then state, when = 'delayed', s end
if not s then
  s = redis.call('ZSCORE', K_COMPLETED, id)
  if s then state, when = 'completed', s end
end
if not s then
  s = redis.call('ZSCORE', K_DEAD, id)
  if s then state, when = 'dead', s end
end
if not s then
  local token = redis.call('HGET', K_ACTIVE, id)
  if token then state, when = 'active', (redis.call('ZSCORE', K_LEASES, token) or 0) end
end
local result = ''
if state == 'completed' and K_RESULTS then result = redis.call('HGET', K_RESULTS, id) or '' end
return {state, rec, meta, tostring(when), result}
