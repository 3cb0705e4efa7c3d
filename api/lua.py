"""The read side's Lua scripts: sums computed next to the data, one call per partition.

Every script is read-only and touches keys of one partition only (one hash
slot), so it runs on Redis Cluster too. Key names come from
:mod:`aggregator.keys` through KEYS (or, for per-queue gauges looked up by
name, a key prefix passed in ARGV). A script answers with plain Redis
arrays of bulk strings and integers: hiredis parses them in C, cheaper than
JSON for the API's event loop.

Summing rules (a bucket or totals hash, see ``aggregator.fold``): ``*_max``
and ``last_ms`` take the maximum, ``first_ms`` the minimum, every other field
adds. The result of a sum is a flat ``field, value, field, value, …`` array.
"""

from __future__ import annotations

from aggregator import schema
from aggregator.events import EventType

# Helpers every script below starts with.
#
# Hour and day buckets hold the minutes before the partition's roll-up marker (``rolled`` in its
# watermark hash; absent: every minute is rolled up). A range read from them also names the minute
# buckets of the newest minutes ("candidates", with their minute starts in ARGV); ``add_range`` adds
# a candidate only when its minute is not rolled up yet, so nothing is counted twice or left out.
_LIB = """
local KEEP_MAX = {""" + ", ".join(f"{f} = true" for f in sorted({*schema.MAX_FIELDS, schema.LAST_MS})) + """}
local KEEP_MIN = {""" + f"{schema.FIRST_MS} = true" + """}
local function add_hash(acc, key)
  local flat = redis.call('HGETALL', key)
  for i = 1, #flat, 2 do
    local f, v = flat[i], tonumber(flat[i + 1])
    local old = acc[f]
    if old == nil then acc[f] = v
    elseif KEEP_MAX[f] then if v > old then acc[f] = v end
    elseif KEEP_MIN[f] then if v < old then acc[f] = v end
    else acc[f] = old + v end
  end
end
local function as_flat(acc)
  local out = {}
  for f, v in pairs(acc) do out[#out + 1] = f; out[#out + 1] = v end
  return out
end
local function rolled_of(wm)
  local r = redis.call('HGET', wm, '""" + schema.WM_ROLLED + """')
  if r then return tonumber(r) end
  return math.huge
end
-- adds keys[k .. k+n-1], then of keys[k+n .. k+n+m-1] those whose minute start ARGV[a + j] is not
-- rolled up in the partition whose watermark is wm (read only when there are candidates)
local function add_range(acc, keys, k, n, m, a, wm)
  for i = k, k + n - 1 do add_hash(acc, keys[i]) end
  if m == 0 then return end
  local rolled = rolled_of(wm)
  for j = 0, m - 1 do
    if tonumber(ARGV[a + j]) >= rolled then add_hash(acc, keys[k + n + j]) end
  end
end
-- the flat sum of such a range; a lone bucket is returned as it is stored (no Lua-side copy)
local function range_flat(keys, k, n, m, a, wm)
  if n == 1 and m == 0 then return redis.call('HGETALL', keys[k]) end
  local acc = {}
  add_range(acc, keys, k, n, m, a, wm)
  return as_flat(acc)
end
"""

# RANGE_SUMS: one summed hash per group of buckets.
# KEYS: the watermark, the summary, then per group its n buckets and m candidate minute buckets.
# ARGV: per group n, m, then the m candidates' minute starts.
# Reply: {rolled or false, the partition's first data (ms) or false, one flat sum per group}.
RANGE_SUMS = _LIB + """
local rolled = rolled_of(KEYS[1])
local first = redis.call('HGET', KEYS[2], '""" + schema.FIRST_MS + """')
local out, k, a = {rolled ~= math.huge and rolled or false, first}, 3, 1
while a <= #ARGV do
  local n, m = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  out[#out + 1] = range_flat(KEYS, k, n, m, a + 2, KEYS[1])
  k, a = k + n + m, a + 2 + m
end
return out
"""

# PARTITION: one partition now, whatever the number of queues.
# KEYS: summary, oldest-pending zset, queues set, watermark, stream, dead-letter stream, lease,
#       workers, backlog index, then the window's partition-wide buckets (n, then m candidates).
# ARGV: backlog threshold, pending key prefix (queue name appended), the window's start (ms), then n, m
#       and the candidates' minute starts. The window is not read when the partition's last event is older.
# Reply: summary values of SUMMARY_FIELDS ('' when absent), {oldest queue, score} or {},
#        queues seen, watermark flat, newest stream id or false, stream length, dead-letter length,
#        lease or false, workers flat, window sum flat, {queue, pending, …} of the queues over the backlog threshold.
SUMMARY_FIELDS = (*(schema.COUNT + t.value for t in EventType), schema.PENDING, schema.RUNNING, schema.FIRST_MS,
                  schema.LAST_MS)
