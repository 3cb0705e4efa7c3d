"""A request's Redis work depends on queues and buckets asked for, never on how many events exist."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from typing import Any

import pytest
import redis
import redis.asyncio.client as aclient
from fastapi.testclient import TestClient

from aggregator.connection import RedisTarget
from aggregator.consumer import Aggregator
from aggregator.keys import Keys
from aggregator.settings import Settings
from api.main import create_app
from api.redisio import RedisReads
from tests.workload import build, event, publish

ROUTES = ["/api/stats/overview", "/api/stats/detailed", "/api/stats/trends", "/api/stats/health"]


def _count_commands(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    counts: Counter[str] = Counter()
    plain, piped, packed = aclient.Redis.execute_command, aclient.Pipeline.execute, RedisReads.pipelined

    async def execute_command(self: Any, *args: Any, **kw: Any) -> Any:
        counts["commands"] += 1
        return await plain(self, *args, **kw)

    async def execute(self: Any, *args: Any, **kw: Any) -> Any:
        counts["commands"] += len(self.command_stack)
        return await piped(self, *args, **kw)

    async def pipelined(self: Any, commands: bytes, replies: int) -> Any:
        counts["commands"] += replies
        return await packed(self, commands, replies)

    monkeypatch.setattr(aclient.Redis, "execute_command", execute_command)
    monkeypatch.setattr(aclient.Pipeline, "execute", execute)
    monkeypatch.setattr(RedisReads, "pipelined", pipelined)
    return counts


def _per_route(api: TestClient, counts: Counter[str], params: dict[str, str]) -> dict[str, int]:
    out = {}
    for route in ROUTES:
        counts.clear()
        assert api.get(route, params=params if "overview" not in route and "health" not in route else {}).is_success
        out[route] = counts["commands"]
    return out


@pytest.mark.slow
def test_commands_per_request_equal_at_1k_and_100k_events(
    settings: Settings, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(settings.key_prefix)
    client.hset(keys.meta, "partitions", settings.partitions)
    t0_ms = (int(time.time()) // 3600 * 3600 - 7200) * 1000
    small, _ = build(1_000, 10, seed=1, t0_ms=t0_ms)
    big, _ = build(99_000, 10, seed=2, t0_ms=t0_ms)
    agg = Aggregator(settings, client)
    publish(client, keys, settings.partitions, small)
    agg.run(drain=True)
    params = {"start": time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(t0_ms / 1000)),
              "end": time.strftime("%Y-%m-%dT%H:00:00Z", time.gmtime(t0_ms / 1000 + 7200))}
    counts = _count_commands(monkeypatch)
    with TestClient(create_app(settings, RedisTarget(settings.redis_url))) as api:
        api.get("/api/stats/overview")  # let the app read the meta once
        before = _per_route(api, counts, params)
        publish(client, keys, settings.partitions, big)
        Aggregator(settings, client).run(drain=True)
        after = _per_route(api, counts, params)
    assert sum(int(client.hget(keys.watermark(p), "events") or 0) for p in range(4)) >= 100_000 * 0.95
    assert all(n > 0 for n in before.values())
    assert before == after


def _queues_workload(n_queues: int, t0_ms: int) -> list[dict[str, Any]]:
    evs = []
    for i in range(n_queues):
        q = f"q{i}"
        evs += [event(f"{q}-1", q, "enqueued", t0_ms + i), event(f"{q}-2", q, "enqueued", t0_ms + i),
                event(f"{q}-2", q, "started", t0_ms + i + 1), event(f"{q}-2", q, "completed", t0_ms + i + 9,
                                                                     processing_time_ms=8)]
    return evs


def test_overview_reads_the_same_commands_at_10_and_1000_queues(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = redis.Redis.from_url(redis_url)
    t0_ms = (int(time.time()) - 100) * 1000
    counted = {}
    for n_queues in (10, 1000):
        settings = Settings(redis_url=redis_url, key_prefix=f"cost{uuid.uuid4().hex[:8]}", partitions=4)
        keys = Keys(settings.key_prefix)
        try:
            client.hset(keys.meta, "partitions", settings.partitions)
            publish(client, keys, settings.partitions, _queues_workload(n_queues, t0_ms))
            Aggregator(settings, client).run(drain=True)
            counts = _count_commands(monkeypatch)
            with TestClient(create_app(settings, RedisTarget(settings.redis_url))) as api:
                api.get("/api/stats/overview")  # let the app read the meta once
                counts.clear()
                data = api.get("/api/stats/overview").json()["data"]
                counted[n_queues] = counts["commands"]
                monkeypatch.undo()
            assert (data["total_queues"], data["pending_jobs"], data["completed_jobs"]) == (n_queues,) * 3
        finally:
            for pattern in (f"{settings.key_prefix}:*", f"{{{settings.key_prefix}:*"):
                for key in client.scan_iter(match=pattern, count=1000):
                    client.delete(key)
    assert counted[10] == counted[1000] == settings.partitions  # one script call per partition
