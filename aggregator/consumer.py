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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import orjson
import redis

from aggregator.connection import ensure_meta
from aggregator.fold import Entry, FoldConfig, JobState, Prior, fold, jobs_to_read, parse_entries
from aggregator.housekeeping import prune_stale_workers
from aggregator.keys import Keys
from aggregator.lease import Leases
from aggregator.settings import Settings

log = logging.getLogger("jobpulse.aggregator")
MAX_BACKOFF_S = 5.0

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

# The stored state of each job of a batch and which of its events were applied,
# in one round trip. KEYS: job hashes; ARGV[1]: JSON list of each job's fields.
_PRIOR = """
local wanted = cjson.decode(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do
  local fields, values = wanted[i], {}
  for j = 1, #fields, 1000 do  -- unpack() lives on a bounded C stack
    local got = redis.call('HMGET', key, unpack(fields, j, math.min(j + 999, #fields)))
    for _, v in ipairs(got) do values[#values + 1] = v end
  end
  out[i] = values
end
return cjson.encode(out)
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


@dataclass
class _Staged:
    """A batch read and parsed, with the prior state of its jobs."""

    partition: int
    lease_value: str
    wm_id: str
    entries: list[Entry]
    prior: Prior
    lost: int


@dataclass
class _Batch:
    """A folded batch, ready for the apply script."""

    partition: int
    keys: list[str]
    args: list[Any]
    new_wm: str
    entries: int
    lost: int


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
        self._prior = client.register_script(_PRIOR)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobpulse-apply")
        self._folded: _Batch | None = None
        self._applying: tuple[_Batch, Future[Any]] | None = None
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
        next_renew = backoff_s = 0.0
        try:
            while not self._stop.is_set():
                try:
                    if time.monotonic() >= next_renew:
                        self.rebalance(want_all=drain)
                        next_renew = time.monotonic() + renew_every_s
                    worked = 0
                    for p in sorted(self.owned):
                        if self._stop.is_set():
                            break
                        worked += self._step(p)
                    backoff_s = 0.0
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    # Whatever was in flight may or may not have landed; the apply
                    # script's watermark check tells, once Redis is back.
                    self._folded = self._applying = None
                    backoff_s = min(MAX_BACKOFF_S, max(0.1, backoff_s * 2))
                    log.warning("Redis unreachable (%s); retrying in %.1f s", exc, backoff_s)
                    next_renew = 0.0
                    self._stop.wait(backoff_s)
                    continue
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
        self._flush()
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
        prune_stale_workers(self.client, self.keys, self.owned, self.settings.worker_retention_s, now_ms)
        self._report_self(now_ms)

    def _try_acquire(self, p: int) -> None:
        value = self.leases.acquire(self.keys.lease(p), self.keys.fence(p))
        if value is None:
            return
        self.owned[p] = Owned(lease_value=value, wm_id="0-0", consumed=0, lost=0)
        self._reload(p)
        log.info("owner of partition %d from %s", p, self.owned[p].wm_id)

    def _reload(self, p: int) -> None:
        """Take partition ``p``'s position from its stored watermark."""
        wm_id, consumed, lost = self.client.hmget(self.keys.watermark(p), ["id", "consumed", "lost"])  # type: ignore[misc]  # redis-py 5 stubs
        owned = self.owned[p]
        owned.wm_id, owned.consumed, owned.lost = _text(wm_id) or "0-0", int(consumed or 0), int(lost or 0)

    def release_all(self) -> None:
        """Finish the batch in flight, give back every lease and leave the live-aggregator set."""
        try:
            self._flush()
        except redis.RedisError as exc:
            log.warning("the last batch was not applied (%s); the next owner re-reads it", exc)
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
        """Read and fold partition ``p``'s next batch while the previous batch is applied; entries read.

        A batch is folded, then held until the next step has read its entries
        and prior state; it is applied on a worker thread while this thread
        folds the next one, so Redis and Python work side by side. At most
        one batch waits and one is applied; a partition is read again only
        after its previous batch has landed, so each fold sees the state the
        last batch left.
        """
        if self._folded is not None and self._folded.partition == p:
            self._flush()
        if p not in self.owned:  # fenced out by the batch that just landed
            return 0
        staged = self._stage(p)
        self._submit()
        batch = self._fold(staged) if staged is not None else None
        self._settle()
        self._folded = batch
        return (batch.entries or 1) if batch is not None else 0

    def _flush(self) -> None:
        """Apply the folded batch, if any, and wait for it."""
        self._submit()
        self._settle()

    def _submit(self) -> None:
        batch, self._folded = self._folded, None
        if batch is not None:
            self._applying = (batch, self._pool.submit(self._apply, keys=batch.keys, args=batch.args))

    def _settle(self) -> None:
        """Wait for the batch being applied; record it, or drop the partition if it was fenced out."""
        if self._applying is None:
            return
        batch, applying = self._applying
        self._applying = None
        try:
            applying.result()
        except redis.ResponseError as exc:
            if str(exc).startswith("WATERMARK"):
                # The lease is still ours (the script checks it first), but an earlier
                # batch landed although its reply was lost: continue from what is stored.
                log.warning("partition %d: %s; re-reading from the stored watermark", batch.partition, exc)
                self._reload(batch.partition)
                return
            if not str(exc).startswith("FENCED"):
                raise
            log.warning("partition %d fenced out: %s", batch.partition, exc)
            self.progress.fenced += 1
            self.owned.pop(batch.partition, None)
            return
        owned = self.owned[batch.partition]
        owned.wm_id = batch.new_wm
        owned.consumed += batch.entries
        owned.lost += batch.lost
        self.progress.batches += 1
        self.progress.entries += batch.entries

    def _stage(self, p: int) -> _Staged | None:
        """Partition ``p``'s next entries, parsed, and the prior state of their jobs."""
        owned = self.owned[p]
        stream, batch_size = self.keys.stream(p), self.settings.batch_size
        raw_entries, unread, added = self._read(keys=[stream], args=[owned.wm_id, batch_size])
        lost = max(0, int(added) - owned.consumed - owned.lost - int(unread)) if added >= 0 else 0
        if not raw_entries and not lost:
            return None
        entries = parse_entries(((eid, _pairs(flat)) for eid, flat in raw_entries), self.settings.max_entry_bytes)
        return _Staged(p, owned.lease_value, owned.wm_id, entries, self._read_prior(p, jobs_to_read(entries)), lost)

    def _fold(self, staged: _Staged) -> _Batch:
        """Fold staged entries into the apply script's KEYS and ARGV."""
        keys, s, p = self.keys, self.settings, staged.partition
        cfg = FoldConfig(
            keys=keys,
            partition=p,
            retention_s=self._retention,
            dedup_window_s=s.dedup_window_s,
            job_ttl_s=s.job_ttl_s,
            future_tolerance_ms=s.future_tolerance_s * 1000,
        )
        effects = fold(staged.entries, staged.prior, cfg)
        if staged.lost:
            effects.add(keys.watermark(p), "lost", staged.lost)
            log.error("partition %d: %d events were trimmed before they were read", p, staged.lost)
        new_wm = staged.entries[-1].entry_id if staged.entries else staged.wm_id
        fixed = [keys.lease(p), keys.watermark(p), keys.stream(p), keys.deadletter(p)]
        key_list, ops, dead = effects.encode(fixed)
        n = len(staged.entries)
        now_ms = int(time.time() * 1000)
        header: list[Any] = [staged.lease_value, staged.wm_id, new_wm, n, now_ms, s.deadletter_maxlen, ops]
        return _Batch(p, key_list, header + dead, new_wm, n, staged.lost)

    def _read_prior(self, p: int, wanted: dict[str, list[str]]) -> Prior:
        """The stored state and already-applied event ids of the batch's jobs."""
        prior = Prior()
        if not wanted:
            return prior
        fields = [["s", "t", "o", "q", *("e:" + e for e in event_ids)] for event_ids in wanted.values()]
        reply = self._prior(keys=[self.keys.job(p, job_id) for job_id in wanted], args=[orjson.dumps(fields)])
        for (job_id, event_ids), values in zip(wanted.items(), orjson.loads(reply), strict=True):
            state, ts, rank, queue = values[:4]
            if state:
                prior.jobs[job_id] = JobState(state, int(ts), int(rank), queue)
            prior.seen_event_ids.update(e for e, v in zip(event_ids, values[4:], strict=True) if v)
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
