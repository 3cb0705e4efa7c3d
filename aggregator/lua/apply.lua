-- Applies one flush of one partition, all or nothing:
-- (1) the caller still holds the lease (fencing), (2) the flush starts at the
-- stored watermark and roll-up marker, (3) every effect, the roll-up of closed
-- minutes last of all, (4) the new watermark, marker and lost-entry count, and
-- the trim behind the watermark.
-- The checks come before the first write: a script that fails half way
-- does not roll back.
-- KEYS[1] lease, KEYS[2] watermark hash, KEYS[3] stream, KEYS[4] partition
-- summary, KEYS[5] oldest-pending set, KEYS[6..] the keys the ops name
-- ARGV[1] lease value, ARGV[2] expected watermark id, ARGV[3] new watermark id,
-- ARGV[4] entries consumed, ARGV[5] now (ms), ARGV[6] expected roll-up marker
-- (the minute the hour and day buckets hold everything before; the flush was
-- folded assuming it: a stored marker must match, an absent one means every
-- minute is rolled up), ARGV[7] the new marker, then the ops, each
-- "code, key number, item count, items..." (the codes: aggregator/schema.py):
-- either ARGV[8..] themselves, or ARGV[8] 'M' and ARGV[9] one MessagePack array
-- of them, followed by the raw entries of dead letters (aggregator/effects.py).

if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return redis.error_reply('FENCED lease lost')
end
local stored = redis.call('HMGET', KEYS[2], 'id', 'rolled')
local wm = stored[1] or '0-0'
if wm ~= ARGV[2] then
  return redis.error_reply('WATERMARK expected ' .. ARGV[2] .. ' found ' .. wm)
end
if stored[2] and stored[2] ~= ARGV[6] then
  return redis.error_reply('ROLLED expected ' .. ARGV[6] .. ' found ' .. stored[2])
end

local OPS, i, n = ARGV, 8, #ARGV
if ARGV[8] == 'M' then
  OPS = cmsgpack.unpack(ARGV[9])
  i, n = 1, #OPS
end

