"""Rolling closed minutes up into hour and day buckets: where the marker goes, what an apply rolls
up, and that the API answers the same whether minutes were rolled up or written to every bucket."""

from __future__ import annotations

import random
import time
from typing import Any

import redis
from fastapi.testclient import TestClient

from aggregator import schema
from aggregator.buffer import iso
from aggregator.connection import RedisTarget
from aggregator.consumer import Aggregator
from aggregator.effects import Effects
from aggregator.fold import FoldConfig
from aggregator.keys import Keys
from aggregator.rollup import ROLL_AFTER_S, ROLL_MAX_BUCKETS, initial_marker, next_marker, roll
from aggregator.settings import Settings
from api.main import create_app
from tests.workload import lifecycle, publish

NOW_S = 1_800_000_000 - 1_800_000_000 % 86_400 + 7 * 3600 + 30 * 60 + 15  # 07:30:15 of some day
MINUTE_S = NOW_S - NOW_S % 60
KEYS = Keys("t")
CFG = FoldConfig(keys=KEYS, partition=1, retention_s={"m": 7200, "h": 86_400, "d": 10 * 86_400},
                 dedup_window_s=60, job_ttl_s=60, future_tolerance_ms=0)


def test_a_partition_without_a_marker_starts_after_all_it_holds() -> None:
    closed = MINUTE_S - ROLL_AFTER_S  # (NOW_S is 15 s into its minute)
    assert initial_marker(None, NOW_S) == closed  # no data: where the next apply would move it anyway
    assert initial_marker((NOW_S - 86_400) * 1000, NOW_S) == closed  # old data only
    assert initial_marker(NOW_S * 1000 + 200_000, NOW_S) == MINUTE_S + 240  # data ahead of the clock


def test_the_marker_follows_the_clock_never_back_and_a_bounded_number_of_minutes_at_a_time() -> None:
    closed = MINUTE_S - ROLL_AFTER_S
    assert next_marker(closed - 300, NOW_S, queues=3) == closed
    assert next_marker(closed + 60, NOW_S, queues=3) == closed + 60  # never back
    far_behind = closed - 86_400
    step = next_marker(far_behind, NOW_S, queues=999)  # 1,000 buckets a minute: two minutes per apply
    assert step - far_behind == ROLL_MAX_BUCKETS // 1000 * 60
    assert next_marker(far_behind, NOW_S, queues=10**6) == far_behind + 60  # at least one minute


def test_an_apply_rolls_each_queue_and_the_partition_up_for_every_minute_it_closes() -> None:
    fx = Effects()
    roll(fx, MINUTE_S - 120, MINUTE_S, {"b", "a"}, CFG, NOW_S)
    hour, day = NOW_S - NOW_S % 3600, NOW_S - NOW_S % 86_400
    hour_at, day_at = hour + 3600 + 86_400, day + 86_400 + 10 * 86_400
    assert fx.rolls == [
        (KEYS.bucket(1, "m", m, q), KEYS.bucket(1, "h", hour, q), hour_at, KEYS.bucket(1, "d", day, q), day_at)
        for m in (MINUTE_S - 120, MINUTE_S - 60) for q in ("a", "b", None)
    ]
    fx = Effects()
    roll(fx, MINUTE_S, MINUTE_S, {"a"}, CFG, NOW_S)
    assert fx.rolls == []  # nothing closed


def test_an_hour_no_longer_kept_is_not_written_back() -> None:
    fx = Effects()
    old_minute = NOW_S - 3 * 86_400
    roll(fx, old_minute - old_minute % 60, old_minute - old_minute % 60 + 60, set(), CFG, NOW_S)
    [(_, hour, _, day, _)] = fx.rolls
    assert hour is None and day is not None


def _drain(settings: Settings, client: redis.Redis, prefix: str, events: list[dict[str, Any]],
           marker_s: int) -> tuple[Settings, Keys]:
    s = settings.model_copy(update={"key_prefix": prefix, "partitions": 2, "batch_size": 50,
                                    "max_flush_entries": 200})
    keys = Keys(prefix)
    client.hset(keys.meta, "partitions", s.partitions)
    for p in range(s.partitions):
        client.hset(keys.watermark(p), schema.WM_ROLLED, marker_s)
    publish(client, keys, s.partitions, events)
    Aggregator(s, client).run(drain=True)
    return s, keys


def test_the_api_answers_the_same_with_minutes_rolled_up_or_written_everywhere(settings: Settings,
                                                                                client: redis.Redis) -> None:
    rng = random.Random(7)
    now_s = int(time.time())
    events = []
    for j in range(600):  # the last 50 minutes, the newest few still open
        events += lifecycle(rng, f"j{j}", f"q{j % 5}", (now_s - 3000 + j * 5) * 1000)
    events = [ev for ev in events if ev["_ts_ms"] < now_s * 1000]
    # everything written to every bucket (a marker ahead of every minute: nothing is ever rolled up) ...
    direct, direct_keys = _drain(settings, client, f"{settings.key_prefix}:direct", events, 2**40)
    # ... and rolled up: minutes from 45 minutes ago on go to minute buckets, then into hours once closed
    start_s = now_s - 2700 - now_s % 60
    rolled, rolled_keys = _drain(settings, client, f"{settings.key_prefix}:rolled", events, start_s)
    marker_s = int(client.hget(rolled_keys.watermark(0), schema.WM_ROLLED) or 0)
    assert now_s - now_s % 60 - ROLL_AFTER_S - 60 <= marker_s <= now_s  # moved on to the minutes not closed
    # Stored: each hour bucket plus its minutes not rolled up yet is what writing everywhere stored.
    unrolled = 0
    for hour_s in range(start_s - start_s % 3600, now_s + 1, 3600):
        summed: dict[bytes, int] = {k: int(v) for k, v in client.hgetall(rolled_keys.bucket(0, "h", hour_s)).items()}
        for minute_s in range(max(hour_s, marker_s), hour_s + 3600, 60):
            for k, v in client.hgetall(rolled_keys.bucket(0, "m", minute_s)).items():
                unrolled += 1
                keep_max = k.decode() in schema.MAX_FIELDS
                summed[k] = max(summed.get(k, 0), int(v)) if keep_max else summed.get(k, 0) + int(v)
        assert summed == {k: int(v) for k, v in client.hgetall(direct_keys.bucket(0, "h", hour_s)).items()}
    assert unrolled  # (some minutes really are in minute buckets only)
    answers = []
    for s in (direct, rolled):
        with TestClient(create_app(s, RedisTarget(s.redis_url), clock=lambda: float(now_s))) as api:
            got = {}
            last_hour = f"start={iso(now_s - 3600)}&end={iso(now_s)}"
            for path in ("/api/stats/overview", "/api/stats/detailed", "/api/stats/detailed?queues=q1,q3",
                         "/api/stats/trends?granularity=hour", "/api/stats/trends?granularity=day",
                         f"/api/stats/trends?granularity=minute&{last_hour}",
                         f"/api/stats/trends?granularity=hour&{last_hour}&queues=q2"):
                body = api.get(path).json()
                assert body["success"], (path, body)
                got[path] = body["data"]
            answers.append(got)
    assert _diff(answers[0], answers[1]) == []


_WALL_CLOCK_FIELDS = {"last_updated", "database_response_time_ms"}  # when the apply ran, how long a read took


def _diff(a: Any, b: Any, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted((set(a) | set(b)) - _WALL_CLOCK_FIELDS, key=str)
                for d in _diff(a.get(k), b.get(k), f"{where}.{k}")]
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _diff(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]
