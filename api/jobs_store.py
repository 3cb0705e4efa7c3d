"""The read model of single jobs: the per-job state and the bounded recent-jobs record
(aggregator/recent.py), read by key from :mod:`aggregator.keys`.

Only :func:`read_job` reads the per-job state key, and only :func:`stored_state` knows its encoding:
when the write side changes how a job's state is stored, these two change. Every read here is bounded:
a job by id costs one pipelined GET + HGET per partition (its queue, hence its partition, is not
known), a listing reads at most the recent-jobs cap per queue asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from aggregator import recent, schema
from aggregator.jobcache import JobRecord
from api.store import StatsStore

# per-job state letter -> the status a job in that state has, when its info is no longer kept
_STATE_STATUS = {schema.JOB_PENDING: "enqueued", schema.JOB_RUNNING: "started", schema.JOB_AWAITING_RETRY: "failed"}


@dataclass
class JobView:
    """What jobpulse still knows of one job: its info array (schema.JOB_INFO) and/or its stored state."""

    job_id: str
    queue: str
    event_type: str | None  # of its latest event; None when only a finished state is known
    ts_ms: int  # event time of its latest event
    info: list[Any] | None  # schema.JOB_INFO, or None when the recent record no longer holds the job


@dataclass
class Failure:
    """One entry of a queue's recent-failures record."""

    job_id: str
    ts_ms: int
    event_type: str
    message: str
    attempt: int | None


def stored_state(raw: bytes) -> tuple[str, int, str]:
    """(state letter, event ms of the latest applied event, queue) of a stored per-job state."""
    record = JobRecord.decode(raw)
    return record.state, record.ts_ms, record.queue


def _view(job_id: str, info: list[Any]) -> JobView:
    return JobView(job_id, info[recent.QUEUE], info[recent.STATUS], info[recent.TS], info)


async def read_job(store: StatsStore, job_id: str) -> JobView | None:
    """A job by id from any partition: its info if the recent record holds it, else its per-job state
    (kept while it is unfinished, and for the dedup window after); None if neither."""
    pipe = store.client.pipeline(transaction=False)
    for p in range(store.partitions):
        pipe.hget(store.keys.job_info(p), job_id)
        pipe.get(store.keys.job(p, job_id))
    replies = await store.io.run(pipe)
    infos, states = replies[::2], replies[1::2]
    for raw in infos:
        if raw:
            return _view(job_id, recent.decode_info(raw))
    for raw in states:
        if raw:
            state, ts_ms, queue = stored_state(raw)
            return JobView(job_id, queue, _STATE_STATUS.get(state), ts_ms, None)
    return None


async def recent_jobs(store: StatsStore, queues: list[str]) -> list[JobView]:
    """Every job the recent-jobs record holds for ``queues`` (at most its cap per queue), newest first
    per queue."""
    pipe = store.client.pipeline(transaction=False)
    for q in queues:
        pipe.zrevrange(store.keys.recent_jobs(store.partition(q), q), 0, -1)
    ids_per_queue = await store.io.run(pipe)
    pipe = store.client.pipeline(transaction=False)
    asked: list[list[str]] = []
    for q, ids in zip(queues, ids_per_queue, strict=True):
        if ids:
            names = [i.decode() for i in ids]
            pipe.hmget(store.keys.job_info(store.partition(q)), names)
            asked.append(names)
    if not asked:
        return []
    out = []
    for names, raws in zip(asked, await store.io.run(pipe), strict=True):
        out += [_view(job_id, recent.decode_info(raw)) for job_id, raw in zip(names, raws, strict=True) if raw]
    return out


async def recent_failures(store: StatsStore, queue: str) -> list[Failure]:
    """A queue's recent-failures record, newest first."""
    raws = await store.client.zrevrange(store.keys.recent_failures(store.partition(queue), queue), 0, -1)
    return [Failure(*orjson.loads(raw)) for raw in raws]


@dataclass
class ArchiveCounts:
    """`archived` and `restored` events ever, and the event time of the latest of each."""

    archived: int = 0
    restored: int = 0
    archived_ms: int | None = None
    restored_ms: int | None = None

    def add(self, values: list[bytes | None]) -> None:
        """Add one totals hash's ARCHIVE_FIELDS values."""
        archived, restored, archived_ms, restored_ms = (int(v) if v else None for v in values)
        self.merge(ArchiveCounts(archived or 0, restored or 0, archived_ms, restored_ms))

    def merge(self, other: ArchiveCounts) -> None:
        """Add another queue's counts into these."""
        self.archived += other.archived
        self.restored += other.restored
        self.archived_ms = max(filter(None, (self.archived_ms, other.archived_ms)), default=None)
        self.restored_ms = max(filter(None, (self.restored_ms, other.restored_ms)), default=None)


ARCHIVE_FIELDS = [schema.COUNT + "archived", schema.COUNT + "restored", schema.LAST_OF + "archived",
                  schema.LAST_OF + "restored"]


async def archive_counts(store: StatsStore, queues: list[str]) -> dict[str, ArchiveCounts]:
    """Archive counts of each of ``queues``, from their totals."""
    pipe = store.client.pipeline(transaction=False)
    for q in queues:
        pipe.hmget(store.keys.totals(store.partition(q), q), ARCHIVE_FIELDS)
    out = {}
    for q, values in zip(queues, await store.io.run(pipe), strict=True):
        out[q] = ArchiveCounts()
        out[q].add(values)
    return out
