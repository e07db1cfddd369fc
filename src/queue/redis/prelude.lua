-- Every script starts with this prelude. ARGV[1] = key base `{p}:`, ARGV[2] =
-- retention in ms; the script's own arguments follow from ARGV[3]. KEYS[1] is only
-- there so that a cluster client routes the call to the hash tag's slot.
-- `Scripts::new` (scripts.rs) fills in the placeholders (names in double underscores)
-- with the limits defined in Rust: batch and scan sizes, recovery attempts, resets kept.
local P = ARGV[1]
local RETENTION = tonumber(ARGV[2])
local t = redis.call('TIME')
local NOW = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function S(n) return string.format('%d', n) end
local function jk(id) return P .. 'job:' .. id end
local function lk(id) return P .. 'log:' .. id end
local function add_log(id, line)
  redis.call('RPUSH', lk(id), '{"at_ms":' .. S(NOW) .. ',"line":' .. cjson.encode(line) .. '}')
end
local function snapshot(id)
  return {redis.call('HGETALL', jk(id)), redis.call('LRANGE', lk(id), 0, -1)}
end
-- Unix ms as chrono's to_rfc3339 prints it (days-from-civil, inverted).
local function rfc3339(ms)
  local s = math.floor(ms / 1000)
  local frac = ms - s * 1000
  local days = math.floor(s / 86400)
  local secs = s - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
  local y = yoe + era * 400
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local d = doy - math.floor((153 * mp + 2) / 5) + 1
  local m = mp + 3
  if mp >= 10 then m = mp - 9 end
  if m <= 2 then y = y + 1 end
  local out = string.format('%04d-%02d-%02dT%02d:%02d:%02d', y, m, d,
    math.floor(secs / 3600), math.floor((secs % 3600) / 60), secs % 60)
  if frac > 0 then out = out .. string.format('.%03d', frac) end
  return out .. '+00:00'
end
-- Tell idle runners in other processes that work may be waiting (they poll too:
-- a lost message costs at most one poll interval).
local function wake() redis.call('PUBLISH', P .. 'wake', '') end
-- A history set expires with its last final job, and never while one of its
-- jobs is still queued or running. Returns whether one is.
local function refresh_history_ttl(wid)
  local hk = P .. 'history:' .. wid
  for _, id in ipairs(redis.call('ZRANGE', hk, 0, -1)) do
    local st = redis.call('HGET', jk(id), 'state')
    if st == 'queued' or st == 'running' then
      redis.call('PERSIST', hk)
      return true
    end
  end
  redis.call('PEXPIRE', hk, RETENTION)
  return false
end
-- Move a job to a final state: drop its lease, queue entries, coalescing and
-- lock keys; log `line` (if any); start its retention. Returns whether another
-- job of the same machine is still queued or running.
local function finalize(id, state, fields, line)
  local k = jk(id)
  redis.call('HSET', k, 'state', state, 'finished_at', S(NOW), unpack(fields))
  redis.call('HDEL', k, 'lease_until')
  redis.call('ZREM', P .. 'running', id)
  redis.call('ZREM', P .. 'queued', id)
  redis.call('ZREM', P .. 'leased', id)
  local f = redis.call('HMGET', k, 'worker_id', 'worker_group', 'task')
  if f[1] and f[2] and f[3] then
    local ak = P .. 'active:' .. f[1] .. '|' .. f[2] .. '|' .. f[3]
    if redis.call('GET', ak) == id then redis.call('DEL', ak) end
    local lock = P .. 'lock:' .. f[1]
    if redis.call('GET', lock) == id then redis.call('DEL', lock) end
  end
  if line then add_log(id, line) end
  redis.call('PEXPIRE', k, RETENTION)
  redis.call('PEXPIRE', lk(id), RETENTION)
  if f[1] then return refresh_history_ttl(f[1]) end
  return false
end
-- Whether a job whose lease expired after `attempts` may not be handed out again:
-- its attempts are spent and, when it has a restore armed, its recovery attempts too
-- (such a job goes back for its repair, never to run its task again).
local function spent(attempts, max, restore)
  if attempts < max then return false end
  return not restore or attempts >= max + __RECOVERY_ATTEMPTS__
end
-- Fail a job whose lease expired with no attempt left, saying what was left undone.
local function fail_lost(id, attempts, consumer, restore)
  local reason
  if restore then
    reason = 'runner lost the job (lease expired) after ' .. S(attempts) .. ' attempt(s), its recoveries ' ..
      'included; the power change it left half-done was NOT undone: ' .. restore
  else
    reason = 'runner lost the job (lease expired) after ' .. S(attempts) .. ' attempt(s); not retried'
  end
  finalize(id, 'failed', {'error', reason}, reason .. ' (last held by ' .. (consumer or 'unknown runner') .. ')')
end
-- Expired leases: with no attempt left the job fails; otherwise it goes back to
-- the queue under its original seq, still `running` so the next reserve logs a
-- takeover.
local function sweep()
  local ids = redis.call('ZRANGEBYSCORE', P .. 'running', '-inf', '(' .. S(NOW), 'LIMIT', 0, __SWEEP_BATCH__)
  for _, id in ipairs(ids) do
    redis.call('ZREM', P .. 'running', id)
    local f = redis.call('HMGET', jk(id), 'state', 'attempts', 'max_attempts', 'consumer', 'seq', 'restore')
    if f[1] == 'running' then
      local attempts = tonumber(f[2]) or 0
      if spent(attempts, tonumber(f[3]) or 1, f[6]) then
        fail_lost(id, attempts, f[4], f[6])
      else
        -- Without its seq (a damaged hash) it goes first rather than nowhere.
        redis.call('ZADD', P .. 'queued', f[5] or 0, id)
      end
    end
  end
end
