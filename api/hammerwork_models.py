"""Response models of hammerwork-web's queue, job, throughput and archive routes: its field names
(hammerwork_web::api::{queues, jobs, archive}), plus added fields; what jobpulse cannot know is null.
See docs/hammerwork.md."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

PAUSE_UNKNOWN = "Pause state is hammerwork's, not jobpulse's to know: always false (paused_* null)."


class PaginationMeta(BaseModel):
    """hammerwork-web's pagination of a list."""

    page: int = Field(ge=0, description="The page asked for (from 1).")
    limit: int = Field(ge=0, description="Items per page.")
    offset: int = Field(ge=0, description="Items skipped before this page.")
    total: int = Field(ge=0, description="Items matching, over all pages.")
    total_pages: int = Field(ge=0, description="ceil(total / limit).")
    has_next: bool = Field(description="page < total_pages.")
    has_prev: bool = Field(description="page > 1.")


class QueueInfo(BaseModel):
    """One queue, in hammerwork-web's words; the numbers are /api/stats/detailed's queue_stats'."""

    name: str = Field(description="Queue name.")
    pending_count: int = Field(ge=0, description="Jobs pending now (QueueStats.pending).")
    running_count: int = Field(ge=0, description="Jobs running now (QueueStats.running).")
    completed_count: int = Field(ge=0, description="`completed` events ever (QueueStats.completed_total).")
    failed_count: int = Field(ge=0, description="`failed` + `timed_out` events ever (QueueStats.failed_total).")
    dead_count: int = Field(ge=0, description="`dead` events ever (QueueStats.dead_total).")
    avg_processing_time_ms: float = Field(description="Mean processing_time_ms of outcomes in the rate window.")
    throughput_per_minute: float = Field(description="Outcomes per minute in the rate window.")
    error_rate: float = Field(description="Failures ÷ outcomes in the rate window (0 if none).")
    last_job_at: datetime | None = Field(description="Event time of the queue's latest event; null if none.")
    oldest_pending_job: datetime | None = Field(
        description="When the oldest pending job became pending; null if none is pending.")
    is_paused: bool = Field(description=PAUSE_UNKNOWN)
    paused_at: datetime | None = Field(description=PAUSE_UNKNOWN)
    paused_by: str | None = Field(description=PAUSE_UNKNOWN)


class QueueList(BaseModel):
    """A page of queues, sorted by name: under `items` (hammerwork-web's server) and `queues` (its dashboard)."""

    items: list[QueueInfo] = Field(description="The queues of this page.")
    queues: list[QueueInfo] = Field(description="The same list, under the name hammerwork-web's dashboard reads.")
    pagination: PaginationMeta = Field(description="Where this page is.")


class HourlyThroughput(BaseModel):
    """One hour of a queue (the same numbers as /api/stats/trends?queues=<name>)."""

    hour: datetime = Field(description="Hour start, UTC.")
    completed: int = Field(ge=0, description="`completed` events in the hour.")
    failed: int = Field(ge=0, description="Failures (failed + timed_out + dead) in the hour.")


class RecentError(BaseModel):
    """One of a queue's latest failures, as the recent-failures record holds it."""

    job_id: str = Field(description="The job that failed.")
    error_message: str = Field(description="The error message (at most 500 characters kept).")
    occurred_at: datetime = Field(description="Event time of the failure.")
    attempts: int | None = Field(description="The attempt the event gave (attempt or error.retry_attempt); "
                                             "null if it gave none.")
    event_type: str = Field(description="failed, timed_out or dead.")


class DetailedQueueStats(BaseModel):
    """One queue in detail."""

    queue_info: QueueInfo = Field(description="As in /api/queues.")
    priority_breakdown: dict[str, int] = Field(
        description="`enqueued` events ever per priority (background, low, normal, high, critical).")
    status_breakdown: dict[str, int] = Field(
        description="pending and running: jobs now; the others: events ever of that type (failed includes "
                    "timed_out, as everywhere in jobpulse).")
    hourly_throughput: list[HourlyThroughput] = Field(description="The last 24 hours, oldest first.")
    recent_errors: list[RecentError] = Field(
        description="The queue's latest failures, newest first (at most JOBPULSE_RECENT_FAILURES_PER_QUEUE).")


