-- ARGV[3..]: worker_id, limit. Returns {fields, log, fields, log, ...}, newest first.
local limit = tonumber(ARGV[4])
local out = {}
if limit <= 0 then return out end
local n = 0
for _, id in ipairs(redis.call('ZREVRANGE', P .. 'history:' .. ARGV[3], 0, -1)) do
  if redis.call('EXISTS', jk(id)) == 1 then
    local snap = snapshot(id)
    table.insert(out, snap[1])
    table.insert(out, snap[2])
    n = n + 1
    if n >= limit then break end
  end
end
return out
