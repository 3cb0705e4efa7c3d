"""The read side: turns the precomputed keys into tallies and snapshots.

Every method issues a fixed number of reads whose size depends on the queues
and buckets asked for, never on how many events were ingested: one script
call per partition (chunked, see ``CHUNK_READS``) that sums the range next to
the data (:mod:`api.lua`). The overview's reads do not depend on the number
of queues either (``partition_views``).
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Sequence
from typing import Any

import redis.asyncio

from aggregator import errors, schema
from aggregator.keys import Keys, partition_of
from api import lua
from api.records import (
    ErrorSignature,
    PartitionStatus,
    PartitionView,
    QueueSnapshot,
    Worker,
    int_or_none,
    pairs,
    partition_status,
    snapshot,
)
from api.records import workers as parse_workers
from api.redisio import RedisReads, Script, offload, resp
from api.stats import Tally
from api.window import BucketRange, bucket_range

__all__ = ["ErrorSignature", "PartitionStatus", "PartitionView", "QueueSnapshot", "StatsStore", "Worker"]

# Hash reads per script call at most: each call holds Redis for ~10 ms or less, so the aggregator
# and other clients are served between the chunks of a large request.
CHUNK_READS = 2000


@functools.lru_cache(maxsize=4096)
def _partition_keys(keys: Keys, p: int) -> tuple[str, ...]:
    """The fixed keys the PARTITION script reads, in its order."""
    return (keys.summary(p), keys.oldest_pending(p), keys.queues(p), keys.watermark(p), keys.stream(p),
            keys.deadletter(p), keys.lease(p), keys.workers(p), keys.backlog(p))


_PARTITION, _QUEUES, _RANGE_SUMS = Script(lua.PARTITION), Script(lua.QUEUES), Script(lua.RANGE_SUMS)
_ERRORS = Script(lua.ERRORS)
# positions of the summary's fields in the PARTITION script's reply: (position, event type) of the counts
_SUMMARY_COUNTS = [(i, f.removeprefix(schema.COUNT)) for i, f in enumerate(lua.SUMMARY_FIELDS)
                   if f.startswith(schema.COUNT)]
_PENDING, _RUNNING, _FIRST_MS = (lua.SUMMARY_FIELDS.index(f) for f in (schema.PENDING, schema.RUNNING, schema.FIRST_MS))


def _partition_calls(keys: Keys, partitions: int, window: BucketRange, threshold: int
                     ) -> list[tuple[list[str], list[Any]]]:
    """Keys and arguments of the PARTITION script for every partition."""
    calls: list[tuple[list[str], list[Any]]] = []
    for p in range(partitions):
        plain = [keys.bucket(p, window.gran, s) for s in window.starts]
        minutes = [keys.bucket(p, "m", m) for m in window.minutes]
        args = [threshold, keys.pending(p, ""), window.start_ms, len(plain), len(minutes), *window.minutes]
        calls.append(([*_partition_keys(keys, p), *plain, *minutes], args))
    return calls


@functools.lru_cache(maxsize=64)
def _packed_partition_calls(keys: Keys, partitions: int, gran: str, starts: tuple[int, ...],
                            minutes: tuple[int, ...], threshold: int) -> bytes:
    """The PARTITION calls of every partition, in the Redis protocol."""
    calls = _partition_calls(keys, partitions, BucketRange(gran, list(starts), list(minutes)), threshold)
    return b"".join(resp(["EVALSHA", _PARTITION.sha, len(k), *k, *a]) for k, a in calls)


def _range_calls(keys: Keys, ranges: Sequence[BucketRange], sources: dict[int, list[Any]]
                 ) -> tuple[list[tuple[list[str], list[Any]]], list[list[int]]]:
    """RANGE_SUMS calls summing each range over each partition's sources (queue names, or None for the
    partition-wide buckets), in calls of ~CHUNK_READS reads; and per call, the range of each sum it answers."""
    calls: list[tuple[list[str], list[Any]]] = []
    targets: list[list[int]] = []
    for p, names in sources.items():
        head = [keys.watermark(p), keys.summary(p)]
        call_keys: list[str] = list(head)
        args: list[Any] = []
        into: list[int] = []
        for i, r in enumerate(ranges):
            step = max(1, CHUNK_READS // max(1, r.reads))
            for j in range(0, len(names), step):
                some = names[j : j + step]
                plain_all, minutes_all = [], []
                for q in some:
                    plain_all += [keys.bucket(p, r.gran, s, q) for s in r.starts]
                    minutes_all += [keys.bucket(p, "m", m, q) for m in r.minutes]
                call_keys += plain_all + minutes_all
                args += [len(plain_all), len(minutes_all), *(r.minutes * len(some))]
                into.append(i)
                if len(call_keys) > CHUNK_READS:
                    calls.append((call_keys, args))
                    targets.append(into)
                    call_keys, args, into = list(head), [], []
        if into:
            calls.append((call_keys, args))
            targets.append(into)
    return calls, targets


@functools.lru_cache(maxsize=64)
def _packed_range_calls(keys: Keys, partitions: int, ranges: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...]
                        ) -> tuple[bytes, int, list[list[int]], int]:
    """The RANGE_SUMS calls of partition-wide ranges, in the Redis protocol: (bytes, calls, targets, reads)."""
    calls, targets = _range_calls(keys, [BucketRange(g, list(s), list(m)) for g, s, m in ranges],
                                  {p: [None] for p in range(partitions)})
    packed = b"".join(resp(["EVALSHA", _RANGE_SUMS.sha, len(k), *k, *a]) for k, a in calls)
    return packed, len(calls), targets, sum(len(k) for k, _ in calls)


class StatsStore:
    """Async reads of one deployment's stats keys."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, partitions: int) -> None:
        self.client = client
        self.keys = keys
        self.partitions = partitions
        self.io = RedisReads(client)

    @property
    def redis_time_s(self) -> float:
        """Redis round trips of this store's reads, for PerformanceMetrics."""
        return self.io.redis_time_s

    def partition(self, queue: str) -> int:
        """Partition holding a queue's keys."""
        return partition_of(queue, self.partitions)

    def _by_partition(self, queues: Sequence[str]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for q in queues:
            out.setdefault(self.partition(q), []).append(q)
        return out

    def _bucket_keys(self, p: int, br: BucketRange, queue: str | None) -> tuple[list[str], list[str]]:
        return ([self.keys.bucket(p, br.gran, s, queue) for s in br.starts],
                [self.keys.bucket(p, "m", m, queue) for m in br.minutes])

    async def queue_names(self) -> list[str]:
        """Every queue ever seen, sorted."""
        pipe = self.client.pipeline(transaction=False)
        for p in range(self.partitions):
            pipe.smembers(self.keys.queues(p))
        names: set[str] = set()
        for members in await self.io.run(pipe):
            names.update(m.decode() for m in members)
        return sorted(names)

    async def partition_views(self, window: BucketRange, backlog_threshold: int) -> list[PartitionView]:
        """Every partition's summary, gauges, status, workers and window sum: a fixed number of keys
        per partition, however many queues it holds."""
        if self.io.cluster:
            replies = await self.io.eval(_PARTITION, _partition_calls(self.keys, self.partitions, window,
                                                                    backlog_threshold))
        else:
            # the same bytes for every overview within a minute: packed once
            packed = _packed_partition_calls(self.keys, self.partitions, window.gran, tuple(window.starts),
                                             tuple(window.minutes), backlog_threshold)
            replies = await self.io.eval_packed(_PARTITION, packed, self.partitions)
        return [self._view(p, r) for p, r in enumerate(replies)]

    def _view(self, p: int, reply: list[Any]) -> PartitionView:
        summary, oldest, seen, wm, newest, length, dl_length, lease, workers, window, backlog = reply
        # (runs per partition of every overview: fields by position, empty parts skipped)
        return PartitionView(
            status=partition_status(p, pairs(wm), newest, length, dl_length, lease),
            counts={name: int(summary[i]) for i, name in _SUMMARY_COUNTS if summary[i]},
            pending=int(summary[_PENDING] or 0),
            running=int(summary[_RUNNING] or 0),
            first_ms=int_or_none(summary[_FIRST_MS]),
            oldest_pending_ms=int(float(oldest[1])) if oldest else None,
            queues_seen=int(seen),
            workers=parse_workers(pairs(workers)) if workers else [],
            window=Tally().add_flat(zip(window[::2], window[1::2], strict=True)) if window else Tally(),
            backlog=[(q.decode(), int(n)) for q, n in pairs(backlog).items()] if backlog else [],
        )

    async def snapshots(self, queues: list[str], window: BucketRange, *, fields: str = "stats"
                        ) -> list[QueueSnapshot]:
        """Totals, gauges and the window sum of each queue. ``fields`` of the totals: "counts" (only the
        event counts, and whether the queue was ever seen), "stats" (all but the Prometheus histogram
        buckets) or "all"."""
        per_queue = 3 + window.reads
        chunk = max(1, CHUNK_READS // per_queue)
        calls: list[tuple[list[str], list[Any], list[str]]] = []
        for p, names in self._by_partition(queues).items():
            keys = [self.keys.queues(p), self.keys.watermark(p)]
            # a queue's keys are these prefixes + its name (see lua.QUEUES)
            plain, minutes = self._bucket_keys(p, window, "")
            prefixes = [self.keys.totals(p, ""), self.keys.pending(p, ""), self.keys.running(p, ""), *plain, *minutes]
            head = [len(window.starts), len(window.minutes), fields, window.start_ms, *prefixes, *window.minutes]
            for i in range(0, len(names), chunk):
                part = names[i : i + chunk]
                calls.append((keys, [*head, *part], part))

        async def call(keys: list[str], args: list[Any], names: list[str]) -> list[QueueSnapshot]:
            reply = (await self.io.eval(_QUEUES, [(keys, args)]))[0]
            return await offload(len(names) * per_queue,
                                 lambda: [snapshot(q, r) for q, r in zip(names, reply, strict=True)])

        # each call parsed as soon as its reply is in, while Redis works on the next ones
        found = {s.name: s for part in await asyncio.gather(*(call(*c) for c in calls)) for s in part}
        return [found[q] for q in queues]

    async def range_sums(self, ranges: list[BucketRange], queues: list[str] | None, now_s: float
                         ) -> tuple[list[Tally], int | None]:
        """One tally per range: its buckets summed over all queues, or over ``queues``; and the event
        time of the first data the partitions read hold."""
        sums, rolled, first = await self._range_sums(ranges, queues)
        oldest_candidate = min((m for r in ranges for m in r.minutes), default=None)
        behind = [r for r in rolled if r is not None]
        if oldest_candidate is not None and behind and min(behind) < oldest_candidate:
            # a partition's roll-up is further behind than the usual few minutes: name its minutes too
            lookback = int(now_s) - min(behind) + 60
            ranges = [bucket_range(r.gran, r.starts, now_s, lookback) for r in ranges]
            sums, rolled, first = await self._range_sums(ranges, queues)
        if queues is not None and len(self._by_partition(queues)) < self.partitions:
            first = await self.first_data_ms()  # the store's first data may be in a partition not read
        return sums, first

    async def _range_sums(self, ranges: list[BucketRange], queues: list[str] | None
                          ) -> tuple[list[Tally], list[int | None], int | None]:
        if queues is None and not self.io.cluster:
            # all queues: the same calls for every request within a minute, packed once
            packed, n_calls, targets, reads = _packed_range_calls(
                self.keys, self.partitions, tuple((r.gran, tuple(r.starts), tuple(r.minutes)) for r in ranges))
            replies = await self.io.eval_packed(_RANGE_SUMS, packed, n_calls)
        else:
            sources = {p: [None] for p in range(self.partitions)} if queues is None else self._by_partition(queues)
            calls, targets = _range_calls(self.keys, ranges, sources)
            replies = await self.io.eval(_RANGE_SUMS, calls) if calls else []
            reads = sum(len(k) for k, _ in calls)

        def parse() -> list[Tally]:
            out = [Tally() for _ in ranges]
            for into, reply in zip(targets, replies, strict=True):
                for i, flat in zip(into, reply[2:], strict=True):
                    out[i].add_flat(zip(flat[::2], flat[1::2], strict=True))
            return out

        rolled = [int(r[0]) if r[0] else None for r in replies]
        first = min((int(r[1]) for r in replies if r[1]), default=None)
        return await offload(reads, parse), rolled, first

    async def first_data_ms(self) -> int | None:
        """Event time of the first data the store holds (None when empty)."""
        pipe = self.client.pipeline(transaction=False)
        for p in range(self.partitions):
            pipe.hget(self.keys.summary(p), "first_ms")
        return min((int(v) for v in await self.io.run(pipe) if v), default=None)

    async def queues_pending(self, queues: list[str]) -> dict[str, int]:
        """Pending jobs now of each of ``queues`` (a few: the queues health looks at by name)."""
        pipe = self.client.pipeline(transaction=False)
        for q in queues:
            pipe.zcard(self.keys.pending(self.partition(q), q))
        return {q: int(n) for q, n in zip(queues, await self.io.run(pipe), strict=True)}

    async def error_signatures(self, hours: list[int], queues: list[str] | None) -> list[ErrorSignature]:
        """Error signatures seen in the given hours, restricted to ``queues`` if given."""
        replies = await self.io.eval(_ERRORS, [([self.keys.errors(p, hour) for hour in hours], [])
                                               for p in range(self.partitions)]) if hours else []
        # the non-empty hashes, hour by hour and partition by partition
        hashes = sorted((i, p, pairs(flat)) for p, reply in enumerate(replies)
                        for i, flat in zip(reply[::2], reply[1::2], strict=True))
        found: dict[tuple[int, str], ErrorSignature] = {}
        wanted = set(queues) if queues is not None else None
        for _, p, raw in hashes:
            per_queue: dict[str, dict[str, int]] = {}
            bounds: dict[str, list[int]] = {}  # sig -> [first, last] over the queues counted
            types: dict[str, dict[str, int]] = {}
            for k, v in raw.items():
                fld = k.decode()
                if fld.startswith(schema.ERR_TYPE_COUNT):
                    typed = errors.parse_type_field(fld)
                    if typed is not None and (wanted is None or typed[1] in wanted):
                        counts = types.setdefault(typed[0], {})
                        counts[typed[2]] = counts.get(typed[2], 0) + int(v)
                    continue
                kind, rest = fld[:2], fld[2:]  # every error-hash prefix is a letter and ':'
                sig, per_queue_field, queue = rest.partition(":")
                if per_queue_field and wanted is not None and queue not in wanted:
                    continue
                if kind == schema.ERR_QUEUE_COUNT:
                    per_queue.setdefault(sig, {})[queue] = int(v)
                elif kind == schema.ERR_FIRST_MS:  # f:<sig>:<queue>, or f:<sig> as stored before bounds were per queue
                    b = bounds.setdefault(sig, [2**63, 0])
                    b[0] = min(b[0], int(v))
                elif kind == schema.ERR_LAST_MS:
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
            pipe.hmget(self.keys.error_sig(p, sig), [schema.SIG_TYPE, schema.SIG_SAMPLE])
        out = []
        for (_, entry), (etype, sample) in zip(merged_sigs.values(), await self.io.run(pipe), strict=True):
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
        return [w for raw in await self.io.run(pipe) for w in parse_workers(raw)]

    async def partitions_status(self) -> list[PartitionStatus]:
        """Watermark, counters, stream tail and owner of every partition."""
        pipe = self.client.pipeline(transaction=False)
        for p in range(self.partitions):
            pipe.hgetall(self.keys.watermark(p))
            pipe.xrevrange(self.keys.stream(p), "+", "-", count=1)
            pipe.xlen(self.keys.stream(p))
            pipe.xlen(self.keys.deadletter(p))
            pipe.get(self.keys.lease(p))
        results = await self.io.run(pipe)
        out = []
        for p in range(self.partitions):
            wm, newest, length, dl_length, lease = results[p * 5 : (p + 1) * 5]
            out.append(partition_status(p, wm, newest[0][0] if newest else None, length, dl_length, lease))
        return out

    async def aggregator_usage(self) -> tuple[float | None, float | None]:
        """Summed RSS (MB) and CPU (%) of the live aggregator processes, or None."""
        owners = [o.decode() for o in await self.client.zrange(self.keys.aggregators, 0, -1)]  # type: ignore[union-attr]
        if not owners:
            return None, None
        pipe = self.client.pipeline(transaction=False)
        for owner in owners:
            pipe.hmget(self.keys.aggregator_info(owner), ["rss_mb", "cpu_percent"])
        rows = [r for r in await self.io.run(pipe) if r[0] is not None]
        if not rows:
            return None, None
        return sum(float(r[0]) for r in rows), sum(float(r[1]) for r in rows)
