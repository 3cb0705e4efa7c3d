"""The aggregator process: holds partition leases and runs each owned
partition's batch pipeline: the main thread folds, read threads read and
parse ahead, one thread applies the flushes."""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import redis
from redis.exceptions import RedisClusterException

from aggregator import scripts
from aggregator.connection import NOT_READY_ERRORS, ensure_meta
from aggregator.housekeeping import prune_stale_workers
from aggregator.keys import Keys
from aggregator.membership import Membership
from aggregator.pipeline import Fenced, PartitionPipeline
from aggregator.selfreport import SelfReport
from aggregator.settings import Settings
from aggregator.streamread import raw_reader

log = logging.getLogger("jobpulse.aggregator")
MAX_BACKOFF_S = 5.0
READ_THREADS = 2  # threads that read and parse ahead (see Aggregator.__init__)


@dataclass
class Progress:
    """What this process has done, for logs and tests."""

    batches: int = 0
    entries: int = 0
    fenced: int = 0
    owned: set[int] = field(default_factory=set)


class Aggregator:
    """Folds the event streams into stats keys, exactly once."""

    def __init__(self, settings: Settings, client: redis.Redis, owner_id: str | None = None) -> None:
        self.settings = settings
        self.client = client
        self.keys = Keys(settings.key_prefix)
        self.owner_id = owner_id or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.partitions = ensure_meta(client, self.keys, settings.partitions)
        self.membership = Membership(client, self.keys, self.owner_id, self.partitions, settings.lease_ttl_ms)
        self.report = SelfReport(client, self.keys, self.owner_id, settings.lease_ttl_ms)
        self.pipelines: dict[int, PartitionPipeline] = {}
        self.progress = Progress()
        # A plain flag, not a threading.Event: stop() runs in signal handlers, and an Event's
        # set() takes the lock that the Event.wait() the signal interrupted may be holding.
        self._stopping = False
        self._apply = scripts.register(client, "apply")
        self._packed = scripts.lua_has_msgpack(client)  # the apply's ops as one MessagePack argument
        self._read = raw_reader(client)
        # One apply thread: flushes land in the order they were folded, and Redis
        # works on one while this thread folds the next. Read threads: chunks are read
        # and parsed ahead without queueing behind the applies; each partition's reads
        # stay on one of them, in order. A read sent while Redis runs an apply waits
        # for all of it, so a second thread keeps another read going meanwhile.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobpulse-apply")
        self._reads = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"jobpulse-read{i}")
                       for i in range(READ_THREADS)]
        self._reader_of: dict[int, ThreadPoolExecutor] = {}  # partition -> the read thread it uses

    @property
    def owned(self) -> set[int]:
        """Partitions whose lease this process holds."""
        return set(self.membership.held)

    def stop(self) -> None:
        """Ask the loop to apply what it has read, release leases and return (safe in a signal handler)."""
        self._stopping = True

    def _nap(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early once stop() has been called."""
        deadline = time.monotonic() + seconds
        while not self._stopping and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))

    def run(self, drain: bool = False) -> Progress:
        """Consume until stopped; with ``drain``, until it owns every partition and all are empty."""
        next_renew = backoff_s = 0.0
        try:
            while not self._stopping:
                try:
                    if time.monotonic() >= next_renew:
                        self.rebalance(want_all=drain)
                        next_renew = time.monotonic() + self.membership.renew_every_s
                    worked = self.step_all(eager=drain)
                    backoff_s = 0.0
                except NOT_READY_ERRORS as exc:  # Redis (or its cluster) gone for a while
                    # Whatever was in flight may or may not have landed; the apply
                    # script's watermark check tells, once Redis is back.
                    self.pipelines.clear()
                    backoff_s = min(MAX_BACKOFF_S, max(0.1, backoff_s * 2))
                    log.warning("Redis unreachable (%s); retrying in %.1f s", exc, backoff_s)
                    next_renew = 0.0
                    self._nap(backoff_s)
                    continue
                if worked == 0:
                    idle = all(pipe.idle for pipe in self.pipelines.values())
                    if drain and idle and len(self.pipelines) == self.partitions:
                        break
                    if drain and len(self.pipelines) < self.partitions:
                        next_renew = 0.0  # a dead owner's lease is still running out: keep trying
                    if not (drain and not idle):  # an open flush is applied when due, after this nap
                        self._nap(self.settings.idle_sleep_ms / 1000)
        finally:
            if self._stopping:
                log.info("stopping: applying what was read, then releasing the leases")
            self.release_all()
        return self.progress

    def step_all(self, eager: bool = False) -> int:
        """One step of every owned partition; entries read (``eager``: apply as soon as caught up)."""
        worked = 0
        for p in sorted(self.pipelines):
            if self._stopping:
                break
            pipe = self.pipelines[p]
            try:
                worked += pipe.step(time.time(), eager)
            except Fenced as exc:
                self._fenced(p, exc)
            self._count(pipe)
        return worked

    def _count(self, pipe: PartitionPipeline) -> None:
        self.progress.entries += pipe.applied_entries
        self.progress.batches += pipe.applied_flushes
        pipe.applied_entries = pipe.applied_flushes = 0

    def _fenced(self, p: int, exc: Exception) -> None:
        log.warning("partition %d fenced out: %s", p, exc)
        self.progress.fenced += 1
        self.pipelines.pop(p, None)
        self.membership.forget(p)

    def flush_all(self) -> None:
        """Apply every partition's open flush and wait for them."""
        for p in list(self.pipelines):
            self._finish(p)

    def _finish(self, p: int) -> None:
        pipe = self.pipelines.get(p)
        if pipe is None:
            return
        try:
            pipe.finish(time.time())
        except Fenced as exc:
            self._fenced(p, exc)
        self._count(pipe)

    def rebalance(self, want_all: bool = False) -> None:
        """Renew held leases and take or give partitions toward a fair share.

        Only the partitions given back land what they have open first; the
        others go on folding (landing everything at each renewal stalled the
        pipeline every few seconds).
        """
        now_ms = int(time.time() * 1000)
        share = self.membership.share(now_ms, want_all)
        for p in self.membership.surplus(share):
            self._finish(p)
        taken, dropped = self.membership.rebalance(share)
        for p in dropped:
            self.pipelines.pop(p, None)
        for p, value in self.membership.held.items():
            if p not in self.pipelines or self.pipelines[p].lease_value != value:
                self.pipelines[p] = PartitionPipeline(p, value, self.settings, self.client, self._apply, self._read,
                                                       self._pool, self._read_thread(p), packed=self._packed)
                if p in taken:
                    log.info("owner of partition %d from %s", p, self.pipelines[p].wm_id)
        self.progress.owned = self.owned
        prune_stale_workers(self.client, self.keys, self.owned, self.settings.worker_retention_s, now_ms)
        self.report.publish(now_ms)

    def _read_thread(self, p: int) -> ThreadPoolExecutor:
        """The read thread that the fewest of the other owned partitions use, for partition ``p``."""
        users = Counter(self._reader_of[q] for q in self.pipelines if q != p and q in self._reader_of)
        reader = self._reader_of[p] = min(self._reads, key=lambda r: users[r])
        return reader

    def release_all(self) -> None:
        """Land what is open, give back every lease and leave the live-aggregator set."""
        try:
            self.flush_all()
        except (redis.RedisError, RedisClusterException) as exc:
            log.warning("the last flush was not applied (%s); the next owner re-reads it", exc)
        self.pipelines.clear()
        self.membership.release_all()
