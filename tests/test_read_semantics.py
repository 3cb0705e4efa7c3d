"""What a person sees at every moment, with a controlled clock: rates on a young system, the bucket
holding now, the views agreeing, total_queues, and hour/day sums that add the minutes not rolled up."""

from __future__ import annotations

import time
from collections.abc import Iterator
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
from tests.workload import event, publish

RATE_PER_MIN = 600  # outcomes per minute of the steady load
QUEUES = ["a", "b", "c"]


def _steady(start_ms: int, end_ms: int, prefix: str = "j") -> list[dict[str, Any]]:
    """One job completing every 100 ms (600/min), round robin over QUEUES, from start to end."""
    evs = []
    step_ms = 60_000 // RATE_PER_MIN
    for i, t in enumerate(range(start_ms, end_ms, step_ms)):
        q, job = QUEUES[i % len(QUEUES)], f"{prefix}{i}"
        evs += [event(job, q, "enqueued", t - 50), event(job, q, "started", t - 40, wait_time_ms=10),
                event(job, q, "completed", t, processing_time_ms=40)]
    return evs


def _app(settings: Settings, client: redis.Redis, events: list[dict[str, Any]], now_s: float) -> TestClient:
    keys = Keys(settings.key_prefix)
    client.hset(keys.meta, "partitions", settings.partitions)
    publish(client, keys, settings.partitions, events)
    Aggregator(settings, client).run(drain=True)
    return TestClient(create_app(settings, RedisTarget(settings.redis_url), clock=lambda: now_s))


@pytest.fixture
def young(settings: Settings, client: redis.Redis) -> Iterator[tuple[TestClient, float]]:
    """A system whose first event came 10 s ago, at a steady 600 outcomes/min since."""
    now_s = float(int(time.time()) - 120)  # in the past: no event is beyond the aggregator's future tolerance
    with _app(settings, client, _steady(int((now_s - 10) * 1000), int(now_s * 1000)), now_s) as api:
        yield api, now_s


def test_a_young_system_shows_its_rate_undiluted(young: tuple[TestClient, float]) -> None:
    api, _ = young
    d = api.get("/api/stats/overview").json()["data"]
    assert d["window_seconds"] == pytest.approx(10.05, abs=0.1)  # from the first event (an enqueue) on
    assert d["overall_throughput"] == pytest.approx(RATE_PER_MIN, rel=0.05)


def test_card_table_and_top_agree(young: tuple[TestClient, float]) -> None:
    api, _ = young
    card = api.get("/api/stats/overview").json()["data"]["overall_throughput"]
    # what the dashboard's queue table and `jobpulse top` show: detailed without a range
    table = api.get("/api/stats/detailed").json()["data"]["queue_stats"]
    assert sum(q["throughput_per_minute"] for q in table) == pytest.approx(card, rel=1e-9)
    for q in table:
        assert q["throughput_per_minute"] == pytest.approx(RATE_PER_MIN / len(QUEUES), rel=0.05)


def test_the_overview_of_every_queue_by_name_is_the_overview(young: tuple[TestClient, float]) -> None:
    api, _ = young
    whole = api.get("/api/stats/overview").json()["data"]
    named = api.get("/api/stats/overview", params={"queues": ",".join(QUEUES)}).json()["data"]
    assert named["overall_throughput"] > 0  # the window is read through each queue's own buckets
    for field in ("total_queues", "total_jobs", "completed_jobs", "pending_jobs", "running_jobs", "overall_throughput",
                  "overall_error_rate", "avg_processing_time_ms", "processing_time_ms", "wait_time_ms",
                  "window_seconds"):
        assert named[field] == whole[field], field


