"""The storage schema's vocabulary: every hash field the write side writes and
the read side parses, and the op codes of the apply script.

Key names live in :mod:`aggregator.keys`; this module names what is inside
the keys, so ``fold``, ``effects``, the Lua scripts and the read model agree
by import instead of by matching strings.
"""

from __future__ import annotations

# -- job states, as stored in a job's record (see jobcache.JobRecord) -------
JOB_PENDING, JOB_RUNNING, JOB_AWAITING_RETRY, JOB_FINISHED = "P", "R", "W", "F"

# -- bucket and totals hashes (per queue, per partition) --------------------
COUNT = "n:"  # n:<event_type>: events of that type
PRIORITY = "p:"  # p:<priority>: enqueued events of that priority
PT_SUM, PT_N, PT_MAX = "pt_sum", "pt_n", "pt_max"  # processing_time_ms of outcomes
WT_SUM, WT_N, WT_MAX = "wt_sum", "wt_n", "wt_max"  # wait_time_ms of starts
PT_SKETCH, WT_SKETCH = "ps:", "ws:"  # ps:<bin>: DDSketch bins (buckets only)
PT_HIST, WT_HIST = "ph:", "wh:"  # ph:<i>: Prometheus histogram buckets (totals only)
JOB_TYPE = "t:"  # t:<event_type>:<job_type> (totals only)
FIRST_MS, LAST_MS = "first_ms", "last_ms"  # event times of the first and last event (totals only)
LAST_OF = "last:"  # last:<event_type>: event time of the latest archived/restored event (totals and summary)
MAX_FIELDS = frozenset({PT_MAX, WT_MAX})  # merged by max, not by sum
SUM_FIELDS = frozenset({PT_SUM, PT_N, WT_SUM, WT_N})

# -- hourly error hash (keys.errors) and signature hash (keys.error_sig) ------
ERR_COUNT = "n:"  # n:<sig>: failures with that signature
ERR_QUEUE_COUNT = "q:"  # q:<sig>:<queue>: of them, the queue's
ERR_FIRST_MS, ERR_LAST_MS = "f:", "l:"  # f:<sig>:<queue>, l:<sig>:<queue>: event times of the first and last
ERR_TYPE_COUNT = "y:"  # y:<sig>:<len(type)>:<type>:<queue>: of them, those of an error type (errors.type_field)
SIG_SAMPLE = "sample"  # signature hash: one message that had it
SIG_TYPE = "type"  # signature hash, stored before types were counted per failure: its one type

# -- partition summary hash: the totals' fields plus the gauges -------------
PENDING, RUNNING = "pending", "running"

# -- watermark hash ---------------------------------------------------------
WM_ID = "id"  # last applied stream entry id
WM_CONSUMED = "consumed"  # entries applied, ever
WM_LOST = "lost"  # entries trimmed before they were read
WM_APPLIED_MS = "applied_ms"  # wall time of the last apply
WM_ROLLED = "rolled"  # hour/day buckets hold exactly the minutes before this (epoch s); absent: all of
# them (as stored before the aggregator rolled minutes up; see aggregator/rollup.py)
WM_EVENTS, WM_DUPLICATES, WM_DEAD_LETTERS = "events", "duplicates", "dead_letters"
WM_HEARTBEATS, WM_CLAMPED = "heartbeats", "clamped"

# -- apply script op codes (see aggregator/lua/apply.lua) --------------------
OP_INCR = "I"  # HINCRBY field by n, per pair
OP_FANOUT = "F"  # hash count k, k key nos., then (field, n) pairs: HINCRBY each pair in each of the k hashes
OP_MAX = "X"  # keep the larger value, per pair
OP_MIN = "N"  # keep the smaller value, per pair
OP_HSET = "S"  # HSET the pairs
OP_HSETNX = "s"  # HSETNX, per pair
OP_ZADD = "Z"  # ZADD score/member pairs; item 1 names the summary gauge it moves
OP_ZREM = "R"  # ZREM members; item 1 names the summary gauge it moves
OP_OLDEST = "O"  # backlog index key no., then (pending set key no., queue) pairs: refresh both indexes
OP_SADD = "A"  # SADD members
OP_JOB = "J"  # first key no., ttl s (0: keep the TTL), then one record per job, their keys in KEYS in order: SET
OP_EXPIREAT = "E"  # (key no., epoch s) pairs
OP_EXPIRE = "T"  # (key no., seconds) pairs
OP_DEADLETTER = "D"  # cap, then (source id, reason, entry) triples: XADD to the dead-letter stream
OP_CAPPED = "C"  # cap, then score/member pairs: ZADD, keep the cap highest scores
OP_ROLL = "U"  # k, k max field names, then (minute, hour, hour expiry, day, day expiry) per minute rolled up
PACKED_OPS = "M"  # not an op: ARGV[8] of an apply whose ops are one MessagePack array in ARGV[9]

