-- ARGV[3]: id. Returns {} or {fields, log}.
local id = ARGV[3]
if redis.call('EXISTS', jk(id)) == 0 then return {} end
return snapshot(id)
