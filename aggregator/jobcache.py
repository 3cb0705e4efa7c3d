"""What the partition owner remembers of recent jobs while it holds the lease.

The owner is the only writer of its partition's job states, so after its own
writes land it knows them without asking Redis. A new owner (or a new fencing
token, or any failed apply) starts from an empty cache and reads from Redis.
Entries are dropped, oldest first, beyond a bound, and trusted only while the
stored key certainly still exists (its TTL is tracked here).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec

from aggregator import schema

# Trust a remembered key only until this long before its stored TTL runs out, so a
# write that assumes the key exists (SET ... KEEPTTL) lands well before it expires.
_EXPIRY_MARGIN_S = 30
# Removals remembered for :meth:`JobCache.forgotten_since`; a state read longer ago is read again.
_FORGOTTEN_KEPT = 64
ERROR_CHARS = 500  # of an error message kept in a job's record
_SHARED = {s: s for s in ("enqueued", "started", "completed", "failed", "retried", "dead", "timed_out", "cancelled",
                          "archived", "restored", "background", "low", "normal", "high", "critical")}


class JobRecord(msgspec.Struct, array_like=True, gc=False):
    """A job's latest applied state and the event ids applied to it, and what its events told of it
    for hammerwork-web's job views (api/jobs_store.py).

    The fields from ``kind`` on are None where no applied event told them, and in a record stored
    before they existed (its five-field form still decodes). Folding (``fold._advance``) updates
    them event by event with rules that do not depend on how the events are split into flushes.
    Stored as a JSON array, the fields in order. (``gc=False``: a record refers to nothing that
    refers back, and the cache's many records would only lengthen collections.)
    """

    state: str  # schema.JOB_*; "" in a record being built for a job nothing was stored of
    ts_ms: int
    rank: int
    queue: str
    event_ids: list[str]
    kind: str | None = None  # type of the latest event (by time, then lifecycle rank)
    priority: str | None = None  # of the earliest enqueued event; else of the latest event
    created_ms: int | None = None  # time of the earliest enqueued event
    started_ms: int | None = None  # of the latest started event
    completed_ms: int | None = None  # of the latest completed event
    failed_ms: int | None = None  # of the latest failed, timed_out or dead event
    error: str | None = None  # that failure's error message, cut to ERROR_CHARS
    outcome_ms: int | None = None  # time of the latest outcome that carried processing_time_ms
    processing_ms: int | None = None  # its processing_time_ms
    attempt: int | None = None  # the largest attempt (or error.retry_attempt) any event gave
    starts: int = 0  # started events applied

    def encode(self) -> str:
        """The stored form: a JSON array, the fields in order."""
        return _encode_record(self).decode()

    @classmethod
    def decode(cls, raw: bytes | str) -> JobRecord:
        """Parse the stored form (the first five fields, or all of them)."""
        record = _decode_record(raw)
        # one shared string per event type and priority, not one per record held in memory
        if record.kind is not None:
            record.kind = _SHARED.get(record.kind, record.kind)
        if record.priority is not None:
            record.priority = _SHARED.get(record.priority, record.priority)
        return record

    def copy(self) -> JobRecord:
        """A copy that can be changed without changing this one."""
        return msgspec.structs.replace(self, event_ids=list(self.event_ids))


_encode_record = msgspec.json.Encoder().encode
_decode_record = msgspec.json.Decoder(JobRecord).decode


@dataclass(slots=True)
class Known:
    """A job as this owner knows it: None if Redis holds no state for it."""

    record: JobRecord | None
    expires_at_s: float | None = None  # when the stored key's TTL runs out; None: not known


class JobCache:
    """Bounded map job id -> :class:`Known`, oldest first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._jobs: dict[str, Known] = {}
        self._finished: list[str] = []  # put as finished since the last trim
        # Removals are numbered and the last few remembered, so a job state read from Redis for a job
        # the cache did not hold can be checked later: it is current unless the cache has held and
        # forgotten that job since (its write may have landed after the read).
        self.generation = 0
        self._forgotten: deque[tuple[int, set[str]]] = deque()
        self._floor = 0  # states read before this generation are all suspect

    def __len__(self) -> int:
        return len(self._jobs)

    def get(self, job_id: str) -> Known | None:
        """What is known of ``job_id``, or None if it must be read from Redis."""
        return self._jobs.get(job_id)

    def put(self, job_id: str, known: Known, finished: bool = False) -> None:
        """Remember ``known`` as the newest entry; a ``finished`` job is forgotten at the next trim."""
        self._jobs.pop(job_id, None)
        self._jobs[job_id] = known
        if finished:
            self._finished.append(job_id)

    def holds(self, job_id: str) -> bool:
        """Whether ``job_id`` has an entry (safe from another thread: a single dict lookup)."""
        return job_id in self._jobs

    def missing(self, job_ids: Iterable[str], now_s: float) -> list[str]:
        """The ids among ``job_ids`` whose state must be read from Redis (stale entries are dropped)."""
        out: list[str] = []
        jobs = self._jobs
        for job_id in job_ids:
            known = jobs.get(job_id)
            if known is not None and (known.expires_at_s is None or known.expires_at_s - _EXPIRY_MARGIN_S > now_s):
                continue
            if known is not None:
                del jobs[job_id]
                self._forget({job_id})
            out.append(job_id)
        return out

    def trim(self) -> None:
        """Forget finished jobs, then the oldest entries beyond the capacity.

        Only when no flush of the partition is in flight: what is forgotten is
        then stored in Redis, and read back if it is needed again. Finished jobs
        rarely get another event, so keeping them would only cost memory.
        """
        jobs = self._jobs
        gone: set[str] = set()
        for job_id in self._finished:
            known = jobs.get(job_id)
            if known is not None and known.record is not None and known.record.state == schema.JOB_FINISHED:
                del jobs[job_id]
                gone.add(job_id)
        self._finished.clear()
        excess = len(jobs) - self.capacity
        if excess > 0:
            for job_id in list(itertools.islice(jobs, excess)):
                del jobs[job_id]
                gone.add(job_id)
        if gone:
            self._forget(gone)

    def clear(self) -> None:
        """Forget everything (after a failed apply or a lost lease)."""
        self.generation += 1
        self._floor = self.generation
        self._forgotten.clear()
        self._jobs.clear()
        self._finished.clear()

    def forgotten_since(self, generation: int) -> list[set[str]] | None:
        """The sets of job ids forgotten after ``generation``; None if that is no longer known."""
        if generation < self._floor:
            return None
        return [ids for gen, ids in self._forgotten if gen > generation]

    def _forget(self, job_ids: set[str]) -> None:
        self.generation += 1
        self._forgotten.append((self.generation, job_ids))
        if len(self._forgotten) > _FORGOTTEN_KEPT:
            self._floor = self._forgotten.popleft()[0]
