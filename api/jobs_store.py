"""The read model of single jobs: each job's per-job record (aggregator/jobcache.py JobRecord) and the
per-queue indexes of recent jobs and failures (aggregator/recent.py), read by key from :mod:`aggregator.keys`.

Only this module reads the per-job record keys, and only :func:`decode` knows their encoding: when the
write side changes how a job's record is stored, this changes. Every read here is bounded: a job by id
costs one pipelined GET per partition (its queue, hence its partition, is not known), a listing one
ZREVRANGE and one MGET of at most the recent-jobs cap per queue asked for.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from aggregator import schema
from aggregator.jobcache import JobRecord
from api.store import StatsStore

# per-job state letter -> the latest event type a job in that state had, when its record does not say
# (a record stored before the record held the event type)
_STATE_KIND = {schema.JOB_PENDING: "enqueued", schema.JOB_RUNNING: "started", schema.JOB_AWAITING_RETRY: "failed"}


@dataclass
class JobView:
    """What jobpulse still knows of one job: its stored record."""

    job_id: str
    record: JobRecord

    @property
    def queue(self) -> str:
        """The queue of its latest event."""
        return self.record.queue

    @property
    def event_type(self) -> str | None:
        """The type of its latest event; None for a finished job whose record does not say."""
        return self.record.kind or _STATE_KIND.get(self.record.state)

    @property
    def ts_ms(self) -> int:
        """Event time of its latest event."""
        return self.record.ts_ms


@dataclass
class Failure:
    """One entry of a queue's recent-failures record."""

    job_id: str
    ts_ms: int
    event_type: str
    message: str
    attempt: int | None


def decode(raw: bytes) -> JobRecord:
    """A stored per-job record."""
    return JobRecord.decode(raw)


async def read_job(store: StatsStore, job_id: str) -> JobView | None:
    """A job by id from any partition, while its record is stored (unfinished jobs for
    JOBPULSE_JOB_TTL_S after their last event, finished ones for JOBPULSE_DEDUP_WINDOW_S); None if not."""
    pipe = store.client.pipeline(transaction=False)
    for p in range(store.partitions):
        pipe.get(store.keys.job(p, job_id))
    for raw in await store.io.run(pipe):
        if raw:
            return JobView(job_id, decode(raw))
    return None


async def recent_jobs(store: StatsStore, queues: list[str]) -> list[JobView]:
    """The jobs of ``queues``' indexes of recent jobs (at most its cap per queue) whose record is still
    stored, and whose latest event is still in that queue; newest first per queue."""
    pipe = store.client.pipeline(transaction=False)
    for q in queues:
        pipe.zrevrange(store.keys.recent_jobs(store.partition(q), q), 0, -1)
    ids_per_queue = await store.io.run(pipe)
    pipe = store.client.pipeline(transaction=False)
    asked: list[tuple[str, list[str]]] = []
    for q, ids in zip(queues, ids_per_queue, strict=True):
        if ids:
            names = [i.decode() for i in ids]
            p = store.partition(q)
            pipe.mget([store.keys.job(p, j) for j in names])
            asked.append((q, names))
    if not asked:
        return []
    out = []
    for (q, names), raws in zip(asked, await store.io.run(pipe), strict=True):
        for job_id, raw in zip(names, raws, strict=True):
            if raw:  # else expired (a finished job's record is kept JOBPULSE_DEDUP_WINDOW_S)
                view = JobView(job_id, decode(raw))
                if view.queue == q:  # else the job moved on: listed under its latest queue
                    out.append(view)
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
