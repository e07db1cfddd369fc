-- ARGV[3..]: id, holder. Returns 1, or 0 when the holder does not hold the job.
-- Ends the holder's lease now (its process is gone) so the next reserve takes the
-- job over at once.
local id, holder = ARGV[3], ARGV[4]
local k = jk(id)
local f = redis.call('HMGET', k, 'state', 'consumer')
if f[1] ~= 'running' or f[2] ~= holder then return 0 end
-- One millisecond in the past: "expired" is `lease_until < now` for every reader.
local until_ = NOW - 1
redis.call('HSET', k, 'lease_until', S(until_))
-- Into the sweep's reach, unless a sweep already put it back in the queue.
if not redis.call('ZSCORE', P .. 'queued', id) then redis.call('ZADD', P .. 'running', until_, id) end
-- Nothing is left to reclaim for a holder that is gone.
local held = P .. 'held:' .. holder
if redis.call('GET', held) == id then redis.call('DEL', held) end
add_log(id, 'the process of ' .. holder .. ' is gone; its lease ends now, not at its time')
wake()
return 1