def test_the_bucket_holding_now_is_not_a_dip(settings: Settings, client: redis.Redis) -> None:
    now_s = float(int(time.time()) // 60 * 60 - 120 + 25)  # 25 s into a minute, in the past
    events = _steady(int((now_s - 300) * 1000), int(now_s * 1000))
    with _app(settings, client, events, now_s) as api:
        start = datetime.fromtimestamp(now_s - 600, UTC).isoformat()
        end = datetime.fromtimestamp(now_s, UTC).isoformat()
        points = api.get("/api/stats/trends", params={"start": start, "end": end, "granularity": "minute"}
                         ).json()["data"]
    current, previous = points[-1], points[-2]
    assert previous["throughput"] == pytest.approx(RATE_PER_MIN, rel=0.01)
    assert current["throughput"] == pytest.approx(previous["throughput"], rel=0.05)


def test_total_queues_counts_queues_seen(young: tuple[TestClient, float]) -> None:
    api, _ = young
    assert api.get("/api/stats/overview").json()["data"]["total_queues"] == len(QUEUES)
    assert api.get("/api/stats/overview", params={"queues": "no-such-queue"}).json()["data"]["total_queues"] == 0
    both = api.get("/api/stats/overview", params={"queues": "a,no-such-queue"}).json()["data"]
    assert both["total_queues"] == 1


def test_hour_sums_add_the_minutes_not_rolled_up(settings: Settings, client: redis.Redis) -> None:
    # fixture keys written directly: the hour bucket holds minutes before the marker `rolled`; the
    # minute buckets at or after it are not in the hour bucket yet
    keys = Keys(settings.key_prefix)
    client.hset(keys.meta, "partitions", settings.partitions)
    now_s = float(int(time.time()) // 3600 * 3600 + 1800)  # half past an hour (in the future is fine here)
    hour = int(now_s) // 3600 * 3600
    rolled = int(now_s) - 180
    p = 0
    client.hset(keys.bucket(p, "h", hour), mapping={"n:completed": 100, "pt_sum": 1000, "pt_n": 100})
    client.hset(keys.bucket(p, "m", rolled - 60), mapping={"n:completed": 7})  # already in the hour bucket
    client.hset(keys.bucket(p, "m", rolled), mapping={"n:completed": 5, "pt_sum": 500, "pt_n": 5})
    client.hset(keys.bucket(p, "m", rolled + 60), mapping={"n:completed": 3})
    client.hset(keys.watermark(p), "rolled", rolled)
    with TestClient(create_app(settings, RedisTarget(settings.redis_url), clock=lambda: now_s)) as api:
        params = {"start": datetime.fromtimestamp(hour - 3600, UTC).isoformat(),
                  "end": datetime.fromtimestamp(now_s, UTC).isoformat(), "granularity": "hour"}
        points = api.get("/api/stats/trends", params=params).json()["data"]
        assert [pt["completed"] for pt in points] == [0, 108]
        assert points[-1]["avg_processing_time_ms"] == pytest.approx(1500 / 105)
        # without the marker, hour buckets are taken as complete
        client.hdel(keys.watermark(p), "rolled")
        points = api.get("/api/stats/trends", params=params).json()["data"]
        assert [pt["completed"] for pt in points] == [0, 100]


def test_a_roll_up_far_behind_is_still_counted(settings: Settings, client: redis.Redis) -> None:
    keys = Keys(settings.key_prefix)
    client.hset(keys.meta, "partitions", settings.partitions)
    now_s = float(int(time.time()) // 3600 * 3600 + 3000)
    hour = int(now_s) // 3600 * 3600
    rolled = hour + 60  # 48 minutes behind: beyond the usual few minutes looked at
    client.hset(keys.bucket(1, "h", hour), mapping={"n:completed": 10})
    for m in range(rolled, int(now_s), 60):
        client.hset(keys.bucket(1, "m", m), mapping={"n:completed": 1})
    client.hset(keys.watermark(1), "rolled", rolled)
    with TestClient(create_app(settings, RedisTarget(settings.redis_url), clock=lambda: now_s)) as api:
        params = {"start": datetime.fromtimestamp(hour, UTC).isoformat(),
                  "end": datetime.fromtimestamp(now_s, UTC).isoformat(), "granularity": "hour"}
        points = api.get("/api/stats/trends", params=params).json()["data"]
    assert [pt["completed"] for pt in points] == [10 + (int(now_s) - rolled) // 60]


def test_backlog_alerts_name_the_queues_over_the_threshold_from_the_index(settings: Settings,
                                                                          client: redis.Redis) -> None:
    one = settings.model_copy(update={"partitions": 1, "backlog_warning": 2})
    keys = Keys(one.key_prefix)
    t_ms = int(time.time() * 1000) - 60_000
    pending = {"big1": 3, "big2": 4, **{f"small{i}": 1 for i in range(5)}}
    publish(client, keys, 1, [event(f"{q}-{n}", q, "enqueued", t_ms) for q, count in pending.items()
                              for n in range(count)])
    Aggregator(one, client).run(drain=True)
    assert {q.decode(): int(n) for q, n in client.zrange(keys.backlog(0), 0, -1, withscores=True)} == pending

    def alerts() -> dict[str, float]:
        with TestClient(create_app(one)) as api:
            found = api.get("/api/stats/overview").json()["data"]["system_health"]["alerts"]
        return {a["queue"]: a["value"] for a in found if a["metric"] == "pending_count"}

    assert alerts() == {"big1": 3, "big2": 4}
    client.delete(keys.backlog(0))  # data from before the index: the API counts the pending sets itself
    assert alerts() == {"big1": 3, "big2": 4}
    client.zadd(keys.backlog(0), {"stale": 99})
    Aggregator(one, client).run(drain=True)  # a new owner rebuilds the index from the pending sets
    assert {q.decode(): int(n) for q, n in client.zrange(keys.backlog(0), 0, -1, withscores=True)} == pending
