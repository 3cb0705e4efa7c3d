"""The aggregator process: owns partitions through leases, reads each
partition's stream from its watermark, folds a batch and applies it with one
Lua call that checks the fencing token and the watermark first."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import redis

from aggregator.connection import ensure_meta
from aggregator.fold import FoldConfig, JobState, Prior, fold, jobs_to_read, parse_entries
from aggregator.keys import Keys
from aggregator.lease import Leases
from aggregator.settings import Settings

log = logging.getLogger("jobpulse.aggregator")

# One atomic snapshot: the next entries, how many are unread, how many were
# ever added. consumed + lost + unread = added tells how many were trimmed unread.
_READ = """
if redis.call('EXISTS', KEYS[1]) == 0 then return {{}, 0, 0} end
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
local at_wm = #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
local unread = redis.call('XLEN', KEYS[1]) - at_wm
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local added = -1
for i = 1, #info, 2 do
  if info[i] == 'entries-added' then added = info[i + 1] end
end
return {entries, unread, added}
"""


@dataclass
class Owned:
    """A partition this process holds the lease of."""

    lease_value: str
    wm_id: str
    consumed: int
    lost: int


@dataclass
class Progress:
    """What this process has done, for logs and tests."""

    batches: int = 0
    entries: int = 0
    fenced: int = 0
    owned: set[int] = field(default_factory=set)


class FencedError(RuntimeError):
    """Another owner took the partition; this process must let go of it."""


class Aggregator:
    """Folds the event streams into stats keys, exactly once."""

    def __init__(self, settings: Settings, client: redis.Redis, owner_id: str | None = None) -> None:
        self.settings = settings
        self.client = client
        self.keys = Keys(settings.key_prefix)
        self.owner_id = owner_id or f"{os.uname().nodename}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.partitions = ensure_meta(client, self.keys, settings.partitions)
        self.leases = Leases(client, self.owner_id, settings.lease_ttl_ms)
        self.owned: dict[int, Owned] = {}
        self.progress = Progress()
        self._stop = threading.Event()
        self._read = client.register_script(_READ)
        self._apply = client.register_script(resources.files("aggregator").joinpath("apply.lua").read_text())
        self._retention = {
            "m": settings.minute_retention_s,
            "h": settings.hour_retention_s,
            "d": settings.day_retention_s,
        }
        self._cpu_mark = (time.monotonic(), time.process_time())

    def stop(self) -> None:
        """Ask the loop to finish its current batch, release leases and return."""
        self._stop.set()

    def run(self, drain: bool = False) -> Progress:
        """Consume until stopped; with ``drain``, until it owns every partition and all are empty."""
        renew_every_s = self.settings.lease_ttl_ms / 3000
        next_renew = 0.0
        try:
            while not self._stop.is_set():
                if time.monotonic() >= next_renew:
                    self.rebalance(want_all=drain)
                    next_renew = time.monotonic() + renew_every_s
                worked = 0
                for p in sorted(self.owned):
                    if self._stop.is_set():
                        break
                    worked += self._step(p)
                if worked == 0:
                    if drain and len(self.owned) == self.partitions:
                        break
                    if drain:  # a dead owner's lease is still running out: keep trying
                        next_renew = 0.0
                    self._stop.wait(self.settings.idle_sleep_ms / 1000)
        finally:
            self.release_all()
        return self.progress

    # -- leases -----------------------------------------------------------

    def rebalance(self, want_all: bool = False) -> None:
        """Renew held leases and take or give partitions toward a fair share."""
        now_ms = int(time.time() * 1000)
        ttl = self.settings.lease_ttl_ms
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.keys.aggregators, {self.owner_id: now_ms})
        pipe.zremrangebyscore(self.keys.aggregators, "-inf", now_ms - 3 * ttl)
        pipe.zcard(self.keys.aggregators)
        live = max(1, int(pipe.execute()[2]))
        share = self.partitions if want_all else math.ceil(self.partitions / live)
        for p, owned in list(self.owned.items()):
            if not self.leases.renew(self.keys.lease(p), owned.lease_value):
                log.warning("lost the lease of partition %d", p)
                del self.owned[p]
        for p in sorted(self.owned, reverse=True)[: max(0, len(self.owned) - share)]:
            self.leases.release(self.keys.lease(p), self.owned.pop(p).lease_value)
        start = int(self.owner_id.encode().hex(), 16) % self.partitions
        for i in range(self.partitions):
            if len(self.owned) >= share:
                break
            p = (start + i) % self.partitions
            if p not in self.owned:
                self._try_acquire(p)
        self.progress.owned = set(self.owned)
        self._report_self(now_ms)

    def _try_acquire(self, p: int) -> None:
        value = self.leases.acquire(self.keys.lease(p), self.keys.fence(p))
        if value is None:
            return
        wm_id, consumed, lost = self.client.hmget(self.keys.watermark(p), ["id", "consumed", "lost"])
        self.owned[p] = Owned(
            lease_value=value,
            wm_id=_text(wm_id) or "0-0",
            consumed=int(consumed or 0),
            lost=int(lost or 0),
        )
        log.info("owner of partition %d from %s", p, self.owned[p].wm_id)

    def release_all(self) -> None:
        """Give back every lease and leave the live-aggregator set."""
        for p, owned in list(self.owned.items()):
            try:
                self.leases.release(self.keys.lease(p), owned.lease_value)
            except redis.RedisError:
                log.warning("could not release partition %d; it frees itself in %d ms", p, self.settings.lease_ttl_ms)
        self.owned.clear()
        with contextlib.suppress(redis.RedisError):
            self.client.zrem(self.keys.aggregators, self.owner_id)

    def _report_self(self, now_ms: int) -> None:
        """Publish this process's resource use, for PerformanceMetrics."""
        wall, cpu = time.monotonic(), time.process_time()
        last_wall, last_cpu = self._cpu_mark
        self._cpu_mark = (wall, cpu)
        cpu_pct = 100.0 * (cpu - last_cpu) / (wall - last_wall) if wall > last_wall else 0.0
        key = self.keys.aggregator_info(self.owner_id)
        self.client.hset(
            key,
            mapping={"rss_mb": f"{_rss_mb():.1f}", "cpu_percent": f"{cpu_pct:.1f}", "seen_ms": now_ms},
        )
        self.client.pexpire(key, 3 * self.settings.lease_ttl_ms)

    # -- batches ----------------------------------------------------------

    def _step(self, p: int) -> int:
        """Fold and apply one batch of partition ``p``; entries consumed."""
        try:
            return self._apply_batch(p)
        except FencedError as exc:
            log.warning("partition %d fenced out: %s", p, exc)
            self.progress.fenced += 1
            self.owned.pop(p, None)
            return 0

    def _apply_batch(self, p: int) -> int:
        owned = self.owned[p]
        keys, s = self.keys, self.settings
        stream = keys.stream(p)
        raw_entries, unread, added = self._read(keys=[stream], args=[owned.wm_id, s.batch_size])
        new_lost = max(0, int(added) - owned.consumed - owned.lost - int(unread)) if added >= 0 else 0
        if not raw_entries and not new_lost:
            return 0
        entries = parse_entries(((eid, _pairs(flat)) for eid, flat in raw_entries), s.max_entry_bytes)
        cfg = FoldConfig(
            keys=keys,
            partition=p,
            retention_s=self._retention,
            dedup_window_s=s.dedup_window_s,
            job_ttl_s=s.job_ttl_s,
            future_tolerance_ms=s.future_tolerance_s * 1000,
        )
        effects = fold(entries, self._read_prior(p, jobs_to_read(entries)), cfg)
        if new_lost:
            effects.add(keys.watermark(p), "lost", new_lost)
            log.error("partition %d: %d events were trimmed before they were read", p, new_lost)
        new_wm = entries[-1].entry_id if entries else owned.wm_id
        key_list, ops = effects.encode([keys.lease(p), keys.watermark(p), stream], keys.deadletter(p))
        now_ms = int(time.time() * 1000)
        header: list[Any] = [owned.lease_value, owned.wm_id, new_wm, len(entries), now_ms, s.deadletter_maxlen]
        try:
            self._apply(keys=key_list, args=header + ops)
        except redis.ResponseError as exc:
            if str(exc).startswith(("FENCED", "WATERMARK")):
                raise FencedError(str(exc)) from exc
            raise
        owned.wm_id, owned.consumed, owned.lost = new_wm, owned.consumed + len(entries), owned.lost + new_lost
        self.progress.batches += 1
        self.progress.entries += len(entries)
        return len(entries) or 1

    def _read_prior(self, p: int, wanted: dict[str, list[str]]) -> Prior:
        """The stored state and already-applied event ids of the batch's jobs."""
        prior = Prior()
        if not wanted:
            return prior
        pipe = self.client.pipeline(transaction=False)
        for job_id, event_ids in wanted.items():
            pipe.hmget(self.keys.job(p, job_id), ["s", "t", "o", "q", *("e:" + e for e in event_ids)])
        for (job_id, event_ids), values in zip(wanted.items(), pipe.execute(), strict=True):
            state, ts, rank, queue = values[:4]
            if state is not None:
                prior.jobs[job_id] = JobState(state.decode(), int(ts), int(rank), queue.decode())
            prior.seen_event_ids.update(e for e, v in zip(event_ids, values[4:], strict=True) if v is not None)
        return prior


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
