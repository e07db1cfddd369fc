-- ARGV[3..]: id, holder, line. Returns 1, or 0 for an unknown (or expired) job or
-- one another holder holds or last held.
local id, holder = ARGV[3], ARGV[4]
local k = jk(id)
if redis.call('EXISTS', k) == 0 then return 0 end
-- Fenced like finish: a runner whose job was taken over writes nothing into the new
-- attempt's log. A job nobody holds (queued, or handed back) takes any holder's lines;
-- its last holder may still add some after it finished (consumer is kept then).
local consumer = redis.call('HGET', k, 'consumer')
if consumer and consumer ~= holder then return 0 end
add_log(id, ARGV[5])
-- A final job's log expires with the job.
local ttl = redis.call('PTTL', k)
if ttl > 0 then redis.call('PEXPIRE', lk(id), ttl) end
return 1
