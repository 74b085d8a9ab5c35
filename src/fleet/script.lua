-- authwatch fleet: add one batch of hits to the shared windows (issue 16).
--
-- KEYS: one sorted set per window key (ip, subnet, account), scored by log time in ms.
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
for i, key in ipairs(KEYS) do
  local window = tonumber(ARGV[pos])
  local n = tonumber(ARGV[pos + 1])
  pos = pos + 2
  for _ = 1, n do
    redis.call('ZADD', key, 'NX', ARGV[pos], ARGV[pos + 1])
    pos = pos + 2
  end
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  if newest[2] then
    redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. (tonumber(newest[2]) - window))
  end
  local size = redis.call('ZCARD', key)
  if size > cap then
    redis.call('ZREMRANGEBYRANK', key, 0, size - cap - 1)
  end
  redis.call('PEXPIRE', key, window + slack)
  local total = 0
  local hosts = {}
  local order = {}
  local subs = {}
  local distinct = 0
  for _, m in ipairs(redis.call('ZRANGE', key, 0, -1)) do
    local host, _, _, attempts, sub = string.match(m, '^([^:]*):([^:]*):([^:]*):([^:]*):(.*)$')
    if host then
      local a = tonumber(attempts) or 1
      total = total + a
      if not hosts[host] then
        hosts[host] = 0
        order[#order + 1] = host
      end
      hosts[host] = hosts[host] + a
      if sub ~= '' and not subs[sub] then
        subs[sub] = true
        distinct = distinct + 1
      end
    end
  end
  local row = { tostring(total), tostring(distinct) }
  for _, h in ipairs(order) do
    row[#row + 1] = h
    row[#row + 1] = tostring(hosts[h])
  end
  out[i] = row
end
return out
