-- Waiting jobs, live leases, and the oldest waiting job's enqueue time (unix ms).
-- Lock waits are counted over the same window reserve looks at.
local ids = redis.call('ZRANGE', P .. 'queued', 0, __RESERVE_SCAN__ - 1)
local oldest = false
if ids[1] then oldest = redis.call('HGET', jk(ids[1]), 'created_at') end
local locked = 0
for _, id in ipairs(ids) do
  local w = redis.call('HGET', jk(id), 'worker_id')
  local holder = w and redis.call('GET', P .. 'lock:' .. w)
  if holder and holder ~= id then
    local h = redis.call('HMGET', jk(holder), 'state', 'lease_until')
    local until_ = tonumber(h[2])
    if h[1] == 'running' and until_ and until_ >= NOW then locked = locked + 1 end
  end
end
return {redis.call('ZCARD', P .. 'queued'), redis.call('ZCOUNT', P .. 'running', NOW, '+inf'), oldest, locked}