-- A number as the digits Redis is given. redis.call would format a Lua number with '%.17g'
-- (about 2,500 instructions, a tenth of a drain's Redis instructions); most of the ops' numbers are small
-- counts that recur, so each is formatted once per apply. (2^53 and more travel as digits.)
local DIGITS = {}
local function digits(x)
  if type(x) ~= 'number' then return x end
  local s = DIGITS[x]
  if s == nil then
    s = string.format('%d', x)
    DIGITS[x] = s
  end
  return s
end

-- Adds the (field, n) pairs src[first..last] to hash `key` (the fields of an op are distinct).
-- A hash that does not exist yet is written with one HSET (the common case of a backfill, whose
-- minutes are new). An existing one takes one HINCRBY a field: measured on 30- to 250-field
-- hashes, listpacks and hash tables, that costs Redis less than reading the fields with one HMGET
-- and writing their sums with one HSET, and it is exact to 2^63.
local function incr(key, src, first, last)
  if redis.call('EXISTS', key) == 0 then
    local pairs_in = {}
    for j = first, last, 2 do
      pairs_in[#pairs_in + 1] = src[j]
      pairs_in[#pairs_in + 1] = digits(src[j + 1])
    end
    redis.call('HSET', key, unpack(pairs_in))
    return
  end
  for j = first, last, 2 do
    redis.call('HINCRBY', key, src[j], digits(src[j + 1]))
  end
end

-- The field names of the (field, value) pairs src[first..last], and their stored values (one HMGET).
local function stored_fields(key, src, first, last)
  local names = {}
  for j = first, last, 2 do
    names[#names + 1] = src[j]
  end
  return names, redis.call('HMGET', key, unpack(names))
end

-- Keeps the larger (or smaller) of the stored and given value of each (field, value)
-- pair in src[first..last]: one HMGET, then one HSET of the fields that change.
local function keep_extreme(key, src, first, last, larger)
  local names, stored = stored_fields(key, src, first, last)
  local changed = {}
  for k = 1, #names do
    local cur, value = tonumber(stored[k]), src[first + 2 * k - 1]
    local new = tonumber(value)
    if cur == nil or (larger and new > cur) or (not larger and new < cur) then
      changed[#changed + 1] = names[k]
      changed[#changed + 1] = value
    end
  end
  if #changed > 0 then
    redis.call('HSET', key, unpack(changed))
  end
end

local gauges = {}
while i <= n do
  local code, key, first = OPS[i], KEYS[tonumber(OPS[i + 1])], i + 3
  local last = i + 2 + tonumber(OPS[i + 2])
  if code == 'I' then
    incr(key, OPS, first, last)
  elseif code == 'F' then
    -- item 1: how many hashes (k), items 2..k+1 their key numbers, then the pairs added to each
    local k = tonumber(OPS[first])
    for d = 1, k do
      incr(KEYS[tonumber(OPS[first + d])], OPS, first + k + 1, last)
    end
  elseif code == 'X' or code == 'N' then
    keep_extreme(key, OPS, first, last, code == 'X')
  elseif code == 'J' then
    -- item 1: the first job's key number (the others follow it in KEYS), item 2: the TTL (0: keep it)
    local base, ttl = tonumber(OPS[first]) - first - 2, digits(OPS[first + 1])  -- (once, not per SET)
    if ttl == '0' then
      for j = first + 2, last do
        redis.call('SET', KEYS[base + j], OPS[j], 'KEEPTTL')
      end
    else
      for j = first + 2, last do
        redis.call('SET', KEYS[base + j], OPS[j], 'EX', ttl)
      end
    end
  elseif code == 'Z' then
    local g = OPS[first]
    gauges[g] = (gauges[g] or 0) + redis.call('ZADD', key, unpack(OPS, first + 1, last))
  elseif code == 'R' then
    local g = OPS[first]
    gauges[g] = (gauges[g] or 0) - redis.call('ZREM', key, unpack(OPS, first + 1, last))
  elseif code == 'O' then
    -- item 1 names the backlog index; then (pending set, queue) pairs
    local backlog = KEYS[tonumber(OPS[first])]
    for j = first + 1, last, 2 do
      local pending = KEYS[tonumber(OPS[j])]
      local head = redis.call('ZRANGE', pending, 0, 0, 'WITHSCORES')
      if #head == 0 then
        redis.call('ZREM', key, OPS[j + 1])
        redis.call('ZREM', backlog, OPS[j + 1])
      else
        redis.call('ZADD', key, head[2], OPS[j + 1])
        redis.call('ZADD', backlog, redis.call('ZCARD', pending), OPS[j + 1])
      end
    end
  elseif code == 'S' then
    redis.call('HSET', key, unpack(OPS, first, last))
  elseif code == 's' then
    for j = first, last, 2 do
      redis.call('HSETNX', key, OPS[j], OPS[j + 1])
    end
  elseif code == 'A' then
    redis.call('SADD', key, unpack(OPS, first, last))
  elseif code == 'E' then
    for j = first, last, 2 do
      redis.call('EXPIREAT', KEYS[tonumber(OPS[j])], OPS[j + 1])
    end
  elseif code == 'T' then
    for j = first, last, 2 do
      redis.call('EXPIRE', KEYS[tonumber(OPS[j])], OPS[j + 1])
    end
  elseif code == 'D' then
    for j = first + 1, last, 3 do
      local entry = OPS[j + 2]
      if OPS ~= ARGV then entry = ARGV[9 + entry] end  -- (packed: the entry's place after the array)
      redis.call('XADD', key, 'MAXLEN', '~', OPS[first], '*',
        'source_id', OPS[j], 'reason', OPS[j + 1], 'entry', entry)
    end
  elseif code == 'C' then
    -- a capped sorted set: add, then drop all but the cap highest scores (nothing when within the cap)
    redis.call('ZADD', key, unpack(OPS, first + 1, last))
    redis.call('ZREMRANGEBYRANK', key, 0, -tonumber(OPS[first]) - 1)
  elseif code == 'U' then
    -- Roll closed minutes up into their hour and day buckets. Item 1: how many fields are kept
    -- by maximum (k), items 2..k+1 their names; then per minute bucket: its key no., then the
    -- hour bucket's key no. and expiry (epoch s), and the day bucket's (key no. 0: not kept).
    local k = tonumber(OPS[first])
    local keep_max = {}
    for j = first + 1, first + k do keep_max[OPS[j]] = true end
    for j = first + k + 1, last, 5 do
      local flat = redis.call('HGETALL', KEYS[tonumber(OPS[j])])
      if #flat > 0 then
        local adds, maxes = {}, {}
        for x = 1, #flat, 2 do
          local into = keep_max[flat[x]] and maxes or adds
          into[#into + 1] = flat[x]
          into[#into + 1] = flat[x + 1]
        end
        for d = j + 1, j + 3, 2 do
          local target = tonumber(OPS[d])
          if target > 0 then
            local bucket = KEYS[target]
            if #adds > 0 then incr(bucket, adds, 1, #adds) end
            if #maxes > 0 then keep_extreme(bucket, maxes, 1, #maxes, true) end
            redis.call('EXPIREAT', bucket, OPS[d + 1])
          end
        end
      end
    end
  else
    return redis.error_reply('BADOP ' .. tostring(code))
  end
  i = last + 1
end

for g, delta in pairs(gauges) do
  redis.call('HINCRBY', KEYS[4], g, delta)
end

redis.call('HSET', KEYS[2], 'id', ARGV[3], 'applied_ms', ARGV[5], 'rolled', ARGV[7])
local consumed = redis.call('HINCRBY', KEYS[2], 'consumed', ARGV[4])
redis.call('XTRIM', KEYS[3], 'MINID', ARGV[3])

-- Every entry ever added is consumed, still unread, or was trimmed unread (lost).
-- After the trim the stream holds the unread entries and, at most, the watermark's own.
local added, unread = -1, 0
if redis.call('EXISTS', KEYS[3]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[3])
  for j = 1, #info, 2 do
    if info[j] == 'entries-added' then added = info[j + 1] end
    if info[j] == 'length' then unread = info[j + 1] end
  end
  if unread > 0 and #redis.call('XRANGE', KEYS[3], ARGV[3], ARGV[3]) > 0 then unread = unread - 1 end
end
local lost = 0
if added >= 0 then
  lost = added - consumed - unread - tonumber(redis.call('HGET', KEYS[2], 'lost') or '0')
  if lost > 0 then redis.call('HINCRBY', KEYS[2], 'lost', lost) else lost = 0 end
end
return lost
