"""Health rules: each alert fires on its condition and sets the status."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aggregator.settings import Settings
from api import health
from api.health import RULES, HealthInputs, QueueGauge, evaluate
from api.store import PartitionStatus, Worker

NOW_MS = 1_800_000_000_000
NOW = datetime.fromtimestamp(NOW_MS / 1000, UTC)


def _queue(name: str, pending: int) -> QueueGauge:
    return QueueGauge(name, pending)


def _inputs(**over: object) -> HealthInputs:
    base: dict[str, object] = dict(database_healthy=True, error_rate=0.0, avg_processing_ms=10.0,
                                   queues=[_queue("q", 0)], partitions=[PartitionStatus(0)], workers=[], now_ms=NOW_MS)
    base.update(over)
    return HealthInputs(**base)  # type: ignore[arg-type]


def _metrics(inputs: HealthInputs) -> list[tuple[str, str | None]]:
    return [(a.severity, a.metric) for a in evaluate(inputs, Settings(), NOW).alerts]


def test_quiet_system_is_healthy() -> None:
    health = evaluate(_inputs(), Settings(), NOW)
    assert (health.status, health.alerts) == ("healthy", [])


def test_each_rule() -> None:
    assert _metrics(_inputs(error_rate=0.15)) == [("warning", "error_rate")]
    assert _metrics(_inputs(error_rate=0.25)) == [("critical", "error_rate")]
    assert _metrics(_inputs(queues=[_queue("q", 1001)])) == [("warning", "pending_count")]
    assert _metrics(_inputs(avg_processing_ms=31_000)) == [("info", "avg_processing_time_ms")]
    lagging = PartitionStatus(0, watermark_ms=NOW_MS - 60_000, newest_entry_ms=NOW_MS)
    assert _metrics(_inputs(partitions=[lagging])) == [("critical", "aggregator_lag_seconds")]
    assert _metrics(_inputs(partitions=[PartitionStatus(0, lost=3)])) == [("critical", "lost_events")]
    gone = Worker("w", ["q"], 4, 0, 10.0, 0, NOW_MS - 31_000)
    alive = Worker("w", ["q"], 4, 0, 10.0, 0, NOW_MS - 5_000)
    assert _metrics(_inputs(queues=[_queue("q", 5)], workers=[gone])) == [("critical", "active_workers")]
    assert _metrics(_inputs(queues=[_queue("q", 5)], workers=[alive])) == []
    assert _metrics(_inputs(queues=[_queue("never-served", 5)], workers=[gone])) == []


def test_status_from_worst_alert_and_redis_down() -> None:
    assert evaluate(_inputs(error_rate=0.15), Settings(), NOW).status == "degraded"
    assert evaluate(_inputs(avg_processing_ms=31_000), Settings(), NOW).status == "healthy"
    down = evaluate(_inputs(database_healthy=False), Settings(), NOW)
    assert (down.status, down.database_healthy) == ("critical", False)


GONE = Worker("w", ["q"], 4, 0, 10.0, 0, NOW_MS - 31_000)
ALIVE = Worker("w", ["q"], 4, 0, 10.0, 0, NOW_MS - 5_000)


@pytest.mark.parametrize(("rule", "firing", "quiet"), [
    (health.error_rate_rule, {"error_rate": 0.25}, {"error_rate": 0.05}),
    (health.backlog_rule, {"queues": [_queue("q", 1001)]}, {"queues": [_queue("q", 1000)]}),
    (health.slow_processing_rule, {"avg_processing_ms": 31_000}, {"avg_processing_ms": 29_000}),
    (health.quiet_workers_rule, {"queues": [_queue("q", 5)], "workers": [GONE]},
     {"queues": [_queue("q", 5)], "workers": [ALIVE]}),
    (health.lag_rule, {"partitions": [PartitionStatus(0, watermark_ms=NOW_MS - 60_000, newest_entry_ms=NOW_MS)]},
     {"partitions": [PartitionStatus(0, watermark_ms=NOW_MS - 1_000, newest_entry_ms=NOW_MS)]}),
    (health.lost_events_rule, {"partitions": [PartitionStatus(0, lost=3)]}, {}),
    (health.dropped_events_rule, {"workers": [Worker("e", [], 0, 0, 10.0, 7, NOW_MS)]}, {}),
    (health.dead_letters_rule, {"partitions": [PartitionStatus(0, dead_letters=2)]}, {}),
])
def test_each_rule_alone(rule: health.Rule, firing: dict[str, object], quiet: dict[str, object]) -> None:
    assert rule in RULES
    assert len(rule(_inputs(**firing), Settings())) == 1
    assert rule(_inputs(**quiet), Settings()) == []


def test_an_unanswered_redis_is_described_as_given() -> None:
    down = health.unreachable(NOW, "Redis did not answer in time")
    assert (down.status, down.database_healthy, down.alerts[0].message) == (
        "critical", False, "Redis did not answer in time")
