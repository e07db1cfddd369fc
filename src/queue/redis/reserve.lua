-- ARGV[3..]: lease in ms, then one holder id per job wanted. Returns
-- {fields, log, fields, log, ...}: the i-th job is held by the i-th holder.
sweep()
local lease = tonumber(ARGV[3])
local want = #ARGV - 3
local out = {}
local busy = {}
-- The oldest waiting job is usually runnable: look at a few first and widen only
-- past busy machines (reading all __RESERVE_SCAN__ ids on every reserve dominated a drain).
local start, size = 0, want + 16
while start < __RESERVE_SCAN__ and #out < want * 2 do
  local ids = redis.call('ZRANGE', P .. 'queued', start, math.min(start + size, __RESERVE_SCAN__) - 1)
  if #ids == 0 then break end
  local removed = 0
  for _, id in ipairs(ids) do
    if #out >= want * 2 then break end
    local k = jk(id)
    local f = redis.call('HMGET', k, 'worker_id', 'state', 'attempts', 'max_attempts', 'consumer', 'lease_until',
      'restore', 'seq')
    local lease_until = tonumber(f[6])
    if not f[1] or (f[2] ~= 'queued' and f[2] ~= 'running') or (f[2] == 'running' and lease_until and lease_until >= NOW) then
      -- Not waiting (vanished, final, or live elsewhere): it has no business here.
      redis.call('ZREM', P .. 'queued', id)
      removed = removed + 1
    elseif f[2] == 'running' and spent(tonumber(f[3]) or 0, tonumber(f[4]) or 1, f[7]) then
      -- Swept with a recovery left, then disarmed by its lost holder (mark does not
      -- look at the lease): handing it out now would break the retry cap.
      fail_lost(id, tonumber(f[3]) or 0, f[5], f[7])
      removed = removed + 1
    elseif not busy[f[1]] then
      local lock = P .. 'lock:' .. f[1]
      local holder = redis.call('GET', lock)
      if holder and holder ~= id then
        local h = redis.call('HMGET', jk(holder), 'state', 'lease_until')
        local until_ = tonumber(h[2])
        if h[1] == 'running' and until_ and until_ >= NOW then busy[f[1]] = true end
      end
      if not busy[f[1]] then
        local consumer = ARGV[4 + #out / 2]
        local before = tonumber(f[3]) or 0
        local attempt = before + 1
        local new_until = NOW + lease
        redis.call('HSET', k, 'state', 'running', 'consumer', consumer, 'lease_until', S(new_until),
          'attempts', S(attempt), 'started_at', S(NOW))
        redis.call('ZREM', P .. 'queued', id)
        removed = removed + 1
        redis.call('ZADD', P .. 'running', new_until, id)
        -- Listed by `running` until it is final or handed back, whatever its lease.
        redis.call('ZADD', P .. 'leased', f[8] or 0, id)
        redis.call('SET', lock, id)
        -- One job per machine at a time, also within this call.
        busy[f[1]] = true
        -- Lets this reservation be reclaimed if its answer never reaches the runner.
        redis.call('SET', P .. 'held:' .. consumer, id, 'PX', lease)
        local line = 'attempt ' .. S(attempt) .. ' of ' .. (f[4] or '?') .. ' started by ' .. consumer
        if f[2] == 'running' then
          local when = 'an unknown time'
          if lease_until then when = rfc3339(lease_until) end
          line = line .. ' (takeover: the lease of ' .. (f[5] or 'unknown runner') .. ' expired at ' .. when .. ')'
          if f[7] then
            line = line .. '; it was cutting power: this attempt repairs, the task is not run again'
          end
        elseif before > 0 then
          line = line .. ' (the job was handed back by its previous runner)'
        end
        add_log(id, line)
        local snap = snapshot(id)
        out[#out + 1] = snap[1]
        out[#out + 1] = snap[2]
      end
    end
  end
  -- Removed and reserved ids shifted the rest down; busy ones stay and are skipped by the next window.
  start = start + #ids - removed
  size = size * 4
end
return out
