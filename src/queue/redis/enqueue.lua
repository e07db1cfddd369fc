-- ARGV[3..]: new id, worker_id, worker_group, task, requester, max_attempts,
-- history cap, deadline (ms, Redis's clock), the replay claim's nonce digest (hex) and
-- its expiry (ms, Redis's clock) or two empty strings for none, then field/value pairs
-- of the optional fields that are set.
-- Returns {0, fields, log} for the existing job it coalesced into, {1, created_at ms}
-- for a new one (or for this very id, queued by an earlier try of the same call), {2}
-- when it runs after the deadline: the caller has answered "not queued" by then
-- (a Redis that hung with the call in its buffer runs it when it resumes), so nothing
-- is queued, or {3} when the nonce is claimed already (a replayed header): nothing is
-- queued. The claim is the one `claim_nonce` makes (`nonce:<digest>`), in the same step.
local id, wid, grp, task = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local cap = tonumber(ARGV[9])
local created = redis.call('HGET', jk(id), 'created_at')
if created then return {1, tonumber(created)} end
if NOW > tonumber(ARGV[10]) then return {2} end
if ARGV[11] ~= '' and not redis.call('SET', P .. 'nonce:' .. ARGV[11], '1', 'NX', 'PXAT', ARGV[12]) then
  return {3}
end
sweep()
local ak = P .. 'active:' .. wid .. '|' .. grp .. '|' .. task
local existing = redis.call('GET', ak)
if existing then
  local st = redis.call('HGET', jk(existing), 'state')
  if st == 'queued' or st == 'running' then
    local snap = snapshot(existing)
    return {0, snap[1], snap[2]}
  end
end
local seq = redis.call('INCR', P .. 'seq')
local k = jk(id)
local fields = {'id', id, 'seq', S(seq), 'task', task, 'worker_id', wid, 'worker_group', grp,
  'requester', ARGV[7], 'state', 'queued', 'attempts', '0', 'max_attempts', ARGV[8], 'created_at', S(NOW)}
for i = 13, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', k, unpack(fields))
redis.call('ZADD', P .. 'queued', seq, id)
redis.call('SET', ak, id)
local hk = P .. 'history:' .. wid
redis.call('ZADD', hk, seq, id)
redis.call('PERSIST', hk)
-- Past the cap, final (or vanished) jobs go; queued and running ones stay.
local excess = redis.call('ZCARD', hk) - cap
if excess > 0 then
  for _, old in ipairs(redis.call('ZRANGE', hk, 0, -1)) do
    if excess <= 0 then break end
    local st = redis.call('HGET', jk(old), 'state')
    if st ~= 'queued' and st ~= 'running' then
      redis.call('ZREM', hk, old)
      redis.call('DEL', jk(old), lk(old))
      excess = excess - 1
    end
  end
end
wake()
-- The caller built every field but these two: no need to send the hash back.
return {1, NOW}
