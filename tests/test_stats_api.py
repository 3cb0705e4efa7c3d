"""Every field of the stats API against values computed here from the same scripted workload."""

from __future__ import annotations

import random
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from aggregator.connection import RedisTarget
from aggregator.consumer import Aggregator
from aggregator.keys import Keys
from aggregator.settings import Settings
from api.main import create_app
from api.query import align
from tests.workload import event, publish

QUEUES = ["alpha", "beta", "gamma"]
OUTCOMES = {"completed", "failed", "timed_out", "dead"}
FAILURES = {"failed", "timed_out", "dead"}
# (error_type as served, the group a message belongs to)
GROUPS = {"upstream": "UpstreamTimeout", "declined": "PaymentError", "gave up": "Error"}


@dataclass
class Scenario:
    """The workload, its time anchors and the unique events sent."""

    now_s: int
    start_s: int
    end_s: int
    events: list[dict[str, Any]]


def _job(rng: random.Random, job: str, q: str, t: int, kind: int) -> list[dict[str, Any]]:
    """One job's events; ``kind`` picks its fate."""
    evs = [event(job, q, "enqueued", t, priority=rng.choice(["low", "normal", "high", "critical"]))]
    if kind == 8:
        return [*evs, event(job, q, "cancelled", t + 500)]
    evs.append(event(job, q, "started", t + 1000, wait_time_ms=rng.randint(10, 900), attempt=1))
    took = rng.randint(5, 3000)
    if kind <= 5:
        return [*evs, event(job, q, "completed", t + 1000 + took, processing_time_ms=took)]
    if kind == 6:
        return [*evs,
                event(job, q, "failed", t + 2000, processing_time_ms=took,
                      error={"message": f"upstream timeout after {took} ms", "error_type": "UpstreamTimeout"}),
                event(job, q, "retried", t + 2001),
                event(job, q, "started", t + 3000, wait_time_ms=999, attempt=2),
                event(job, q, "completed", t + 3000 + took, processing_time_ms=took)]
    if kind == 7:
        return [*evs, event(job, q, "timed_out", t + 2000, processing_time_ms=took),
                event(job, q, "dead", t + 2001, error={"message": "gave up after 2 attempts"})]
    return [*evs,
            event(job, q, "failed", t + 2000, processing_time_ms=took,
                  error={"message": f"card {rng.randint(1000, 9999)} declined", "error_type": "PaymentError"}),
            event(job, q, "dead", t + 2001, error={"message": "gave up after 1 attempts"})]


def build() -> Scenario:
    """3 days of hourly traffic ending an hour ago, a recent burst, open jobs, duplicates."""
    rng = random.Random(11)
    now_s = int(time.time())
    end_s = align(now_s, 3600) - 3600
    start_s = end_s - 72 * 3600
    events: list[dict[str, Any]] = []
    n = 0
    for hour in range(72):
        for q in QUEUES:
            for _ in range(4):
                t = (start_s + hour * 3600 + rng.randint(0, 3000)) * 1000
                events += _job(rng, f"j{n}", q, t, n % 10)
                n += 1
    recent_ms = (now_s - 110) * 1000
    for i in range(10):
        events += _job(rng, f"recent{i}", "alpha", recent_ms + i * 100, i % 6)
    events += [event(f"open-p{i}", "beta", "enqueued", (end_s + 600 + i) * 1000) for i in range(3)]
    for i in range(2):
        t = (end_s + 700) * 1000
        events += [event(f"open-r{i}", "gamma", "enqueued", t), event(f"open-r{i}", "gamma", "started", t + 5)]
    return Scenario(now_s, start_s, end_s, events)


@pytest.fixture(scope="module")
def scenario(redis_url: str) -> Iterator[tuple[Scenario, TestClient]]:
    settings = Settings(redis_url=redis_url, key_prefix=f"stats{int(time.time() * 1000)}", partitions=4)
    client = redis.Redis.from_url(redis_url)
    sc = build()
    client.hset(Keys(settings.key_prefix).meta, "partitions", settings.partitions)
    dups = random.Random(2).sample(sc.events, 200)
    publish(client, Keys(settings.key_prefix), settings.partitions, sc.events + [dict(d) for d in dups])
    Aggregator(settings, client).run(drain=True)
    # the API's clock is the scenario's "now", so every expected figure is exact whenever the test runs
    with TestClient(create_app(settings, RedisTarget(redis_url), clock=lambda: float(sc.now_s))) as tc:
        yield sc, tc
    for pattern in (f"{settings.key_prefix}:*", f"{{{settings.key_prefix}:*"):
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)


