"""Response models: hammerwork_web::api::stats field for field, plus added
fields (never renamed). Each field says what it means; see docs/definitions.md."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, TypeVar

from pydantic import BaseModel, Field

T = TypeVar("T")


class ApiResponse(BaseModel, Generic[T]):
    """hammerwork-web's envelope around every body."""

    success: bool = Field(description="False when the request failed; `error` says why.")
    data: T | None = Field(description="The result, null on error.")
    error: str | None = Field(description="What went wrong, naming the parameter for bad input.")
    timestamp: datetime = Field(description="When the response was made (UTC).")


class SystemAlert(BaseModel):
    """One health finding."""

    severity: str = Field(description="info, warning or critical.")
    message: str = Field(description="What is wrong, for a person.")
    queue: str | None = Field(description="The queue concerned, if any.")
    metric: str | None = Field(description="The metric that crossed its threshold.")
    value: float | None = Field(description="The metric's current value.")
    threshold: float | None = Field(description="The threshold it crossed.")
    timestamp: datetime = Field(description="When the alert was evaluated (UTC).")


class SystemHealth(BaseModel):
    """Health status from the configured rules."""

    status: str = Field(description="healthy, degraded or critical, from the worst alert.")
    database_healthy: bool = Field(description="Redis answered this request.")
    high_error_rate: bool = Field(description="Error rate in the window above the warning threshold.")
    queue_backlog: bool = Field(description="Some queue has more pending jobs than the backlog threshold.")
    slow_processing: bool = Field(description="Mean processing time above the slow threshold.")
    alerts: list[SystemAlert] = Field(description="Every rule that fired.")


class Latency(BaseModel):
    """Percentiles from the latency sketch (2 % relative error); null when no data."""

    p50: float | None = Field(description="Median, ms.")
    p95: float | None = Field(description="95th percentile, ms.")
    p99: float | None = Field(description="99th percentile, ms.")


class SystemOverview(BaseModel):
    """The whole system at a glance."""

    total_queues: int = Field(ge=0, description="Queues ever seen (with queues=: those of them ever seen).")
    total_jobs: int = Field(ge=0, description="`enqueued` events ever (deduplicated).")
    pending_jobs: int = Field(ge=0, description="Jobs pending now.")
    running_jobs: int = Field(ge=0, description="Jobs running now.")
    completed_jobs: int = Field(ge=0, description="`completed` events ever.")
    failed_jobs: int = Field(ge=0, description="`failed` + `timed_out` events ever.")
    dead_jobs: int = Field(ge=0, description="`dead` events ever.")
    overall_throughput: float = Field(description="Outcomes per minute in the rate window.")
    overall_error_rate: float = Field(description="Failures ÷ outcomes in the rate window (0 if none).")
    avg_processing_time_ms: float = Field(description="Mean processing_time_ms of outcomes in the window.")
    system_health: SystemHealth = Field(description="Health rules applied to the same figures.")
    uptime_seconds: int = Field(ge=0, description="Since the API process started.")
    last_updated: datetime = Field(description="When the aggregator last applied a batch (now if never).")
    # added fields
    enqueued_jobs: int = Field(ge=0, description="Same as total_jobs.")
    retried_jobs: int = Field(ge=0, description="`retried` events ever.")
    timed_out_jobs: int = Field(ge=0, description="`timed_out` events ever (included in failed_jobs).")
    cancelled_jobs: int = Field(ge=0, description="`cancelled` events ever.")
    oldest_pending_age_seconds: int | None = Field(description="Age of the oldest pending job; null if none.")
    processing_time_ms: Latency = Field(description="Processing time percentiles in the window.")
    wait_time_ms: Latency = Field(description="Enqueue-to-start wait percentiles in the window.")
    window_seconds: float = Field(
        description="Span the windowed rates cover: the rate window (default 5 min, the current minute "
                    "counted up to now), starting no earlier than the first data the store holds; "
                    "with start/end, the range up to now."
    )
    aggregator_lag_seconds: float = Field(
        description="Newest stream entry time − newest applied entry time (max over partitions)."
    )
    lost_events: int = Field(ge=0, description="Entries trimmed from a stream before the aggregator read them.")
    dead_letters: int = Field(ge=0, description="Invalid entries moved to the dead-letter streams.")
    dropped_by_emitters: int = Field(ge=0, description="Events emitters had to drop (buffer full), as last reported.")
    active_workers: int = Field(ge=0, description="Workers heartbeating within 3 intervals.")
    dead_letter_stream_length: int = Field(
        ge=0, description="Entries kept in the dead-letter streams now (capped per partition at DEADLETTER_MAXLEN)."
    )
    # the names hammerwork-web's dashboard reads (dashboard.js), same values
    error_rate: float = Field(description="Same as overall_error_rate.")
    throughput: float = Field(description="Same as overall_throughput (per minute).")
    avg_processing_time: float = Field(description="Same as avg_processing_time_ms.")


