"""The read side: turns the precomputed keys into tallies and snapshots.

Every method issues a fixed number of pipelined reads whose size depends on
the queues and buckets asked for, never on how many events were ingested.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

import orjson
import redis.asyncio

from aggregator import errors
from aggregator.keys import Keys, partition_of
from aggregator.stats import Tally, merged


@dataclass
class QueueSnapshot:
    """One queue now: lifetime totals, gauges and the tally of a window."""

    name: str
    totals: Tally
    pending: int
    running: int
    oldest_pending_ms: int | None
    window: Tally
    first_ms: int | None = None
    last_ms: int | None = None


@dataclass
class PartitionStatus:
    """How far the aggregator is with one partition."""

    partition: int
    consumed: int = 0
    events: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    clamped: int = 0
    lost: int = 0
    watermark_ms: int | None = None
    applied_ms: int | None = None
    newest_entry_ms: int | None = None
    stream_length: int = 0
    deadletter_length: int = 0
    owner: str | None = None

    @property
    def lag_s(self) -> float:
        """How far behind the aggregator is: newest entry time − last applied entry time, seconds."""
        if self.newest_entry_ms is None:
            return 0.0
        return max(0.0, (self.newest_entry_ms - (self.watermark_ms or 0)) / 1000)


@dataclass
class Worker:
    """A worker's last heartbeat."""

    worker_id: str
    queues: list[str]
    concurrency: int
    busy: int
    interval_s: float
    dropped: int
    seen_ms: int


@dataclass
class ErrorSignature:
    """One normalised error message over a range of hours."""

    sig: str
    count: int = 0
    first_ms: int = 0
    last_ms: int = 0
    queues: dict[str, int] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)  # failures per error type the events gave
    error_type: str = "Error"
    sample: str = ""


# A queue's totals, gauges and window buckets, for all queues of one partition
# in one call: the API's cost per queue is a few table reads in Redis, not
# four round-trip-sized commands parsed one by one in Python.
# KEYS: per queue totals, pending, running, then ARGV[1] bucket hashes.
# ARGV[2]: when not empty, only the totals fields starting with it (the overview
# needs the n: counts, not the histogram bins and per-job-type counts).
_SNAPSHOT = """
local per = 3 + tonumber(ARGV[1])
local prefix = ARGV[2]
local function totals(key)
  local flat = redis.call('HGETALL', key)
  if prefix == '' then return flat end
  local kept = {}
  for k = 1, #flat, 2 do
    if string.sub(flat[k], 1, #prefix) == prefix then
      kept[#kept + 1] = flat[k]
      kept[#kept + 1] = flat[k + 1]
    end
  end
  return kept
end
local out = {}
for i = 1, #KEYS, per do
  local oldest = redis.call('ZRANGE', KEYS[i + 1], 0, 0, 'WITHSCORES')
  local buckets = {}
  for j = i + 3, i + per - 1 do buckets[#buckets + 1] = redis.call('HGETALL', KEYS[j]) end
  out[#out + 1] = {totals(KEYS[i]), redis.call('ZCARD', KEYS[i + 1]),
                   redis.call('ZCARD', KEYS[i + 2]), oldest[2] or false, buckets}
end
return cjson.encode(out)
"""


def _pairs(flat: list[str] | dict[str, str]) -> dict[str, str]:
    """A flat HGETALL list from cjson as a dict (cjson writes an empty list as {})."""
    return dict(zip(flat[::2], flat[1::2], strict=True)) if isinstance(flat, list) else {}


def _ms(entry_id: bytes | None) -> int | None:
    return int(entry_id.split(b"-", 1)[0]) if entry_id else None


