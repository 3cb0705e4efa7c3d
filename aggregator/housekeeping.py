"""Housekeeping of state that would otherwise grow for ever: workers silent longer than
``JOBPULSE_WORKER_RETENTION_S`` are removed from their partition's workers hash.

Every restarted worker heartbeats under a new id (``host:pid``), and the detailed and health
routes read every entry, so without this the hash grows by one entry per worker restart for the
life of the deployment. The aggregator calls :func:`prune_stale_workers` on the partitions it
owns; a marker key per partition makes one pass per partition per interval, whichever aggregator
gets there first.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
import redis

from aggregator.keys import Keys

PRUNE_INTERVAL_MS = 60_000  # one pass per partition per minute, at most
_SCAN_COUNT = 1000

# Delete each candidate only if its record is still stale: a heartbeat that arrived since the
# scan read it keeps the worker.
_DELETE_IF_STALE = """
local removed = 0
for i = 2, #ARGV do
    local body = redis.call('HGET', KEYS[1], ARGV[i])
    if body then
        local ok, rec = pcall(cjson.decode, body)
        if not ok or type(rec) ~= 'table' or type(rec.seen_ms) ~= 'number' or rec.seen_ms < tonumber(ARGV[1]) then
            removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
        end
    end
end
return removed
"""


def stale_workers(records: dict[bytes, bytes], cutoff_ms: int) -> list[bytes]:
    """Ids of the workers whose last heartbeat arrived before ``cutoff_ms`` (or is unreadable)."""
    stale = []
    for worker_id, body in records.items():
        try:
            seen_ms = orjson.loads(body)["seen_ms"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            seen_ms = None
        if not isinstance(seen_ms, int | float) or seen_ms < cutoff_ms:
            stale.append(worker_id)
    return stale


def prune_stale_workers(
    client: redis.Redis, keys: Keys, partitions: Iterable[int], retention_s: int, now_ms: int
) -> int:
    """Remove workers silent for more than ``retention_s`` from the given partitions' workers hashes,
    at most once per partition per :data:`PRUNE_INTERVAL_MS`; how many were removed."""
    parts = list(partitions)
    if not parts:
        return 0
    pipe = client.pipeline(transaction=False)
    for p in parts:
        pipe.set(keys.housekeeping(p), now_ms, nx=True, px=PRUNE_INTERVAL_MS)
    due = [p for p, claimed in zip(parts, pipe.execute(), strict=True) if claimed]
    cutoff_ms = now_ms - retention_s * 1000
    delete = client.register_script(_DELETE_IF_STALE)
    removed = 0
    for p in due:
        key = keys.workers(p)
        cursor = 0
        while True:
            cursor, records = client.hscan(key, cursor, count=_SCAN_COUNT)  # type: ignore[misc]  # redis-py 5 stubs
            stale = stale_workers(records, cutoff_ms)
            if stale:
                removed += int(delete(keys=[key], args=[cutoff_ms, *stale]))
            if not cursor:
                break
    return removed