def _in(evs: list[dict[str, Any]], lo_s: float, hi_s: float) -> list[dict[str, Any]]:
    return [e for e in evs if lo_s * 1000 <= e["_ts_ms"] < hi_s * 1000]


def _pct(values: list[int], q: float) -> float:
    s = sorted(values)
    return s[int(q * (len(s) - 1))]


def _close(got: float | None, exact: float) -> None:
    assert got is not None and abs(got - exact) <= 0.02 * exact + 1e-9, (got, exact)


def _tally(evs: list[dict[str, Any]]) -> dict[str, Any]:
    kinds = [e["event_type"] for e in evs]
    outcomes = [e for e in evs if e["event_type"] in OUTCOMES]
    timed = [e["processing_time_ms"] for e in outcomes if e.get("processing_time_ms") is not None]
    return {
        "completed": kinds.count("completed"),
        "failures": sum(k in FAILURES for k in kinds),
        "outcomes": len(outcomes),
        "enqueued": kinds.count("enqueued"),
        "avg": sum(timed) / len(timed) if timed else 0.0,
        "rate": sum(k in FAILURES for k in kinds) / len(outcomes) if outcomes else 0.0,
        "times": timed,
    }


def test_overview_every_field(scenario: tuple[Scenario, TestClient]) -> None:
    sc, api = scenario
    d = api.get("/api/stats/overview").json()["data"]
    evs = sc.events
    kinds = [e["event_type"] for e in evs]
    assert d["total_queues"] == 3
    assert d["total_jobs"] == d["enqueued_jobs"] == kinds.count("enqueued")
    assert d["completed_jobs"] == kinds.count("completed")
    assert d["failed_jobs"] == kinds.count("failed") + kinds.count("timed_out")
    assert d["dead_jobs"] == kinds.count("dead")
    assert d["retried_jobs"] == kinds.count("retried") and d["cancelled_jobs"] == kinds.count("cancelled")
    assert d["timed_out_jobs"] == kinds.count("timed_out")
    assert (d["pending_jobs"], d["running_jobs"]) == (3, 2)
    window_start = align(sc.now_s, 60) - 240
    assert d["window_seconds"] == sc.now_s - window_start
    recent = _tally(_in(evs, window_start, sc.now_s + 1))
    assert recent["outcomes"] > 0
    assert d["overall_throughput"] == pytest.approx(recent["outcomes"] * 60 / d["window_seconds"])
    assert d["overall_error_rate"] == pytest.approx(recent["rate"])
    assert d["avg_processing_time_ms"] == pytest.approx(recent["avg"])
    for q in (0.5, 0.95, 0.99):
        _close(d["processing_time_ms"][f"p{round(q * 100)}"], _pct(recent["times"], q))
    oldest_s = (sc.end_s + 600)
    assert d["oldest_pending_age_seconds"] == sc.now_s - oldest_s
    assert d["system_health"] == {"status": "healthy", "database_healthy": True, "high_error_rate": False,
                                  "queue_backlog": False, "slow_processing": False, "alerts": []}
    assert (d["lost_events"], d["dead_letters"], d["dropped_by_emitters"]) == (0, 0, 0)


