"""Health rules (docs/definitions.md, "health"): pure functions from figures to alerts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aggregator.settings import Settings
from aggregator.store import PartitionStatus, QueueSnapshot, Worker
from api.models import SystemAlert, SystemHealth

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class HealthInputs:
    """Everything the rules look at."""

    database_healthy: bool
    error_rate: float
    avg_processing_ms: float
    queues: list[QueueSnapshot]
    partitions: list[PartitionStatus]
    workers: list[Worker]
    now_ms: int


def is_active(worker: Worker, now_ms: int) -> bool:
    """A worker is active while its last heartbeat is fresher than 3 intervals.

    An emitter that only publishes jobs heartbeats with concurrency 0 (to report
    what it dropped); it runs nothing, so it is not a worker."""
    return worker.concurrency > 0 and now_ms - worker.seen_ms < 3 * worker.interval_s * 1000


def evaluate(inputs: HealthInputs, settings: Settings, now: datetime) -> SystemHealth:
    """Apply every rule; status comes from the worst alert."""
    alerts: list[SystemAlert] = []

    def alert(
        severity: str,
        message: str,
        metric: str | None = None,
        value: float | None = None,
        threshold: float | None = None,
        queue: str | None = None,
    ) -> None:
        alerts.append(
            SystemAlert(
                severity=severity,
                message=message,
                queue=queue,
                metric=metric,
                value=value,
                threshold=threshold,
                timestamp=now,
            )
        )

    if not inputs.database_healthy:
        alert("critical", "Redis is unreachable: stats cannot be read", metric="database_healthy")
        return _health(False, False, False, False, alerts)

    rate = inputs.error_rate
    if rate > settings.error_rate_critical:
        alert("critical", f"Error rate {rate:.1%} in the window", "error_rate", rate, settings.error_rate_critical)
    elif rate > settings.error_rate_warning:
        alert("warning", f"Error rate {rate:.1%} in the window", "error_rate", rate, settings.error_rate_warning)

    backlog = False
    for q in inputs.queues:
        if q.pending > settings.backlog_warning:
            backlog = True
            alert(
                "warning",
                f"Queue backlog: {q.pending} pending jobs",
                "pending_count",
                q.pending,
                settings.backlog_warning,
                q.name,
            )

    slow = inputs.avg_processing_ms > settings.slow_processing_ms
    if slow:
        alert(
            "info",
            f"Mean processing time {inputs.avg_processing_ms:.0f} ms",
            "avg_processing_time_ms",
            inputs.avg_processing_ms,
            settings.slow_processing_ms,
        )

    active = [w for w in inputs.workers if is_active(w, inputs.now_ms)]
    served_now = {q for w in active for q in w.queues}
    served_ever = {q for w in inputs.workers if w.concurrency > 0 for q in w.queues}
    for q in inputs.queues:
        if q.pending and q.name in served_ever and q.name not in served_now:
            alert(
                "critical",
                f"{q.pending} pending jobs and every worker of this queue has gone quiet",
                "active_workers",
                0,
                1,
                q.name,
            )

    for part in inputs.partitions:
        if part.lag_s > settings.stale_after_s:
            alert(
                "critical",
                f"Aggregator is {part.lag_s:.0f} s behind on partition {part.partition}"
                + ("" if part.owner else " (no aggregator owns it)"),
                "aggregator_lag_seconds",
                part.lag_s,
                settings.stale_after_s,
            )
    lost = sum(p.lost for p in inputs.partitions)
    if lost:
        alert(
            "critical",
            f"{lost} events were trimmed from the streams before the aggregator read them",
            "lost_events",
            lost,
            0,
        )
    dropped = sum(w.dropped for w in inputs.workers)
    if dropped:
        alert("warning", f"Emitters dropped {dropped} events while Redis was unreachable", "dropped_events", dropped, 0)
    dead_letters = sum(p.dead_letters for p in inputs.partitions)
    if dead_letters:
        alert(
            "info",
            f"{dead_letters} invalid entries were moved to the dead-letter streams",
            "dead_letters",
            dead_letters,
            0,
        )
    return _health(True, rate > settings.error_rate_warning, backlog, slow, alerts)


def _health(db: bool, high_error: bool, backlog: bool, slow: bool, alerts: list[SystemAlert]) -> SystemHealth:
    worst = max((SEVERITY_RANK[a.severity] for a in alerts), default=0)
    status = {2: "critical", 1: "degraded"}.get(worst, "healthy")
    return SystemHealth(
        status=status,
        database_healthy=db,
        high_error_rate=high_error,
        queue_backlog=backlog,
        slow_processing=slow,
        alerts=alerts,
    )
