-- ARGV[3..]: worker_id, at (unix ms), by, reason. Keeps the machine's list newest
-- (by `at`) first and at most __BREAKER_RESETS_KEPT__ long. Returns 1.
local bk = P .. 'breaker:' .. ARGV[3]
local at = tonumber(ARGV[4])
local entry = '{"at_ms":' .. S(at) .. ',"by":' .. cjson.encode(ARGV[5]) .. ',"reason":' .. cjson.encode(ARGV[6]) .. '}'
-- `at` is the caller's, so a reset may arrive older than one already kept: it goes
-- after every kept one as late or later (ties: the newest write first). The list is
-- short, so finding the place is a walk over it.
local kept = redis.call('LRANGE', bk, 0, -1)
local before = nil
for _, e in ipairs(kept) do
  local ok, d = pcall(cjson.decode, e)
  if ok and type(d) == 'table' and tonumber(d.at_ms) and tonumber(d.at_ms) <= at then
    before = e
    break
  end
end
if before then
  -- The first equal string is this one: every earlier entry has a later `at`.
  redis.call('LINSERT', bk, 'BEFORE', before, entry)
else
  redis.call('RPUSH', bk, entry)
end
redis.call('LTRIM', bk, 0, __BREAKER_RESETS_KEPT__ - 1)
return 1