class StatsStore:
    """Async reads of one deployment's stats keys."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, partitions: int) -> None:
        self.client = client
        self.keys = keys
        self.partitions = partitions
        self.redis_time_s = 0.0  # Redis round trips of this store's reads, for PerformanceMetrics
        self._snapshot = client.register_script(_SNAPSHOT)

    async def _run(self, pipe: Any) -> list[Any]:
        return await self._timed(pipe.execute())

    async def _timed(self, pending: Awaitable[Any]) -> list[Any]:
        """Await Redis replies, adding the wait to ``redis_time_s``."""
        start = time.perf_counter()
        try:
            return list(await pending)
        finally:
            self.redis_time_s += time.perf_counter() - start

    def partition(self, queue: str) -> int:
        """Partition holding a queue's keys."""
        return partition_of(queue, self.partitions)

    async def queue_names(self) -> list[str]:
        """Every queue ever seen, sorted."""
        pipe = self.client.pipeline(transaction=False)
        for p in range(self.partitions):
            pipe.smembers(self.keys.queues(p))
        names: set[str] = set()
        for members in await self._run(pipe):
            names.update(m.decode() for m in members)
        return sorted(names)

    async def snapshots(
        self, queues: list[str], gran: str, starts: list[int], *, counts_only: bool = False
    ) -> list[QueueSnapshot]:
        """Totals, gauges and the merged ``gran`` buckets at ``starts`` of each queue
        (``counts_only``: of the totals, only the event counts)."""
        by_partition: dict[int, list[str]] = {}
        for q in queues:
            by_partition.setdefault(self.partition(q), []).append(q)
        calls = []
        for p, names in by_partition.items():
            keys = []
            for q in names:
                keys += [self.keys.totals(p, q), self.keys.pending(p, q), self.keys.running(p, q)]
                keys += [self.keys.bucket(p, gran, start, q) for start in starts]
            calls.append(self._snapshot(keys=keys, args=[len(starts), "n:" if counts_only else ""]))
        # concurrent calls, not a pipeline: redis-py's cluster pipelines refuse scripts
        replies = await self._timed(asyncio.gather(*calls))
        found: dict[str, QueueSnapshot] = {}
        for names, reply in zip(by_partition.values(), replies, strict=True):
            for q, (totals_flat, pending, running, oldest, buckets) in zip(names, orjson.loads(reply), strict=True):
                totals_raw = _pairs(totals_flat)
                first, last = totals_raw.pop("first_ms", None), totals_raw.pop("last_ms", None)
                found[q] = QueueSnapshot(
                    name=q,
                    totals=Tally.from_fields(totals_raw),
                    pending=pending,
                    running=running,
                    oldest_pending_ms=int(float(oldest)) if oldest else None,
                    window=merged(Tally.from_fields(_pairs(b)) for b in (buckets or [])),
                    first_ms=int(first) if first else None,
                    last_ms=int(last) if last else None,
                )
        return [found[q] for q in queues]

    async def series(self, gran: str, starts: list[int], queues: list[str] | None) -> list[Tally]:
        """One merged tally per bucket start: all queues, or only ``queues``."""
        pipe = self.client.pipeline(transaction=False)
        sources: list[tuple[int, str | None]]
        if queues is None:
            sources = [(p, None) for p in range(self.partitions)]
        else:
            sources = [(self.partition(q), q) for q in queues]
        for start in starts:
            for p, q in sources:
                pipe.hgetall(self.keys.bucket(p, gran, start, q))
        results = await self._run(pipe)
        n = len(sources)
        return [merged(Tally.from_hash(r) for r in results[i * n : (i + 1) * n]) for i in range(len(starts))]

    async def error_signatures(self, hours: list[int], queues: list[str] | None) -> list[ErrorSignature]:
        """Error signatures seen in the given hours, restricted to ``queues`` if given."""
        pipe = self.client.pipeline(transaction=False)
        for hour in hours:
            for p in range(self.partitions):
                pipe.hgetall(self.keys.errors(p, hour))
        found: dict[tuple[int, str], ErrorSignature] = {}
        wanted = set(queues) if queues is not None else None
        for i, raw in enumerate(await self._run(pipe)):
            p = i % self.partitions
            per_queue: dict[str, dict[str, int]] = {}
            bounds: dict[str, list[int]] = {}  # sig -> [first, last] over the queues counted
            types: dict[str, dict[str, int]] = {}
            for k, v in raw.items():
                fld = k.decode()
                kind, _, rest = fld.partition(":")
                if kind == "y":
                    typed = errors.parse_type_field(fld)
                    if typed is not None and (wanted is None or typed[1] in wanted):
                        counts = types.setdefault(typed[0], {})
                        counts[typed[2]] = counts.get(typed[2], 0) + int(v)
                    continue
                sig, per_queue_field, queue = rest.partition(":")
                if per_queue_field and wanted is not None and queue not in wanted:
                    continue
                if kind == "q":
                    per_queue.setdefault(sig, {})[queue] = int(v)
                elif kind == "f":  # f:<sig>:<queue>, or f:<sig> as stored before bounds were per queue
                    b = bounds.setdefault(sig, [2**63, 0])
                    b[0] = min(b[0], int(v))
                elif kind == "l":
                    b = bounds.setdefault(sig, [2**63, 0])
                    b[1] = max(b[1], int(v))
            for sig, queue_counts in per_queue.items():
                entry = found.setdefault((p, sig), ErrorSignature(sig, first_ms=2**63, last_ms=0))
                for queue, n in queue_counts.items():
                    entry.queues[queue] = entry.queues.get(queue, 0) + n
                    entry.count += n
                first_ms, last_ms = bounds.get(sig, (entry.first_ms, entry.last_ms))
                entry.first_ms, entry.last_ms = min(entry.first_ms, first_ms), max(entry.last_ms, last_ms)
                for etype, n in types.get(sig, {}).items():
                    entry.types[etype] = entry.types.get(etype, 0) + n
        if not found:
            return []
        # A signature lives in several partitions when queues of several share it: merge them,
        # then describe each from one partition (any one sample will do).
        merged_sigs: dict[str, tuple[int, ErrorSignature]] = {}
        for (p, sig), entry in found.items():
            if sig not in merged_sigs:
                merged_sigs[sig] = (p, entry)
                continue
            into = merged_sigs[sig][1]
            into.count += entry.count
            into.first_ms = min(into.first_ms, entry.first_ms)
            into.last_ms = max(into.last_ms, entry.last_ms)
            for q, n in entry.queues.items():
                into.queues[q] = into.queues.get(q, 0) + n
            for etype, n in entry.types.items():
                into.types[etype] = into.types.get(etype, 0) + n
        pipe = self.client.pipeline(transaction=False)
        for sig, (p, _) in merged_sigs.items():
            pipe.hmget(self.keys.error_sig(p, sig), ["type", "sample"])
        out = []
        for (_, entry), (etype, sample) in zip(merged_sigs.values(), await self._run(pipe), strict=True):
            entry.sample = sample.decode() if sample else ""
            # "type" is only in signatures stored before types were counted per event
            entry.error_type = (errors.most_frequent_type(entry.types, entry.sample) if entry.types or not etype
                                else etype.decode())
            out.append(entry)
        return out

    async def workers(self) -> list[Worker]:
        """Every worker's last heartbeat."""
        pipe = self.client.pipeline(transaction=False)
        for p in range(self.partitions):
            pipe.hgetall(self.keys.workers(p))
        out = []
        for raw in await self._run(pipe):
            for worker_id, body in raw.items():
                rec = orjson.loads(body)
                out.append(
                    Worker(
                        worker_id=worker_id.decode(),
                        queues=rec["queues"],
                        concurrency=rec["concurrency"],
                        busy=rec["busy"],
                        interval_s=rec["interval_s"],
                        dropped=rec["dropped"],
                        seen_ms=rec["seen_ms"],
                    )
                )
        return out

    async def partitions_status(self) -> list[PartitionStatus]:
        """Watermark, counters, stream tail and owner of every partition."""
        pipe = self.client.pipeline(transaction=False)
        for p in range(self.partitions):
            pipe.hgetall(self.keys.watermark(p))
            pipe.xrevrange(self.keys.stream(p), "+", "-", count=1)
            pipe.xlen(self.keys.stream(p))
            pipe.xlen(self.keys.deadletter(p))
            pipe.get(self.keys.lease(p))
        results = await self._run(pipe)
        out = []
        for p in range(self.partitions):
            wm, newest, length, dl_length, lease = results[p * 5 : (p + 1) * 5]
            status = PartitionStatus(partition=p, stream_length=int(length), deadletter_length=int(dl_length))
            for name in ("consumed", "events", "duplicates", "dead_letters", "clamped", "lost"):
                setattr(status, name, int(wm.get(name.encode(), 0)))
            status.watermark_ms = _ms(wm.get(b"id"))
            status.applied_ms = int(wm[b"applied_ms"]) if b"applied_ms" in wm else None
            status.newest_entry_ms = _ms(newest[0][0]) if newest else None
            status.owner = bytes(lease).decode().rsplit(":", 1)[0] if lease else None
            out.append(status)
        return out

    async def aggregator_usage(self) -> tuple[float | None, float | None]:
        """Summed RSS (MB) and CPU (%) of the live aggregator processes, or None."""
        owners = [o.decode() for o in await self.client.zrange(self.keys.aggregators, 0, -1)]  # type: ignore[union-attr]
        if not owners:
            return None, None
        pipe = self.client.pipeline(transaction=False)
        for owner in owners:
            pipe.hmget(self.keys.aggregator_info(owner), ["rss_mb", "cpu_percent"])
        rows = [r for r in await self._run(pipe) if r[0] is not None]
        if not rows:
            return None, None
        return sum(float(r[0]) for r in rows), sum(float(r[1]) for r in rows)
