-- Applies one folded batch of one partition, all or nothing:
-- (1) the caller still holds the lease (fencing), (2) the batch starts at the
-- stored watermark, (3) every effect, (4) the new watermark and the trim.
-- Both checks come before the first write: a script that fails half way
-- does not roll back.
-- KEYS[1] lease, KEYS[2] watermark hash, KEYS[3] stream, KEYS[4..] effect keys
-- ARGV[1] lease value, ARGV[2] expected watermark id, ARGV[3] new watermark id,
-- ARGV[4] entries consumed, ARGV[5] now (ms), ARGV[6] dead-letter cap, ARGV[7..] ops
-- An op is: code, key number, n, then n items (pairs for hash and zset ops).

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED lease lost')
end
local wm = redis.call('HGET', KEYS[2], 'id') or '0-0'
if wm ~= ARGV[2] then
  return redis.error_reply('WATERMARK expected ' .. ARGV[2] .. ' found ' .. wm)
end

local i = 7
local n_args = #ARGV
while i <= n_args do
  local op, key, n = ARGV[i], KEYS[tonumber(ARGV[i + 1])], tonumber(ARGV[i + 2])
  i = i + 3
  if op == 'I' then
    for j = i, i + 2 * n - 1, 2 do
      redis.call('HINCRBY', key, ARGV[j], ARGV[j + 1])
    end
    i = i + 2 * n
  elseif op == 'X' or op == 'N' then
    for j = i, i + 2 * n - 1, 2 do
      local cur = tonumber(redis.call('HGET', key, ARGV[j]))
      local new = tonumber(ARGV[j + 1])
      if cur == nil or (op == 'X' and new > cur) or (op == 'N' and new < cur) then
        redis.call('HSET', key, ARGV[j], ARGV[j + 1])
      end
    end
    i = i + 2 * n
  elseif op == 'S' then
    redis.call('HSET', key, unpack(ARGV, i, i + 2 * n - 1))
    i = i + 2 * n
  elseif op == 's' then
    for j = i, i + 2 * n - 1, 2 do
      redis.call('HSETNX', key, ARGV[j], ARGV[j + 1])
    end
    i = i + 2 * n
  elseif op == 'Z' then
    for j = i, i + 2 * n - 1, 2 do
      redis.call('ZADD', key, ARGV[j + 1], ARGV[j])
    end
    i = i + 2 * n
  elseif op == 'R' then
    redis.call('ZREM', key, unpack(ARGV, i, i + n - 1))
    i = i + n
  elseif op == 'A' then
    redis.call('SADD', key, unpack(ARGV, i, i + n - 1))
    i = i + n
  elseif op == 'E' then
    redis.call('EXPIREAT', key, ARGV[i])
    i = i + 1
  elseif op == 'T' then
    redis.call('EXPIRE', key, ARGV[i])
    i = i + 1
  elseif op == 'D' then
    for j = i, i + 3 * n - 1, 3 do
      redis.call('XADD', key, 'MAXLEN', '~', ARGV[6], '*',
        'source_id', ARGV[j], 'reason', ARGV[j + 1], 'entry', ARGV[j + 2])
    end
    i = i + 3 * n
  else
    return redis.error_reply('BADOP ' .. tostring(op))
  end
end

redis.call('HSET', KEYS[2], 'id', ARGV[3], 'applied_ms', ARGV[5])
redis.call('HINCRBY', KEYS[2], 'consumed', ARGV[4])
redis.call('XTRIM', KEYS[3], 'MINID', ARGV[3])
return 'OK'
