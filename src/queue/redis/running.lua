-- No arguments. Returns {id, holder, id, holder, ...}: every running job, its lease
-- live or expired, oldest first. Work is one step per running job (at most one per
-- machine), the size of the answer.
local out = {}
local seen = {}
local function list(id)
  if seen[id] then return end
  seen[id] = true
  local f = redis.call('HMGET', jk(id), 'state', 'consumer')
  if f[1] == 'running' then
    out[#out + 1] = id
    out[#out + 1] = f[2] or ''
  else
    -- Final or gone without passing through finalize (say, finished by an older roller
    -- that knew nothing of this set): not running, and no longer listed.
    redis.call('ZREM', P .. 'leased', id)
  end
end
for _, id in ipairs(redis.call('ZRANGE', P .. 'leased', 0, -1)) do list(id) end
-- Live leases taken by an older roller, which does not add to `leased`.
for _, id in ipairs(redis.call('ZRANGE', P .. 'running', 0, -1)) do list(id) end
return out
