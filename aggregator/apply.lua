-- Applies one folded batch of one partition, all or nothing:
-- (1) the caller still holds the lease (fencing), (2) the batch starts at the
-- stored watermark, (3) every effect, (4) the new watermark and the trim.
-- Both checks come before the first write: a script that fails half way
-- does not roll back.
-- KEYS[1] lease, KEYS[2] watermark hash, KEYS[3] stream, KEYS[4] dead-letter
-- stream, KEYS[5..] effect keys
-- ARGV[1] lease value, ARGV[2] expected watermark id, ARGV[3] new watermark id,
-- ARGV[4] entries consumed, ARGV[5] now (ms), ARGV[6] dead-letter cap,
-- ARGV[7] the ops as JSON: [[code, key number, [items...]], ...] (pairs for
-- hash and zset ops), ARGV[8..] dead letters as (source id, reason, entry).

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED lease lost')
end
local wm = redis.call('HGET', KEYS[2], 'id') or '0-0'
if wm ~= ARGV[2] then
  return redis.error_reply('WATERMARK expected ' .. ARGV[2] .. ' found ' .. wm)
end

for _, op in ipairs(cjson.decode(ARGV[7])) do
  local code, key, items = op[1], KEYS[op[2]], op[3]
  if code == 'I' then
    for j = 1, #items, 2 do
      redis.call('HINCRBY', key, items[j], items[j + 1])
    end
  elseif code == 'X' or code == 'N' then
    for j = 1, #items, 2 do
      local cur = tonumber(redis.call('HGET', key, items[j]))
      local new = tonumber(items[j + 1])
      if cur == nil or (code == 'X' and new > cur) or (code == 'N' and new < cur) then
        redis.call('HSET', key, items[j], items[j + 1])
      end
    end
  elseif code == 'S' then
    redis.call('HSET', key, unpack(items))
  elseif code == 's' then
    for j = 1, #items, 2 do
      redis.call('HSETNX', key, items[j], items[j + 1])
    end
  elseif code == 'Z' then
    for j = 1, #items, 2 do
      redis.call('ZADD', key, items[j + 1], items[j])
    end
  elseif code == 'R' then
    redis.call('ZREM', key, unpack(items))
  elseif code == 'A' then
    redis.call('SADD', key, unpack(items))
  elseif code == 'E' then
    redis.call('EXPIREAT', key, items[1])
  elseif code == 'T' then
    redis.call('EXPIRE', key, items[1])
  else
    return redis.error_reply('BADOP ' .. tostring(code))
  end
end

for j = 8, #ARGV, 3 do
  redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[6], '*',
    'source_id', ARGV[j], 'reason', ARGV[j + 1], 'entry', ARGV[j + 2])
end

redis.call('HSET', KEYS[2], 'id', ARGV[3], 'applied_ms', ARGV[5])
redis.call('HINCRBY', KEYS[2], 'consumed', ARGV[4])
redis.call('XTRIM', KEYS[3], 'MINID', ARGV[3])
return 'OK'