# (each redis.call costs a few µs: this script makes as few as it can, the overview runs it P times)
PARTITION = _LIB + """
local summary = redis.call('HMGET', KEYS[1], """ + ", ".join(f"'{f}'" for f in SUMMARY_FIELDS) + """)
for i = 1, #summary do summary[i] = summary[i] or '' end
local oldest = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
local newest = redis.call('XREVRANGE', KEYS[5], '+', '-', 'COUNT', 1)
local window = {}
if (tonumber(summary[#summary]) or 0) >= tonumber(ARGV[3]) then  -- summary: ..., first_ms, last_ms
  add_range(window, KEYS, 10, tonumber(ARGV[4]), tonumber(ARGV[5]), 6, KEYS[4])
end
-- a queue can hold more than the threshold only if its whole partition does: the per-queue look is
-- skipped in the usual case, and otherwise bounded by the queues that have pending jobs
local backlog, threshold = {}, tonumber(ARGV[1])
if (tonumber(summary[#summary - 3]) or 0) > threshold then  -- summary: ..., pending, running, first_ms, last_ms
  if redis.call('EXISTS', KEYS[9]) == 1 then  -- the aggregator's index: only the queues over the threshold
    backlog = redis.call('ZRANGEBYSCORE', KEYS[9], '(' .. threshold, '+inf', 'WITHSCORES')
  else  -- data from before the index (until an owner builds it): count the pending sets
    for _, q in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
      local n = redis.call('ZCARD', ARGV[2] .. q)
      if n > threshold then backlog[#backlog + 1] = q; backlog[#backlog + 1] = n end
    end
  end
end
return {summary, oldest, redis.call('SCARD', KEYS[3]), redis.call('HGETALL', KEYS[4]),
        newest[1] and newest[1][1] or false, redis.call('XLEN', KEYS[5]), redis.call('XLEN', KEYS[6]),
        redis.call('GET', KEYS[7]) or false, redis.call('HGETALL', KEYS[8]), as_flat(window), backlog}
"""

# QUEUES: named queues of one partition, their keys named by prefix + queue name (a queue name ends a
# key: aggregator.keys), so a request sends each name once rather than 3 + n + m keys per queue.
# KEYS: the queues set, the watermark.
# ARGV: n, m, which totals fields: 'counts' (the n: counts, for the overview, which also asks whether
#       the queue was ever seen), 'stats' (all but the Prometheus histograms, for detailed) or 'all';
#       the window's start (ms), the prefixes of the totals, pending and running keys, of the n window
#       buckets and of the m candidate minute buckets, the m minute starts, then the names. A queue's
#       window is not read when its last event is older than the start. (Queues not asked if seen are
#       given as seen.)
# Reply per queue: {seen 0/1, totals flat, pending, running, oldest pending score or false, window flat}.
# (The filter looks at a field's bytes: string.sub would make, and intern, a string per field.)
_HIST_FIRST_TWO = ", ".join(f"[{ord(h[0]) * 256 + ord(h[1])}] = true" for h in (schema.PT_HIST, schema.WT_HIST))
QUEUES = _LIB + """
local n, m, which, since = tonumber(ARGV[1]), tonumber(ARGV[2]), ARGV[3], tonumber(ARGV[4])
local COLON, COUNT, LAST = 58, string.byte('""" + schema.COUNT + """'), '""" + schema.LAST_MS + """'
local HIST = {""" + _HIST_FIRST_TWO + """}
local tot, pend, run, buckets, minutes = ARGV[5], ARGV[6], ARGV[7], 8, 8 + n + m
local out = {}
for a = 8 + n + 2 * m, #ARGV do
  local q = ARGV[a]
  local totals, last = redis.call('HGETALL', tot .. q), nil
  if which ~= 'all' then
    local kept = {}
    for i = 1, #totals, 2 do
      local f = totals[i]
      local x, y, z = string.byte(f, 1, 3)
      if (which == 'counts' and x == COUNT and y == COLON)
         or (which == 'stats' and not (z == COLON and HIST[x * 256 + y])) then
        kept[#kept + 1] = f; kept[#kept + 1] = totals[i + 1]
      end
      if f == LAST then last = totals[i + 1] end
    end
    totals = kept
  elseif n + m > 0 then
    last = redis.call('HGET', tot .. q, LAST)
  end
  local oldest = redis.call('ZRANGE', pend .. q, 0, 0, 'WITHSCORES')
  local seen = which == 'counts' and redis.call('SISMEMBER', KEYS[1], q) or 1
  local window = {}
  if n + m > 0 and tonumber(last or '0') >= since then
    local qkeys = {}
    for i = 1, n + m do qkeys[i] = ARGV[buckets + i - 1] .. q end
    window = range_flat(qkeys, 1, n, m, minutes, KEYS[2])
  end
  out[#out + 1] = {seen, totals, redis.call('ZCARD', pend .. q), redis.call('ZCARD', run .. q),
                   oldest[2] or false, window}
end
return out
"""

# ERRORS: the error hashes of several hours of one partition, in one call rather than one HGETALL each
# (most hours have none).
# KEYS: the hours' error hashes. Reply: {i, flat, …} of the non-empty ones, i their 1-based index in KEYS.
ERRORS = """
local out = {}
for i = 1, #KEYS do
  local flat = redis.call('HGETALL', KEYS[i])
  if #flat > 0 then out[#out + 1] = i; out[#out + 1] = flat end
end
return out
"""
