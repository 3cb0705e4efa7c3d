"""hammerwork-web's queue and job views built from jobpulse's reads: pagination, QueueInfo from the
same QueueStats /api/stats/detailed serves, JobInfo from the job read model, and the jobs filters."""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from datetime import datetime

from api.hammerwork_models import JobInfo, PaginationMeta, QueueInfo
from api.jobs_store import JobView
from api.limits import check_reads
from api.models import QueueStats
from api.query import BadParameter, parse_time
from api.report import Reporter, utc
from api.stats import PRIORITIES
from api.store import QueueSnapshot

DEFAULT_LIMIT, MAX_LIMIT = 50, 1000  # hammerwork-web's get_limit()

# latest event type -> hammerwork's JobStatus name
STATUS_OF = {
    "enqueued": "Pending", "restored": "Pending", "started": "Running", "completed": "Completed",
    "failed": "Failed", "timed_out": "TimedOut", "retried": "Retrying", "dead": "Dead", "cancelled": "Cancelled",
    "archived": "Archived",
}
FINISHED = "Finished"  # a finished job whose record predates the event type in it: which outcome is unknown
# a status filter -> the statuses it selects (failed: every failure, as failed_count counts them)
STATUS_FILTERS = {s.lower(): {s} for s in {*STATUS_OF.values(), FINISHED}} | {
    "failed": {"Failed", "TimedOut", "Dead"}, "timed_out": {"TimedOut"}}
SORTS = ("created_at", "updated_at", "priority")


def page_of(total: int, page: int, limit: int, offset: int | None) -> tuple[PaginationMeta, int]:
    """hammerwork-web's PaginationMeta of a list of ``total`` items, and the index of the page's first."""
    start = offset if offset is not None else (page - 1) * limit
    pages = math.ceil(total / limit)
    meta = PaginationMeta(page=page, limit=limit, offset=start, total=total, total_pages=pages,
                          has_next=page < pages, has_prev=page > 1)
    return meta, start


def _at(ms: int | None) -> datetime | None:
    return None if ms is None else utc(ms / 1000)


def queue_info(stats: QueueStats, snap: QueueSnapshot) -> QueueInfo:
    """A queue's QueueInfo: every number is the QueueStats'."""
    return QueueInfo(
        name=stats.name,
        pending_count=stats.pending,
        running_count=stats.running,
        completed_count=stats.completed_total,
        failed_count=stats.failed_total,
        dead_count=stats.dead_total,
        avg_processing_time_ms=stats.avg_processing_time_ms,
        throughput_per_minute=stats.throughput_per_minute,
        error_rate=stats.error_rate,
        last_job_at=_at(snap.last_ms),
        oldest_pending_job=_at(snap.oldest_pending_ms) if snap.pending else None,
        is_paused=False,
        paused_at=None,
        paused_by=None,
    )


async def queue_infos(reporter: Reporter, names: list[str]) -> list[tuple[QueueInfo, QueueSnapshot]]:
    """QueueInfo (and snapshot) of each named queue, over the rate window as /api/stats/detailed without a
    range."""
    window = reporter.window(None)
    check_reads(len(names) * (3 + window.buckets.reads), "limit", "ask for fewer queues per page")
    snaps, first_ms = await asyncio.gather(reporter.store.snapshots(names, window.buckets),
                                           reporter.store.first_data_ms())
    window = window.clamped(first_ms)
    return [(queue_info(reporter.queue_stats(s, window), s), s) for s in snaps]


def status_of(view: JobView) -> str:
    """hammerwork's status name of a job."""
    return STATUS_OF[view.event_type] if view.event_type else FINISHED


def job_info(view: JobView) -> JobInfo:
    """A job's JobInfo; what no event told is null."""
    r = view.record
    priority, attempt, starts = r.priority, r.attempt, r.starts
    # the starts counted are all of them only if jobpulse saw the job from its enqueue on
    known = attempt is not None or starts or r.created_ms is not None
    attempts = max(attempt or 0, starts) if known else None
    return JobInfo(
        id=view.job_id,
        queue_name=view.queue,
        status=status_of(view),
        priority=priority.capitalize() if priority else None,
        attempts=attempts,
        max_attempts=None,
        payload=None,
        created_at=_at(r.created_ms),
        scheduled_at=None,
        started_at=_at(r.started_ms),
        completed_at=_at(r.completed_ms),
        failed_at=_at(r.failed_ms),
        error_message=r.error,
        processing_time_ms=r.processing_ms,
        cron_schedule=None,
        is_recurring=None,
        trace_id=None,
        correlation_id=None,
        updated_at=_at(view.ts_ms),
    )


@dataclass(frozen=True)
class JobFilter:
    """The checked filters and order of GET /api/jobs."""

    statuses: set[str] | None
    priority: str | None
    created_after: datetime | None
    created_before: datetime | None
    search: str | None
    sort_by: str
    descending: bool

    @classmethod
    def parse(cls, status: str | None, priority: str | None, created_after: str | None, created_before: str | None,
              search: str | None, sort_by: str | None, sort_order: str | None) -> JobFilter:
        """Check the raw parameters (422 naming the one that is wrong)."""
        statuses = None
        if status:
            statuses = STATUS_FILTERS.get(status.strip().lower())
            if statuses is None:
                raise BadParameter("status", f"{status!r} is not one of {', '.join(sorted(STATUS_FILTERS))}")
        if priority and priority.strip().lower() not in PRIORITIES:
            raise BadParameter("priority", f"{priority!r} is not one of {', '.join(PRIORITIES)}")
        sort = (sort_by or "created_at").strip().lower()
        if sort not in SORTS:
            raise BadParameter("sort_by", f"{sort_by!r} is not one of {', '.join(SORTS)} (jobpulse does not know "
                                          "scheduled_at)")
        order = (sort_order or "desc").strip().lower()
        if order not in ("asc", "desc"):
            raise BadParameter("sort_order", f"{sort_order!r} is not asc or desc")
        return cls(
            statuses=statuses,
            priority=priority.strip().capitalize() if priority else None,
            created_after=parse_time("created_after", created_after) if created_after else None,
            created_before=parse_time("created_before", created_before) if created_before else None,
            search=search or None,
            sort_by=sort,
            descending=order == "desc",
        )

    def keep(self, job: JobInfo) -> bool:
        """Whether a job passes the filters."""
        if self.statuses is not None and job.status not in self.statuses:
            return False
        if self.priority is not None and job.priority != self.priority:
            return False
        if self.created_after is not None and (job.created_at is None or job.created_at < self.created_after):
            return False
        if self.created_before is not None and (job.created_at is None or job.created_at >= self.created_before):
            return False
        return self.search is None or self.search in job.id or self.search in (job.error_message or "")

    def order(self, jobs: list[JobInfo]) -> list[JobInfo]:
        """Sorted as asked; unknown creation times sort as the oldest; ties by id."""
        rank = {p.capitalize(): i for i, p in enumerate(PRIORITIES)}

        def key(j: JobInfo) -> tuple[float, str]:
            if self.sort_by == "priority":
                return rank.get(j.priority or "", -1), j.id
            moment = j.created_at if self.sort_by == "created_at" else j.updated_at
            return (moment.timestamp() if moment else -math.inf), j.id

        return sorted(jobs, key=key, reverse=self.descending)
