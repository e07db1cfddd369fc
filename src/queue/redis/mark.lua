-- ARGV[3..]: id, holder, 'touched' | 'armed' | 'disarmed', then for 'armed' the
-- restore. Returns 1, or 0 when the holder does not hold the job (running, its consumer).
local id, holder, mark = ARGV[3], ARGV[4], ARGV[5]
local k = jk(id)
local f = redis.call('HMGET', k, 'state', 'consumer')
if f[1] ~= 'running' or f[2] ~= holder then return 0 end
if mark == 'touched' then
  -- Sticky: what the reboot-loop breaker counts, whatever later attempts do.
  redis.call('HSET', k, 'touched', '1')
elseif mark == 'armed' then
  redis.call('HSET', k, 'restore', ARGV[6])
elseif mark == 'disarmed' then
  redis.call('HDEL', k, 'restore')
else
  return redis.error_reply('unknown mark ' .. tostring(mark))
end
return 1