def test_detailed_queue_stats_errors_and_performance(scenario: tuple[Scenario, TestClient]) -> None:
    sc, api = scenario
    params = {"start": datetime.fromtimestamp(sc.start_s, UTC).isoformat(),
              "end": datetime.fromtimestamp(sc.end_s, UTC).isoformat()}
    d = api.get("/api/stats/detailed", params=params).json()["data"]
    span_s = sc.end_s - sc.start_s
    by_name = {qs["name"]: qs for qs in d["queue_stats"]}
    assert sorted(by_name) == QUEUES
    for q in QUEUES:
        mine = [e for e in sc.events if e["queue_name"] == q]
        ranged = _tally(_in(mine, sc.start_s, sc.end_s))
        qs = by_name[q]
        kinds = [e["event_type"] for e in mine]
        assert qs["completed_total"] == kinds.count("completed")
        assert qs["failed_total"] == kinds.count("failed") + kinds.count("timed_out")
        assert qs["dead_total"] == kinds.count("dead") and qs["enqueued_total"] == kinds.count("enqueued")
        assert qs["throughput_per_minute"] == pytest.approx(ranged["outcomes"] * 60 / span_s)
        assert qs["error_rate"] == pytest.approx(ranged["rate"])
        assert qs["avg_processing_time_ms"] == pytest.approx(ranged["avg"])
        _close(qs["processing_time_ms"]["p95"], _pct(ranged["times"], 0.95))
        prios: dict[str, int] = defaultdict(int)
        for e in mine:
            if e["event_type"] == "enqueued":
                prios[e.get("priority", "normal")] += 1
        total = sum(prios.values())
        assert qs["priority_distribution"] == pytest.approx({p: 100 * n / total for p, n in prios.items()})
        assert sum(qs["priority_distribution"].values()) == pytest.approx(100)
    assert by_name["beta"]["pending"] == 3 and by_name["gamma"]["running"] == 2
    assert by_name["alpha"]["oldest_pending_age_seconds"] is None

    errors = [e for e in _in(sc.events, sc.start_s, sc.end_s) if e.get("error")]
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in errors:
        groups[next(g for g in GROUPS if g in e["error"]["message"])].append(e)
    patterns = {p["error_type"]: p for p in d["error_patterns"]}
    assert len(d["error_patterns"]) == len(groups) == 3
    for label, evs in groups.items():
        p = patterns[GROUPS[label]]
        assert p["count"] == len(evs)
        assert p["percentage"] == pytest.approx(100 * len(evs) / len(errors))
        assert label in p["sample_message"]
        assert p["affected_queues"] == sorted({e["queue_name"] for e in evs})
        assert _ms(p["first_seen"]) == min(e["_ts_ms"] for e in evs)
        assert _ms(p["last_seen"]) == max(e["_ts_ms"] for e in evs)

    perf = d["performance_metrics"]
    ranged_all = _tally(_in(sc.events, sc.start_s, sc.end_s))
    assert perf["jobs_per_second"] == pytest.approx(ranged_all["outcomes"] / span_s)
    assert perf["average_queue_depth"] == pytest.approx(3 / 3)
    assert perf["database_response_time_ms"] > 0
    assert (perf["active_workers"], perf["worker_utilization"]) == (0, 0.0)
    assert perf["memory_usage_mb"] is None  # no aggregator is running now
    assert len(d["hourly_trends"]) == 72


def _ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


@pytest.mark.parametrize(("granularity", "step_s", "hours"), [("minute", 60, 2), ("hour", 3600, 72),
                                                             ("day", 86_400, 72), ("week", 7 * 86_400, 72)])
def test_trends_at_each_granularity(scenario: tuple[Scenario, TestClient], granularity: str, step_s: int,
                                    hours: int) -> None:
    sc, api = scenario
    start = sc.end_s - hours * 3600
    params = {"start": datetime.fromtimestamp(start, UTC).isoformat(),
              "end": datetime.fromtimestamp(sc.end_s, UTC).isoformat(), "granularity": granularity}
    trends = api.get("/api/stats/trends", params=params).json()["data"]
    b = align(start, step_s)
    assert _ms(trends[0]["hour"]) == b * 1000
    first_s = min(e["_ts_ms"] for e in sc.events) / 1000
    for point in trends:
        lo = _ms(point["hour"]) // 1000
        hi = align(lo + step_s, step_s) if granularity == "week" else lo + step_s
        t = _tally(_in(sc.events, lo, hi))
        assert (point["completed"], point["failed"], point["enqueued"]) == (t["completed"], t["failures"],
                                                                           t["enqueued"])
        # the bucket holding now counts only its elapsed part, from the first data on (DESIGN, windowed rates)
        span_s = sc.now_s - max(lo, first_s) if lo <= sc.now_s < hi else hi - lo
        assert point["throughput"] == pytest.approx(t["outcomes"] * 60 / span_s)
        assert point["error_rate"] == pytest.approx(t["rate"])
        assert point["avg_processing_time_ms"] == pytest.approx(t["avg"])
        if t["times"]:
            _close(point["processing_time_ms"]["p50"], _pct(t["times"], 0.5))
    assert sum(p["completed"] for p in trends) > 0
