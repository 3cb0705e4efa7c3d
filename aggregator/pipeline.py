"""One owned partition's batch pipeline: read, fold into an open flush, apply.

Entries are read in chunks from the last read position and folded into the
open :class:`~aggregator.fold.Flush` as they arrive; a read thread keeps the
next read going meanwhile. The flush is applied when the stream is caught up
and it has been open for the flush interval, or when it is full, so at high
rates one write carries many events. While one flush is applied (on the
aggregator's apply thread) the next is folded from the job states the first
will leave, which the owner keeps in its
:class:`~aggregator.jobcache.JobCache`. Any failed or uncertain apply drops
all of that and restarts from what Redis holds.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script

from aggregator import rollup, schema
from aggregator.fold import Entry, Flush, FoldConfig, parse_entries
from aggregator.jobcache import JobCache, JobRecord, Known
from aggregator.keys import Keys
from aggregator.settings import Settings
from aggregator.streamread import RawRead

log = logging.getLogger("jobpulse.aggregator")


_EXPIRY_MEMO_MAX = 100_000
# Entries read ahead while behind the stream: enough to fold while a flush is applied
# (Redis runs one script at a time, so a read sent during an apply waits for all of it).
READ_AHEAD_ENTRIES, READ_AHEAD_MAX_CHUNKS = 10_000, 8
# Behind the stream, a flush waits for this many flush intervals at most: bigger flushes merge
# more writes, but each of the owned partitions gets only a share of the folding thread.
BEHIND_FLUSH_INTERVALS = 4
# Far behind (the entries read arrived this long ago: a backlog, a backfill), freshness is lost
# whatever the flush size, so a flush may stay open this long: it merges many more writes to the
# same buckets (at 1 s, a drain's apply costs Redis about a quarter less per event), while each
# apply holds Redis longer.
BACKLOG_LAG_S, BACKLOG_FLUSH_S = 2.0, 1.0
# A read that fills its batch is not by itself a sign of being behind: at 20,000 events/s a partition
# adds a 2,000-entry batch every 100 ms. While the entries read arrived less than this long ago, the
# flush is applied on the interval; taking full reads as "behind" let flushes grow to
# BEHIND_FLUSH_INTERVALS, which lengthened every round of the partitions and kept the reads full (at
# 80,000 events/s an event took 0.5-1 s to be visible instead of 0.1-0.3 s).
CAUGHT_UP_LAG_S = 0.25


class Fenced(Exception):
    """Another owner holds the partition now."""


@dataclass
class _Cursor:
    """Where the reads queued on the read thread have got to. :meth:`PartitionPipeline.reload`
    replaces it rather than resetting it, so a read queued before cannot move the new one."""

    after_id: str


@dataclass
class _Chunk:
    """Entries read ahead, parsed, with the stored states of the jobs the owner did not hold then."""

    entries: list[Entry]
    job_ids: set[str]  # of the entries' events
    states: dict[str, bytes | None]
    generation: int  # the job cache's when ``states`` were chosen (see JobCache.forgotten_since)
    read_s: float  # when the read was sent (epoch s)


@dataclass
class _InFlight:
    future: Future[Any]
    entries: int


class PartitionPipeline:
    """Reads, folds and applies one partition while this process holds its lease."""

    def __init__(self, p: int, lease_value: str, settings: Settings, client: redis.Redis, apply: Script,
                 read: RawRead, pool: ThreadPoolExecutor, reads: ThreadPoolExecutor, packed: bool = False) -> None:
        self.p, self.lease_value, self.settings, self.client = p, lease_value, settings, client
        self.packed = packed  # the apply's ops as one MessagePack argument (see aggregator/effects.py)
        self.keys = Keys(settings.key_prefix)
        self._apply, self._read, self._pool, self._reads = apply, read, pool, reads
        self.cfg = FoldConfig(
            keys=self.keys,
            partition=p,
            retention_s={"m": settings.minute_retention_s, "h": settings.hour_retention_s,
                         "d": settings.day_retention_s},
            dedup_window_s=settings.dedup_window_s,
            job_ttl_s=settings.job_ttl_s,
            future_tolerance_ms=settings.future_tolerance_s * 1000,
            recent_jobs=settings.recent_jobs_per_queue,
            recent_failures=settings.recent_failures_per_queue,
        )
        self.cache = JobCache(settings.job_cache_size)
        # bucket key -> the EXPIREAT this owner has already sent for it (a bucket's expiry never changes)
        self._expiry_sent: dict[str, int] = {}
        self.wm_id = self.read_id = "0-0"  # applied / handed to folding
        self.read_arrival_ms = 0  # when the newest entry handed to folding was added to the stream
        self.rolled_s = 0  # the roll-up marker the next apply starts from (aggregator/rollup.py)
        self.queues: set[str] = set()  # the partition's queues, whose minutes are rolled up
        self.flush: Flush | None = None
        self.opened_s = 0.0
        self.inflight: _InFlight | None = None
        self._ahead: deque[Future[_Chunk]] = deque()  # the next chunks, in order, being read
        self._cursor = _Cursor("0-0")
        self.applied_entries = self.applied_flushes = 0
        self.caught_up = False
        self._checked_s = 0.0
        self.reload()

    def reload(self) -> None:
        """Forget everything in memory and continue from the stored watermark."""
        self.flush, self.inflight = None, None
        self._drop_reads()
        self.cache.clear()
        self._expiry_sent.clear()
        keys, p = self.keys, self.p
        wm_id, rolled = self.client.hmget(keys.watermark(p), [schema.WM_ID, schema.WM_ROLLED])  # type: ignore[misc]
        self.wm_id = self.read_id = wm_id.decode() if isinstance(wm_id, bytes) else "0-0"
        if rolled is not None:
            self.rolled_s = int(rolled)
        else:
            last_ms = self.client.hget(keys.summary(p), schema.LAST_MS)
            self.rolled_s = rollup.initial_marker(int(last_ms) if last_ms is not None else None,  # type: ignore[arg-type]
                                                  time.time())
        self.queues = {q.decode() for q in self.client.smembers(keys.queues(p))}  # type: ignore[union-attr]
        self._index_backlog()
        self._cursor = _Cursor(self.wm_id)

    def _index_backlog(self) -> None:
        """Count each queue's pending jobs into the backlog index, which every apply then keeps.

        The index is derived from the pending sets; building it whenever an
        owner starts covers data written before it existed, and a count that a
        flush still in flight changes is put right by that flush.
        """
        keys, p = self.keys, self.p
        queues = [q.decode() for q in self.client.zrange(keys.oldest_pending(p), 0, -1)]  # type: ignore[union-attr]
        pipe = self.client.pipeline(transaction=False)
        for q in queues:
            pipe.zcard(keys.pending(p, q))
        counts = pipe.execute() if queues else []
        index = {q: n for q, n in zip(queues, counts, strict=True) if n}
        # (a reader between the two finds no index and counts the pending sets itself)
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(keys.backlog(p))
        if index:
            pipe.zadd(keys.backlog(p), index)
        pipe.execute()

    @property
    def idle(self) -> bool:
        """Nothing read and not yet applied."""
        return self.flush is None and self.inflight is None

    def step(self, now_s: float, eager: bool = False) -> int:
        """Read and fold the next chunk, apply the open flush when due; entries read."""
        if self.inflight is not None and self.inflight.future.done():
            self.settle()
        s = self.settings
        n = 0
        if self.flush is None or self.flush.entries < s.max_flush_entries:
            n = self._read_chunk(now_s)
            self.caught_up = n < s.batch_size
        flush = self.flush
        if flush is not None and self._due(flush, now_s, eager):
            self.submit(now_s)
        elif flush is None and self.inflight is None and now_s - self._checked_s >= s.lease_ttl_ms / 3000:
            # An empty flush now and then: it counts entries trimmed before they were read.
            self._checked_s = now_s
            self.flush = Flush(self.cfg)
            self.submit(now_s)
        return n

    def _due(self, flush: Flush, now_s: float, eager: bool) -> bool:
        """Whether the open flush should be applied now.

        Caught up with the stream (the last read was not full), it is applied
        once it has been open for the flush interval (at once with ``eager``,
        when draining): applying whenever the stream is caught up would, at
        live rates, apply tiny flushes that merge nothing. So it is after a
        full read of entries that arrived less than CAUGHT_UP_LAG_S ago. Behind
        the stream, freshness is already lost to the backlog, so it grows until
        full (or BEHIND_FLUSH_INTERVALS old, or BACKLOG_FLUSH_S when the entries
        read are BACKLOG_LAG_S old): bigger flushes merge more and catch up sooner.
        """
        interval_s = self.settings.flush_interval_ms / 1000
        lag_s = now_s - self.read_arrival_ms / 1000
        age_s, longest_s = now_s - self.opened_s, BEHIND_FLUSH_INTERVALS * interval_s
        if lag_s > BACKLOG_LAG_S:
            longest_s = max(longest_s, BACKLOG_FLUSH_S)
        if flush.entries >= self.settings.max_flush_entries or age_s >= longest_s:
            return True
        if self.caught_up:
            return eager or age_s >= interval_s
        return age_s >= interval_s and lag_s < CAUGHT_UP_LAG_S

    def _fetch(self) -> Future[_Chunk]:
        """Ask the read thread for the next chunk: it reads while this thread folds."""
        return self._reads.submit(self._read_ahead, self._cursor)

    def _drop_reads(self) -> None:
        """Forget the reads queued ahead; those not started yet are not sent at all (the read
        thread is shared with other partitions)."""
        for future in self._ahead:
            future.cancel()
        self._ahead.clear()

    def _read_ahead(self, cursor: _Cursor) -> _Chunk:
        """On the read thread: read, parse, and read the states of jobs the owner does not hold.

        Reading those states here keeps the folding thread from waiting on
        Redis. The cache's generation is taken before it is asked which jobs
        it holds, and a state read here is used (see :meth:`_still_current`, when
        the chunk is folded) only if the cache has not forgotten that job
        since (:meth:`JobCache.forgotten_since`). That makes it current: a
        job's write is preceded by the cache holding it, from the flush's
        finish until after the write has landed, and every removal from the
        cache is recorded (the one that can come before a write has landed,
        a near-expiry drop, is read again once nothing is in flight).
        """
        s, read_s = self.settings, time.time()
        entries, ids = parse_entries(self._read(self.keys.stream(self.p), cursor.after_id, s.batch_size),
                                     s.max_entry_bytes)
        if entries:
            cursor.after_id = entries[-1][0]
        cache, flush = self.cache, self.flush
        generation = cache.generation
        tracks = flush.tracks if flush is not None else {}
        unknown = [job_id for job_id in ids if job_id not in tracks and not cache.holds(job_id)]
        states: dict[str, bytes | None] = {}
        if unknown:
            states = self._read_states(unknown)
        return _Chunk(entries, ids, states, generation, read_s)

    def _read_chunk(self, now_s: float) -> int:
        ahead = self._ahead
        chunk = (ahead.popleft() if ahead else self._fetch()).result()
        if not chunk.entries and not ahead and chunk.read_s < now_s - self.settings.flush_interval_ms / 2000:
            chunk = self._fetch().result()  # read ahead, and found nothing then: look again now
        entries = chunk.entries
        if entries:
            self.read_id, self.read_arrival_ms = entries[-1][0], entries[-1][1]
        if len(entries) == self.settings.batch_size:  # more is waiting: read it while this chunk is folded
            while len(ahead) < min(READ_AHEAD_MAX_CHUNKS, max(1, READ_AHEAD_ENTRIES // self.settings.batch_size)):
                ahead.append(self._fetch())
        elif ahead:
            # Caught up: the reads queued behind this one ran too early to find much. Read afresh
            # from here (a new cursor: the dropped reads may still move the old one).
            self._drop_reads()
            self._cursor = _Cursor(self.read_id)
        if not entries:
            return 0
        if not ahead:
            # Keep one read going while this chunk and the other partitions are folded: the
            # folding thread then finds it done instead of waiting on Redis (which may be in
            # the middle of an apply) at every step.
            ahead.append(self._fetch())
        if self.flush is None:
            self.flush, self.opened_s = Flush(self.cfg), now_s
        missing = self.flush.jobs_to_read(chunk.job_ids, self.cache, now_s)
        if missing:
            states = self._still_current(chunk)
            if self.inflight is not None and not states.keys() >= set(missing):
                # Some must be read from Redis now: only once nothing is in flight, since a job the cache
                # dropped as near its expiry (a TTL shorter than the cache's margin) may have its write there.
                self.settle()
                if self.flush is None:
                    return 0  # the flush in flight was refused: read again from the stored watermark
                missing = self.flush.jobs_to_read(chunk.job_ids, self.cache, now_s)  # its trim may forget more
                states = self._still_current(chunk)
            self._load_jobs(missing, states)
        self.flush.add(entries, self.cache)
        return len(entries)

    def _load_jobs(self, jobs: list[str], states: dict[str, bytes | None]) -> None:
        """Learn the stored state of jobs this owner does not know (none of them is in flight), from
        ``states`` read ahead and still current, else from Redis."""
        unread = [j for j in jobs if j not in states]
        if unread:
            states = {**states, **self._read_states(unread)}
        for job_id in jobs:
            raw = states[job_id]
            self.cache.put(job_id, Known(JobRecord.decode(raw) if raw else None))

    def _still_current(self, chunk: _Chunk) -> dict[str, bytes | None]:
        """The job states read ahead with ``chunk`` that are still what Redis holds."""
        forgotten = self.cache.forgotten_since(chunk.generation)
        if forgotten is None:
            return {}
        if forgotten:
            return {j: v for j, v in chunk.states.items() if not any(j in ids for ids in forgotten)}
        return chunk.states

    def _read_states(self, job_ids: list[str]) -> dict[str, bytes | None]:
        prefix = self.cfg.job_key_prefix
        values: list[bytes | None] = self.client.mget([prefix + j for j in job_ids])  # type: ignore[assignment]
        return dict(zip(job_ids, values, strict=True))

    def submit(self, now_s: float) -> None:
        """Hand the open flush to the apply thread (after the previous one has landed)."""
        if self.inflight is not None:
            self.settle()  # if that reloads from Redis, the open flush is dropped with everything else
        flush, self.flush = self.flush, None
        if flush is None:
            return
        fx = flush.finish(self.cache, now_s, self.rolled_s)
        self.queues.update(flush.minutes)
        rolled_s = rollup.next_marker(self.rolled_s, now_s, len(self.queues))
        rollup.roll(fx, self.rolled_s, rolled_s, self.queues, self.cfg, now_s)
        sent = self._expiry_sent
        if len(sent) > _EXPIRY_MEMO_MAX:
            sent.clear()
        fx.expire_at_s = {key: at for key, at in fx.expire_at_s.items() if sent.get(key) != at}
        sent.update(fx.expire_at_s)
        keys = self.keys
        fixed = [keys.lease(self.p), keys.watermark(self.p), keys.stream(self.p), keys.summary(self.p),
                 keys.oldest_pending(self.p)]
        key_list, ops = fx.encode(fixed, keys.oldest_pending(self.p), keys.backlog(self.p), keys.deadletter(self.p),
                                  self.settings.deadletter_maxlen, self.packed)
        new_wm = flush.last_entry_id or self.wm_id
        args: list[Any] = [self.lease_value, self.wm_id, new_wm, flush.entries, int(now_s * 1000), self.rolled_s,
                           rolled_s, *ops]
        future = self._pool.submit(self._apply, keys=key_list, args=args)
        self.inflight = _InFlight(future, flush.entries)
        self.wm_id, self.rolled_s = new_wm, rolled_s  # the next flush starts where this one ends

    def settle(self) -> None:
        """Wait for the flush in flight; raises :class:`Fenced` if the partition is no longer ours."""
        inflight, self.inflight = self.inflight, None
        if inflight is None:
            return
        try:
            lost = int(inflight.future.result())
        except redis.ResponseError as exc:
            message = str(exc)
            if message.startswith("FENCED"):
                raise Fenced(message) from None
            if message.startswith(("WATERMARK", "ROLLED")):
                # The lease is still ours (the script checks it first), but an earlier
                # flush landed although its reply was lost: continue from what is stored.
                log.warning("partition %d: %s; re-reading from the stored watermark", self.p, message)
                self.reload()
                return
            raise
        if lost:
            log.error("partition %d: %d events were trimmed before they were read", self.p, lost)
        self.applied_entries += inflight.entries
        self.applied_flushes += 1
        # Nothing is in flight now: whatever the cache forgets is stored, and the open flush
        # holds its own jobs' states. (Trimming with a flush in flight could forget a job whose
        # write has not landed, and the next read of it would find the state before that write.)
        self.cache.trim()

    def finish(self, now_s: float) -> None:
        """Apply what has been read and wait for it."""
        if self.flush is not None and self.flush.entries:
            self.submit(now_s)
        self.flush = None
        self.settle()