class JobInfo(BaseModel):
    """A job jobpulse still remembers, from its events; what no event says is null."""

    id: str = Field(description="Job id as the events gave it.")
    queue_name: str = Field(description="Queue of its latest event.")
    status: str = Field(description="From its latest event: Pending, Running, Completed, Failed, TimedOut, "
                                    "Retrying, Dead, Cancelled, Archived (restored: Pending).")
    priority: str | None = Field(description="Background, Low, Normal, High or Critical, as its enqueued event "
                                             "gave it (else its latest event); null if unknown.")
    attempts: int | None = Field(description="The largest attempt an event gave, else the starts jobpulse saw "
                                             "(0 for a job seen enqueued and never started); null if unknown.")
    max_attempts: int | None = Field(description="Not in the events: null.")
    payload: Any = Field(default=None, description="Never stored by jobpulse: null.")
    created_at: datetime | None = Field(description="Event time of its enqueued event; null if not seen.")
    scheduled_at: datetime | None = Field(description="Not in the events: null.")
    started_at: datetime | None = Field(description="Event time of its latest started event.")
    completed_at: datetime | None = Field(description="Event time of its completed event.")
    failed_at: datetime | None = Field(description="Event time of its latest failure.")
    error_message: str | None = Field(description="That failure's error message.")
    processing_time_ms: int | None = Field(description="processing_time_ms of its latest outcome that gave one.")
    cron_schedule: str | None = Field(description="Not in the events: null.")
    is_recurring: bool | None = Field(description="Not in the events: null.")
    trace_id: str | None = Field(description="Not in the events: null.")
    correlation_id: str | None = Field(description="Not in the events: null.")
    updated_at: datetime = Field(description="Event time of its latest event.")


class JobList(BaseModel):
    """A page of jobs: under `items` (hammerwork-web's server) and `jobs` (its dashboard)."""

    items: list[JobInfo] = Field(description="The jobs of this page.")
    jobs: list[JobInfo] = Field(description="The same list, under the name hammerwork-web's dashboard reads.")
    pagination: PaginationMeta = Field(description="Where this page is.")


class ThroughputPoint(BaseModel):
    """One point of the throughput chart."""

    timestamp: datetime = Field(description="Bucket start, UTC.")
    value: float = Field(description="Outcomes per minute in the bucket (HourlyTrend.throughput).")


class Throughput(BaseModel):
    """The throughput chart of a period."""

    period: str = Field(description="1h, 24h or 7d.")
    granularity: str = Field(description="Bucket size: minute for 1h, hour otherwise.")
    datapoints: list[ThroughputPoint] = Field(description="One per bucket, oldest first.")


class ArchivalStats(BaseModel):
    """hammerwork's ArchivalStats, from the `archived` and `restored` events jobpulse received."""

    jobs_archived: int = Field(ge=0, description="`archived` events ever.")
    jobs_purged: int | None = Field(description="Purges send no event: null.")
    bytes_archived: int | None = Field(description="Not in the events: null.")
    bytes_purged: int | None = Field(description="Not in the events: null.")
    compression_ratio: float | None = Field(description="Not in the events: null.")
    operation_duration: Any = Field(default=None, description="Operations send no event: null.")
    last_run_at: datetime | None = Field(description="Event time of the latest `archived` event; null if none.")
    jobs_restored: int = Field(ge=0, description="`restored` events ever.")
    last_restored_at: datetime | None = Field(description="Event time of the latest `restored` event.")


class ArchiveStats(BaseModel):
    """Archive statistics, overall and per queue."""

    stats: ArchivalStats = Field(description="Over all queues (or the one asked for).")
    by_queue: dict[str, ArchivalStats] | None = Field(
        description="Per queue that ever had an archived or restored job; null when one queue is asked for.")
    recent_operations: list[Any] | None = Field(description="Archive operations send no event: null.")


class ArchivedJob(BaseModel):
    """A job whose latest event is `archived`, among the recent jobs jobpulse remembers."""

    id: str = Field(description="Job id.")
    queue_name: str = Field(description="Its queue.")
    status: str = Field(description="Archived.")
    created_at: datetime | None = Field(description="Event time of its enqueued event; null if not seen.")
    archived_at: datetime = Field(description="Event time of its `archived` event.")
    archival_reason: str | None = Field(description="Not in the events: null.")
    original_payload_size: int | None = Field(description="Not in the events: null.")
    payload_compressed: bool | None = Field(description="Not in the events: null.")
    archived_by: str | None = Field(description="Not in the events: null.")


class ArchivedJobList(BaseModel):
    """A page of archived jobs."""

    items: list[ArchivedJob] = Field(description="The jobs of this page, latest archived first.")
    pagination: PaginationMeta = Field(description="Where this page is.")


class QueueUpdateStats(BaseModel):
    """A queue in a WebSocket `queue_update` message (hammerwork-web's websocket QueueStats)."""

    pending_count: int = Field(ge=0, description="As QueueInfo.")
    running_count: int = Field(ge=0, description="As QueueInfo.")
    completed_count: int = Field(ge=0, description="As QueueInfo.")
    failed_count: int = Field(ge=0, description="As QueueInfo.")
    dead_count: int = Field(ge=0, description="As QueueInfo.")
    throughput_per_minute: float = Field(description="As QueueInfo.")
    avg_processing_time_ms: float = Field(description="As QueueInfo.")
    error_rate: float = Field(description="As QueueInfo.")
    updated_at: datetime = Field(description="When this message was made.")
