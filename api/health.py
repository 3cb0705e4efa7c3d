"""Health rules (docs/definitions.md, "health"): small pure functions from figures to alerts, applied in turn."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aggregator.settings import Settings
from api.construct import built
from api.models import SystemAlert, SystemHealth
from api.store import PartitionStatus, Worker

SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}


@dataclass
class QueueGauge:
    """A queue the rules look at by name, with its pending jobs now."""

    name: str
    pending: int


@dataclass
class HealthInputs:
    """Everything the rules look at.

    ``queues`` holds only the queues a per-queue rule can fire on: those over the backlog threshold and
    those with pending jobs served by workers that have all gone quiet (so the overview need not read
    every queue)."""

    database_healthy: bool
    error_rate: float
    avg_processing_ms: float
    queues: list[QueueGauge]
    partitions: list[PartitionStatus]
    workers: list[Worker]
    now_ms: int


@dataclass(frozen=True)
class Finding:
    """What a rule found: becomes a SystemAlert."""

    severity: str
    message: str
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    queue: str | None = None


Rule = Callable[[HealthInputs, Settings], list[Finding]]


def is_active(worker: Worker, now_ms: int) -> bool:
    """A worker is active while its last heartbeat is fresher than 3 intervals.

    An emitter that only publishes jobs heartbeats with concurrency 0 (to report
    what it dropped); it runs nothing, so it is not a worker."""
    return worker.concurrency > 0 and now_ms - worker.seen_ms < 3 * worker.interval_s * 1000


def quiet_queues(workers: list[Worker], now_ms: int) -> set[str]:
    """Queues some worker has served whose serving workers are all quiet now."""
    served_now = {q for w in workers if is_active(w, now_ms) for q in w.queues}
    served_ever = {q for w in workers if w.concurrency > 0 for q in w.queues}
    return served_ever - served_now


def error_rate_rule(inputs: HealthInputs, settings: Settings) -> list[Finding]:
    """Error rate in the window above the critical, else the warning threshold."""
    rate = inputs.error_rate
    for severity, threshold in (("critical", settings.error_rate_critical), ("warning", settings.error_rate_warning)):
        if rate > threshold:
            return [Finding(severity, f"Error rate {rate:.1%} in the window", "error_rate", rate, threshold)]
    return []


def backlog_rule(inputs: HealthInputs, settings: Settings) -> list[Finding]:
    """A queue with more pending jobs than the backlog threshold."""
    return [Finding("warning", f"Queue backlog: {q.pending} pending jobs", "pending_count", q.pending,
                    settings.backlog_warning, q.name)
            for q in inputs.queues if q.pending > settings.backlog_warning]


def slow_processing_rule(inputs: HealthInputs, settings: Settings) -> list[Finding]:
    """Mean processing time in the window above the slow threshold."""
    ms = inputs.avg_processing_ms
    if ms > settings.slow_processing_ms:
        return [Finding("info", f"Mean processing time {ms:.0f} ms", "avg_processing_time_ms", ms,
                        settings.slow_processing_ms)]
    return []


def quiet_workers_rule(inputs: HealthInputs, settings: Settings) -> list[Finding]:
    """A queue with pending jobs whose heartbeating workers have all gone quiet (never-served queues are exempt)."""
    quiet = quiet_queues(inputs.workers, inputs.now_ms)
    return [Finding("critical", f"{q.pending} pending jobs and every worker of this queue has gone quiet",
                    "active_workers", 0, 1, q.name)
            for q in inputs.queues if q.pending and q.name in quiet]


def lag_rule(inputs: HealthInputs, settings: Settings) -> list[Finding]:
    """A partition whose aggregator is further behind than ``stale_after_s``."""
    return [Finding("critical", f"Aggregator is {part.lag_s:.0f} s behind on partition {part.partition}"
                    + ("" if part.owner else " (no aggregator owns it)"),
                    "aggregator_lag_seconds", part.lag_s, settings.stale_after_s)
            for part in inputs.partitions if part.lag_s > settings.stale_after_s]


def lost_events_rule(inputs: HealthInputs, settings: Settings) -> list[Finding]:
    """Events trimmed from a stream before the aggregator read them."""
    lost = sum(p.lost for p in inputs.partitions)
    if lost:
        return [Finding("critical", f"{lost} events were trimmed from the streams before the aggregator read them",
                        "lost_events", lost, 0)]
    return []


def dropped_events_rule(inputs: HealthInputs, settings: Settings) -> list[Finding]:
    """Events emitters dropped while Redis was unreachable."""
    dropped = sum(w.dropped for w in inputs.workers)
    if dropped:
        return [Finding("warning", f"Emitters dropped {dropped} events while Redis was unreachable",
                        "dropped_events", dropped, 0)]
    return []


def dead_letters_rule(inputs: HealthInputs, settings: Settings) -> list[Finding]:
    """Invalid entries moved to the dead-letter streams."""
    n = sum(p.dead_letters for p in inputs.partitions)
    if n:
        return [Finding("info", f"{n} invalid entries were moved to the dead-letter streams", "dead_letters", n, 0)]
    return []


RULES: tuple[Rule, ...] = (error_rate_rule, backlog_rule, slow_processing_rule, quiet_workers_rule, lag_rule,
                           lost_events_rule, dropped_events_rule, dead_letters_rule)


def evaluate(inputs: HealthInputs, settings: Settings, now: datetime) -> SystemHealth:
    """Apply every rule; status comes from the worst alert."""
    if not inputs.database_healthy:
        return unreachable(now, "Redis is unreachable: stats cannot be read")
    findings = [f for rule in RULES for f in rule(inputs, settings)]
    alerts = [_alert(f, now) for f in findings]
    metrics = {f.metric for f in findings}
    return _health(True, "error_rate" in metrics, "pending_count" in metrics, "avg_processing_time_ms" in metrics,
                   alerts)


def unreachable(now: datetime, message: str) -> SystemHealth:
    """Health when Redis could not be read (down, or too slow to answer)."""
    alert = _alert(Finding("critical", message, "database_healthy"), now)
    return _health(False, False, False, False, [alert])


def _alert(f: Finding, now: datetime) -> SystemAlert:
    return SystemAlert(severity=f.severity, message=f.message, queue=f.queue, metric=f.metric, value=f.value,
                       threshold=f.threshold, timestamp=now)


def _health(db: bool, high_error: bool, backlog: bool, slow: bool, alerts: list[SystemAlert]) -> SystemHealth:
    worst = max((SEVERITY_RANK[a.severity] for a in alerts), default=0)
    status = {2: "critical", 1: "degraded"}.get(worst, "healthy")
    return built(
        SystemHealth,
        status=status,
        database_healthy=db,
        high_error_rate=high_error,
        queue_backlog=backlog,
        slow_processing=slow,
        alerts=alerts,
    )
