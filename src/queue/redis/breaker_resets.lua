-- ARGV[3..]: worker_id, limit (at least 1). Returns the newest `limit` resets, each
-- the JSON `{"at_ms":…,"by":…,"reason":…}`.
return redis.call('LRANGE', P .. 'breaker:' .. ARGV[3], 0, tonumber(ARGV[4]) - 1)
