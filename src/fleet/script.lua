-- authwatch fleet: add one batch of hits to the shared windows (issue 16).
--
-- KEYS: one sorted set per window key (ip, subnet, account), scored by log time in ms. Beside
-- each, two hashes kept in step with it: KEY..':h' (attempts per agent, and ':total') and
-- KEY..':s' (attempts per sub, so HLEN is the distinct count). They are updated only for
-- members really added or removed, so a call costs O(hits + members leaving the window), not
-- O(members kept): a full pass over every member per batch was measured at >200 ms a call.
-- ARGV[1]: most members kept per key; ARGV[2]: extra ms of life after the window (PEXPIRE).
-- Then for each key, in KEYS order: window_ms, n, then n pairs (score, member).
-- A member is "agent:inode:offset:attempts:sub" (sub: the account of an IP key, the address
-- of a subnet or account key; attacker text, last so that it may hold ':'). ZADD NX makes a
-- re-read line count nothing twice.
--
-- Returns per key: {total attempts, distinct subs, agent1, n1, agent2, n2, ...} as strings.
local cap = tonumber(ARGV[1])
local slack = tonumber(ARGV[2])
local pos = 3
local out = {}

local function parts(m)
  local host, _, _, attempts, sub = string.match(m, '^([^:]*):([^:]*):([^:]*):([^:]*):(.*)$')
  return host, tonumber(attempts) or 1, sub
end

-- Count member m in (sign 1) or out (sign -1) of the key's hashes.
local function account(hk, sk, m, sign)
  local host, a, sub = parts(m)
  if not host then
    return
  end
  redis.call('HINCRBY', hk, ':total', sign * a)
  if redis.call('HINCRBY', hk, host, sign * a) <= 0 then
    redis.call('HDEL', hk, host)
  end
  if sub ~= '' then
    if redis.call('HINCRBY', sk, sub, sign * a) <= 0 then
      redis.call('HDEL', sk, sub)
    end
  end
end

for i, key in ipairs(KEYS) do
  local hk = key .. ':h'
  local sk = key .. ':s'
  local window = tonumber(ARGV[pos])
  local n = tonumber(ARGV[pos + 1])
  pos = pos + 2
  local newest = nil
  for _ = 1, n do
    local score = tonumber(ARGV[pos])
    if not newest or score > newest then
      newest = score
    end
    local m = ARGV[pos + 1]
    if redis.call('ZADD', key, 'NX', ARGV[pos], m) == 1 then
      account(hk, sk, m, 1)
    end
    pos = pos + 2
  end
  -- The window ends at the newest log time of this batch's hits for the key (a batch read
  -- again from far back trims less, never more).
  if newest then
    local floor = '(' .. (newest - window)
    local old = redis.call('ZRANGEBYSCORE', key, '-inf', floor)
    for _, m in ipairs(old) do
      account(hk, sk, m, -1)
    end
    if #old > 0 then
      redis.call('ZREMRANGEBYSCORE', key, '-inf', floor)
    end
  end
  local size = redis.call('ZCARD', key)
  if size > cap then
    for _, m in ipairs(redis.call('ZRANGE', key, 0, size - cap - 1)) do
      account(hk, sk, m, -1)
    end
    redis.call('ZREMRANGEBYRANK', key, 0, size - cap - 1)
  end
  local life = window + slack
  redis.call('PEXPIRE', key, life)
  redis.call('PEXPIRE', hk, life)
  redis.call('PEXPIRE', sk, life)
  local h = redis.call('HGETALL', hk)
  local total = 0
  local row = { '0', tostring(redis.call('HLEN', sk)) }
  for j = 1, #h, 2 do
    if h[j] == ':total' then
      total = tonumber(h[j + 1])
    else
      row[#row + 1] = h[j]
      row[#row + 1] = h[j + 1]
    end
  end
  row[1] = tostring(total)
  out[i] = row
end
return out
