"""Error patterns on real Redis: one per normalised message whatever its error types, and with
``queues=`` only those queues' failures in every field."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import redis
from fastapi.testclient import TestClient

from aggregator.connection import RedisTarget
from aggregator.consumer import Aggregator
from aggregator.errors import parse_type_field, type_field
from aggregator.keys import Keys, partition_of
from aggregator.settings import Settings
from api.main import create_app
from tests.workload import event, publish


def _patterns(settings: Settings, client: redis.Redis, events: list[dict[str, Any]],
              queues: str | None = None) -> list[dict[str, Any]]:
    """Publish ``events``, fold them and read the last hour's error patterns."""
    client.hset(Keys(settings.key_prefix).meta, "partitions", settings.partitions)
    publish(client, Keys(settings.key_prefix), settings.partitions, events)
    Aggregator(settings, client).run(drain=True)
    params = {"queues": queues} if queues else {}
    with TestClient(create_app(settings, RedisTarget(settings.redis_url))) as api:
        body = api.get("/api/stats/detailed", params=params).json()
    assert body["success"], body
    patterns: list[dict[str, Any]] = body["data"]["error_patterns"]
    return patterns


def _failed(job: str, queue: str, ts_ms: int, message: str, error_type: str | None) -> dict[str, Any]:
    error = {"message": message} if error_type is None else {"message": message, "error_type": error_type}
    return event(job, queue, "failed", ts_ms, error=error)


def _ms(iso: str) -> int:
    return round(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def _same_partition(partitions: int) -> tuple[str, str]:
    """Two queue names stored in one partition: error hashes are per partition, so they share one."""
    names = [f"q{i}" for i in range(50)]
    first = names[0]
    second = next(n for n in names[1:] if partition_of(n, partitions) == partition_of(first, partitions))
    return first, second


def test_one_pattern_per_message_whatever_its_error_types(settings: Settings, client: redis.Redis) -> None:
    t = int(time.time() * 1000) - 60_000
    types = ["timeout", "TimeoutError", "timeout", None, "TimeoutError", "timeout"]
    events = [_failed(f"j{i}", "a" if i % 2 else "b", t + i, f"upstream call {i * 7} timed out after {i} ms", ty)
              for i, ty in enumerate(types)]
    events += [_failed(f"c{i}", "a", t + 100 + i, f"connection refused by 10.0.0.{i}", None) for i in range(2)]
    patterns = _patterns(settings, client, events)
    assert len(patterns) == 2
    timeout, refused = patterns
    assert (timeout["count"], timeout["error_type"]) == (6, "timeout")  # 3 × timeout beat 2 × TimeoutError
    assert timeout["affected_queues"] == ["a", "b"]
    assert timeout["percentage"] == 75.0
    assert (refused["count"], refused["error_type"]) == (2, "ConnectionError")  # none given: classified


def test_queue_filter_keeps_only_those_queues_failures(settings: Settings, client: redis.Redis) -> None:
    a, b = _same_partition(settings.partitions)
    t = int(time.time() * 1000) - 120_000
    events = [_failed("b0", b, t, "card 1111 declined", "PaymentError"),
              _failed("a1", a, t + 1_000, "card 2222 declined", "PaymentError"),
              _failed("a2", a, t + 2_000, "card 3333 declined", "PaymentError")]
    events += [_failed(f"b{i}", b, t + 2_500 + i, f"card {i} declined", "Declined") for i in range(4)]
    (only_a,) = _patterns(settings, client, events, queues=a)
    assert (only_a["count"], only_a["affected_queues"], only_a["error_type"]) == (2, [a], "PaymentError")
    assert (_ms(only_a["first_seen"]), _ms(only_a["last_seen"])) == (t + 1_000, t + 2_000)
    with TestClient(create_app(settings, RedisTarget(settings.redis_url))) as api:
        (both,) = api.get("/api/stats/detailed").json()["data"]["error_patterns"]
    assert (both["count"], both["affected_queues"], both["error_type"]) == (7, sorted([a, b]), "Declined")
    assert (_ms(both["first_seen"]), _ms(both["last_seen"])) == (t, t + 2_503)


def test_type_field_round_trips_names_holding_separators() -> None:
    for queue, error_type in [("q", "E"), ("a:b", "mod:Err"), ("", "x"), ("q:1:", ":")]:
        assert parse_type_field(type_field("0123abcd", queue, error_type)) == ("0123abcd", queue, error_type)
    assert parse_type_field("q:0123abcd:queue") is None
    assert parse_type_field("y:0123abcd:9:short") is None


def test_patterns_stored_before_per_queue_bounds_still_read(settings: Settings, client: redis.Redis) -> None:
    keys = Keys(settings.key_prefix)
    client.hset(keys.meta, "partitions", settings.partitions)
    t = int(time.time() * 1000) - 60_000
    hour, p = t // 3_600_000 * 3600, partition_of("a", settings.partitions)
    client.hset(keys.errors(p, hour), mapping={"n:0ld": 2, "q:0ld:a": 2, "f:0ld": t, "l:0ld": t + 5})
    client.hset(keys.error_sig(p, "0ld"), mapping={"type": "OldError", "sample": "disk full"})
    client.sadd(keys.queues(p), "a")
    with TestClient(create_app(settings, RedisTarget(settings.redis_url))) as api:
        (old,) = api.get("/api/stats/detailed", params={"queues": "a"}).json()["data"]["error_patterns"]
    assert (old["error_type"], old["count"], old["sample_message"]) == ("OldError", 2, "disk full")
    assert (_ms(old["first_seen"]), _ms(old["last_seen"])) == (t, t + 5)
