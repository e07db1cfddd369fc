-- ARGV[3..]: consumer, lease in ms. Returns {} or {fields, log}: the job that
-- consumer holds with a live lease, its lease started again from now.
local consumer = ARGV[3]
local lease = tonumber(ARGV[4])
local held = P .. 'held:' .. consumer
local id = redis.call('GET', held)
if not id then return {} end
local f = redis.call('HMGET', jk(id), 'state', 'consumer', 'lease_until')
local lease_until = tonumber(f[3])
if f[1] ~= 'running' or f[2] ~= consumer or not lease_until or lease_until < NOW then return {} end
local new_until = NOW + lease
redis.call('HSET', jk(id), 'lease_until', S(new_until))
redis.call('ZADD', P .. 'running', new_until, id)
redis.call('PEXPIRE', held, lease)
return snapshot(id)
