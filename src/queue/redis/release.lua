-- ARGV[3..]: id, consumer. Returns 1, or 0 when the consumer does not hold the job.
local id, consumer = ARGV[3], ARGV[4]
local k = jk(id)
local f = redis.call('HMGET', k, 'state', 'consumer', 'attempts', 'max_attempts', 'seq', 'worker_id', 'restore')
if f[1] ~= 'running' or f[2] ~= consumer then return 0 end
redis.call('DEL', P .. 'held:' .. consumer)
local attempts = tonumber(f[3]) or 0
local max = tonumber(f[4]) or 1
local restore = f[7]
-- A job handed back with a power change still to repair goes back for the repair
-- (within its recovery attempts), never to run its task again.
local cap = max
if restore then cap = max + __RECOVERY_ATTEMPTS__ end
if attempts >= cap then
  -- Requeueing would hand the job out more than max_attempts times (or, with a
  -- restore armed, more than its recoveries allow).
  local reason
  if restore then
    reason = 'handed back by ' .. consumer .. ' with its repair not done, after ' .. S(attempts) ..
      ' attempt(s); the power change it left half-done was NOT undone: ' .. restore
  else
    reason = 'handed back by ' .. consumer .. ' (shutdown) on its last allowed attempt (' .. S(attempts) ..
      ' of ' .. S(max) .. '); not retried'
  end
  finalize(id, 'failed', {'error', reason}, reason)
  return 1
end
redis.call('HSET', k, 'state', 'queued')
redis.call('HDEL', k, 'consumer', 'lease_until')
redis.call('ZREM', P .. 'running', id)
redis.call('ZREM', P .. 'leased', id)
redis.call('ZADD', P .. 'queued', f[5], id)
if f[6] and redis.call('GET', P .. 'lock:' .. f[6]) == id then redis.call('DEL', P .. 'lock:' .. f[6]) end
add_log(id, 'handed back by ' .. consumer .. ' (shutdown)')
wake()
return 1
