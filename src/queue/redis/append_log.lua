-- ARGV[3..]: id, line. Returns 1, or 0 for an unknown (or expired) job.
local id = ARGV[3]
local k = jk(id)
if redis.call('EXISTS', k) == 0 then return 0 end
add_log(id, ARGV[4])
-- A final job's log expires with the job.
local ttl = redis.call('PTTL', k)
if ttl > 0 then redis.call('PEXPIRE', lk(id), ttl) end
return 1