class QueueStats(BaseModel):
    """One queue."""

    name: str = Field(description="Queue name.")
    pending: int = Field(ge=0, description="Jobs pending now.")
    running: int = Field(ge=0, description="Jobs running now.")
    completed_total: int = Field(ge=0, description="`completed` events ever.")
    failed_total: int = Field(ge=0, description="failed + timed_out events ever.")
    dead_total: int = Field(ge=0, description="`dead` events ever.")
    throughput_per_minute: float = Field(description="Outcomes per minute in the window.")
    avg_processing_time_ms: float = Field(description="Mean processing_time_ms of outcomes in the window.")
    error_rate: float = Field(description="Failures ÷ outcomes in the window (0 if none).")
    oldest_pending_age_seconds: int | None = Field(ge=0, description="Age of the oldest pending job; null if none.")
    priority_distribution: dict[str, float] = Field(description="% of enqueued jobs per priority, lifetime.")
    # added fields
    enqueued_total: int = Field(ge=0, description="`enqueued` events ever.")
    retried_total: int = Field(ge=0, description="`retried` events ever.")
    timed_out_total: int = Field(ge=0, description="`timed_out` events ever (included in failed_total).")
    cancelled_total: int = Field(ge=0, description="`cancelled` events ever.")
    processing_time_ms: Latency = Field(description="Processing time percentiles in the window.")
    wait_time_ms: Latency = Field(description="Enqueue-to-start wait percentiles in the window.")
    job_types: dict[str, dict[str, int]] = Field(
        description="Lifetime event counts per job_type (task name): {job_type: {event_type: n}}."
    )


class HourlyTrend(BaseModel):
    """One time bucket (its size is the requested granularity)."""

    hour: datetime = Field(description="Bucket start, UTC-aligned (weeks start Monday).")
    completed: int = Field(ge=0, description="`completed` events in the bucket.")
    failed: int = Field(ge=0, description="Failures (failed + timed_out + dead) in the bucket.")
    throughput: float = Field(
        description="Outcomes in the bucket ÷ minutes in the bucket (for the bucket holding now: its "
                    "elapsed minutes, from the first data on)."
    )
    avg_processing_time_ms: float = Field(description="Mean processing_time_ms of outcomes in the bucket.")
    error_rate: float = Field(description="Failures ÷ outcomes in the bucket (0 if none).")
    # added fields
    enqueued: int = Field(ge=0, description="`enqueued` events in the bucket.")
    processing_time_ms: Latency = Field(description="Processing time percentiles in the bucket.")


class ErrorPattern(BaseModel):
    """Failures sharing one normalised message."""

    error_type: str = Field(description="The error_type the events gave most often (ties: first by name), "
                            "else one classified from the message.")
    count: int = Field(ge=0, description="Failures with this signature in the range.")
    percentage: float = Field(description="% of failures carrying an error in the range.")
    sample_message: str = Field(description="One message with this signature.")
    first_seen: datetime = Field(description="Earliest event time of the failures counted (with queues=, theirs).")
    last_seen: datetime = Field(description="Latest event time of the failures counted (with queues=, theirs).")
    affected_queues: list[str] = Field(description="Queues it occurred in, sorted.")


class PerformanceMetrics(BaseModel):
    """How the system itself performs."""

    database_response_time_ms: float = Field(description="Measured Redis round trip of this request.")
    average_queue_depth: float = Field(description="Mean pending jobs per queue.")
    jobs_per_second: float = Field(description="Outcomes per second in the window.")
    memory_usage_mb: float | None = Field(description="RSS of the live aggregators; null if none reports.")
    cpu_usage_percent: float | None = Field(description="CPU of the live aggregators; null if none reports.")
    active_workers: int = Field(ge=0, description="Workers heartbeating within 3 intervals.")
    worker_utilization: float = Field(description="Σ busy ÷ Σ concurrency of active workers.")


class DetailedStats(BaseModel):
    """Overview, queues, trends, errors and performance in one response."""

    overview: SystemOverview = Field(description="As /api/stats/overview, rates over the range if one is given.")
    queue_stats: list[QueueStats] = Field(description="One entry per queue asked for.")
    hourly_trends: list[HourlyTrend] = Field(description="One entry per bucket at the requested granularity.")
    error_patterns: list[ErrorPattern] = Field(description="Most frequent first, at most 100, hour resolution.")
    performance_metrics: PerformanceMetrics = Field(description="How jobpulse and the workers perform.")
