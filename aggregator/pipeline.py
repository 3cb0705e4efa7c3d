"""One owned partition's batch pipeline: read, fold into an open flush, apply.

Entries are read in chunks from the last read position and folded into the
open :class:`~aggregator.fold.Flush` as they arrive. The flush is applied
when the stream is caught up, when it has been open for the flush interval,
or when it is full, so at high rates one write carries many events. While
one flush is applied (on the aggregator's apply thread) the next is folded
from the job states the first will leave, which the owner keeps in its
:class:`~aggregator.jobcache.JobCache`. Any failed or uncertain apply drops
all of that and restarts from what Redis holds.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import redis
from redis.commands.core import Script

from aggregator import schema
from aggregator.fold import Flush, FoldConfig, parse_entries
from aggregator.jobcache import JobCache, JobRecord, Known
from aggregator.keys import Keys
from aggregator.settings import Settings
from aggregator.streamread import RawRead

log = logging.getLogger("jobpulse.aggregator")


_EXPIRY_MEMO_MAX = 100_000


class Fenced(Exception):
    """Another owner holds the partition now."""


@dataclass
class _InFlight:
    future: Future[Any]
    entries: int


class PartitionPipeline:
    """Reads, folds and applies one partition while this process holds its lease."""

    def __init__(self, p: int, lease_value: str, settings: Settings, client: redis.Redis, apply: Script,
                 read: RawRead, pool: ThreadPoolExecutor) -> None:
        self.p, self.lease_value, self.settings, self.client = p, lease_value, settings, client
        self.keys = Keys(settings.key_prefix)
        self._apply, self._read, self._pool = apply, read, pool
        self.cfg = FoldConfig(
            keys=self.keys,
            partition=p,
            retention_s={"m": settings.minute_retention_s, "h": settings.hour_retention_s,
                         "d": settings.day_retention_s},
            dedup_window_s=settings.dedup_window_s,
            job_ttl_s=settings.job_ttl_s,
            future_tolerance_ms=settings.future_tolerance_s * 1000,
        )
        self.cache = JobCache(settings.job_cache_size)
        # bucket key -> the EXPIREAT this owner has already sent for it (a bucket's expiry never changes)
        self._expiry_sent: dict[str, int] = {}
        self.wm_id = self.read_id = "0-0"
        self.flush: Flush | None = None
        self.opened_s = 0.0
        self.inflight: _InFlight | None = None
        self._ahead: Future[Any] | None = None  # the next chunk, being read
        self.applied_entries = self.applied_flushes = 0
        self.caught_up = False
        self._checked_s = 0.0
        self.reload()

    def reload(self) -> None:
        """Forget everything in memory and continue from the stored watermark."""
        self.flush, self.inflight, self._ahead = None, None, None
        self.cache.clear()
        self._expiry_sent.clear()
        wm_id = self.client.hget(self.keys.watermark(self.p), schema.WM_ID)
        self.wm_id = self.read_id = wm_id.decode() if isinstance(wm_id, bytes) else "0-0"

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

        Caught up with the stream, it is applied once it has been open for the
        flush interval (at once with ``eager``, when draining): applying
        whenever the stream is caught up would, at live rates, apply tiny
        flushes that merge nothing. Behind the stream, freshness is already
        lost to the backlog, so it grows until full (or four intervals old):
        bigger flushes merge more and catch up sooner.
        """
        interval_s = self.settings.flush_interval_ms / 1000
        age_s = now_s - self.opened_s
        if flush.entries >= self.settings.max_flush_entries or age_s >= 4 * interval_s:
            return True
        return self.caught_up and (eager or age_s >= interval_s)

    def _fetch(self, after_id: str) -> Future[Any]:
        """Ask the apply thread for the entries after ``after_id``: it reads while this thread folds."""
        return self._pool.submit(self._read, self.keys.stream(self.p), after_id, self.settings.batch_size)

    def _read_chunk(self, now_s: float) -> int:
        ahead, self._ahead = self._ahead, None
        raw: list[Any] = (ahead or self._fetch(self.read_id)).result()
        if not raw:
            return 0
        if len(raw) == self.settings.batch_size:  # more is waiting: read it while this chunk is folded
            self._ahead = self._fetch(raw[-1][0].decode())
        entries = parse_entries(raw, self.settings.max_entry_bytes)
        if self.flush is None:
            self.flush, self.opened_s = Flush(self.cfg), now_s
        missing = self.flush.jobs_to_read(entries, self.cache, now_s)
        if missing:
            self._load_jobs(missing)
        self.flush.add(entries, self.cache)
        self.read_id = entries[-1][0]
        return len(entries)

    def _load_jobs(self, job_ids: list[str]) -> None:
        """Read the stored state of jobs this owner does not know (none of them is in flight)."""
        values: list[bytes | None] = self.client.mget([self.keys.job(self.p, j) for j in job_ids])  # type: ignore[assignment]
        for job_id, raw in zip(job_ids, values, strict=True):
            self.cache.put(job_id, Known(JobRecord.decode(raw) if raw else None))

    def submit(self, now_s: float) -> None:
        """Hand the open flush to the apply thread (after the previous one has landed)."""
        if self.inflight is not None:
            self.settle()  # if that reloads from Redis, the open flush is dropped with everything else
        flush, self.flush = self.flush, None
        if flush is None:
            return
        fx = flush.finish(self.cache, now_s)
        sent = self._expiry_sent
        if len(sent) > _EXPIRY_MEMO_MAX:
            sent.clear()
        fx.expire_at_s = {key: at for key, at in fx.expire_at_s.items() if sent.get(key) != at}
        sent.update(fx.expire_at_s)
        keys = self.keys
        fixed = [keys.lease(self.p), keys.watermark(self.p), keys.stream(self.p), keys.summary(self.p),
                 keys.oldest_pending(self.p)]
        key_list, ops = fx.encode(fixed, keys.oldest_pending(self.p), keys.deadletter(self.p),
                                  self.settings.deadletter_maxlen)
        new_wm = flush.last_entry_id or self.wm_id
        args: list[Any] = [self.lease_value, self.wm_id, new_wm, flush.entries, int(now_s * 1000), *ops]
        future = self._pool.submit(self._apply, keys=key_list, args=args)
        self.inflight = _InFlight(future, flush.entries)
        self.wm_id = new_wm  # the next flush starts where this one ends

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
            if message.startswith("WATERMARK"):
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
