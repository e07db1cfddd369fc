-- ARGV[3..]: per job, five arguments: id, consumer, final state, 'result' or
-- 'error', its value. Returns per job 1, or 0 when the consumer does not hold it.
local out = {}
local freed = false
for i = 3, #ARGV, 5 do
  local id, consumer = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', jk(id), 'state', 'consumer')
  if f[1] ~= 'running' or f[2] ~= consumer then
    out[#out + 1] = 0
  else
    redis.call('DEL', P .. 'held:' .. consumer)
    -- A runner whose lease expired but was not taken over yet may still finish:
    -- the work was done, and discarding it would only cause a needless re-run.
    -- Its machine is free: a job of it waiting for the lock is runnable now.
    if finalize(id, ARGV[i + 2], {ARGV[i + 3], ARGV[i + 4]}, nil) then freed = true end
    out[#out + 1] = 1
  end
end
if freed then wake() end
return out
