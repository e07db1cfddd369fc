-- ARGV[3..]: per job, seven arguments: id, consumer, final state, 'result' or '' (none),
-- its JSON, 'error' or '' (none), its text (a job that did not succeed may keep a result
-- too: what it found before it stopped). Returns per job 1, or 0 when the consumer does
-- not hold it.
local out = {}
local freed = false
for i = 3, #ARGV, 7 do
  local id, consumer = ARGV[i], ARGV[i + 1]
  local f = redis.call('HMGET', jk(id), 'state', 'consumer')
  if f[1] ~= 'running' or f[2] ~= consumer then
    out[#out + 1] = 0
  else
    redis.call('DEL', P .. 'held:' .. consumer)
    local fields = {}
    if ARGV[i + 3] ~= '' then fields[#fields + 1] = ARGV[i + 3]; fields[#fields + 1] = ARGV[i + 4] end
    if ARGV[i + 5] ~= '' then fields[#fields + 1] = ARGV[i + 5]; fields[#fields + 1] = ARGV[i + 6] end
    -- A runner whose lease expired but was not taken over yet may still finish:
    -- the work was done, and discarding it would only cause a needless re-run.
    -- Its machine is free: a job of it waiting for the lock is runnable now.
    if finalize(id, ARGV[i + 2], fields, nil) then freed = true end
    out[#out + 1] = 1
  end
end
if freed then wake() end
return out
