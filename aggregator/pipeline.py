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

log = logging.getLogger("jobpulse.aggregator")


class Fenced(Exception):
    """Another owner holds the partition now."""


@dataclass
class _InFlight:
    future: Future[Any]
    new_wm: str
    entries: int


class PartitionPipeline:
    """Reads, folds and applies one partition while this process holds its lease."""

    def __init__(self, p: int, lease_value: str, settings: Settings, client: redis.Redis, apply: Script,
                 pool: ThreadPoolExecutor) -> None:
        self.p, self.lease_value, self.settings, self.client = p, lease_value, settings, client
        self.keys = Keys(settings.key_prefix)
        self._apply, self._pool = apply, pool
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
        self.wm_id = self.read_id = "0-0"
        self.flush: Flush | None = None
        self.opened_s = 0.0
        self.inflight: _InFlight | None = None
        self.applied_entries = self.applied_flushes = 0
        self.caught_up = False
        self._checked_s = 0.0
        self.reload()

    def reload(self) -> None:
        """Forget everything in memory and continue from the stored watermark."""
        self.flush, self.inflight = None, None
        self.cache.clear()
        wm_id = self.client.hget(self.keys.watermark(self.p), schema.WM_ID)
        self.wm_id = self.read_id = wm_id.decode() if isinstance(wm_id, bytes) else "0-0"

    @property
    def idle(self) -> bool:
        """Nothing read and not yet applied."""
        return self.flush is None and self.inflight is None

    def step(self, now_s: float) -> int:
        """Read and fold the next chunk, apply the open flush when due; entries read."""
        if self.inflight is not None and self.inflight.future.done():
            self.settle()
        s = self.settings
        n = 0
        if self.flush is None or self.flush.entries < s.max_flush_entries:
            n = self._read_chunk(now_s)
            self.caught_up = n < s.batch_size
        flush = self.flush
        if flush is not None and (self.caught_up or flush.entries >= s.max_flush_entries
                                  or now_s - self.opened_s >= s.flush_interval_ms / 1000):
            self.submit(now_s)
        elif flush is None and self.inflight is None and now_s - self._checked_s >= s.lease_ttl_ms / 3000:
            # An empty flush now and then: it counts entries trimmed before they were read.
            self._checked_s = now_s
            self.flush = Flush(self.cfg)
            self.submit(now_s)
        return n

    def _read_chunk(self, now_s: float) -> int:
        raw: list[Any] = self.client.xrange(self.keys.stream(self.p), "(" + self.read_id, "+",  # type: ignore[assignment]
                                            count=self.settings.batch_size)
        if not raw:
            return 0
        entries = parse_entries(raw, self.settings.max_entry_bytes)
        if self.flush is None:
            self.flush, self.opened_s = Flush(self.cfg), now_s
        missing = self.flush.jobs_to_read(entries, self.cache, now_s)
        if missing:
            self._load_jobs(missing)
        self.flush.add(entries, self.cache)
        self.read_id = entries[-1].entry_id
        return len(entries)

    def _load_jobs(self, job_ids: list[str]) -> None:
        """Read the stored state of jobs this owner does not know (none of them is in flight)."""
        values: list[bytes | None] = self.client.mget([self.keys.job(self.p, j) for j in job_ids])  # type: ignore[assignment]
        for job_id, raw in zip(job_ids, values, strict=True):
            self.cache.put(job_id, Known(JobRecord.decode(raw) if raw else None))

    def submit(self, now_s: float) -> None:
        """Hand the open flush to the apply thread (after the previous one has landed)."""
        flush, self.flush = self.flush, None
        if flush is None:
            return
        if self.inflight is not None:
            self.settle()
        fx = flush.finish(self.cache, now_s)
        keys = self.keys
        fixed = [keys.lease(self.p), keys.watermark(self.p), keys.stream(self.p), keys.summary(self.p),
                 keys.oldest_pending(self.p)]
        key_list, ops = fx.encode(fixed, keys.deadletter(self.p), self.settings.deadletter_maxlen)
        new_wm = flush.last_entry_id or self.wm_id
        args: list[Any] = [self.lease_value, self.wm_id, new_wm, flush.entries, int(now_s * 1000), "", "", *ops]
        future = self._pool.submit(self._apply, keys=key_list, args=args)
        self.inflight = _InFlight(future, new_wm, flush.entries)
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
        if self.inflight is None and self.flush is None:
            self.cache.trim()

    def finish(self, now_s: float) -> None:
        """Apply what has been read and wait for it."""
        if self.flush is not None and self.flush.entries:
            self.submit(now_s)
        self.flush = None
        self.settle()
