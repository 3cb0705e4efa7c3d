"""Fuzzed stream entries mixed with valid events: the aggregator never crashes, every invalid
entry is dead-lettered with a reason, every valid one is counted (>= 10,000 entries in all)."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aggregator.consumer import Aggregator
from aggregator.events import Event, parse_event
from aggregator.keys import Keys
from aggregator.settings import Settings
from tests.helpers import REDIS_URL

EXAMPLES, ENTRIES = 200, 55  # 11,000 entries: many small examples keep generation cheap

_valid = st.fixed_dictionaries({
    "job_id": st.text(min_size=1, max_size=20),
    "queue_name": st.sampled_from(["q1", "q 2", "ü{3}:x"]),
    "event_type": st.sampled_from(["enqueued", "started", "completed", "failed", "retried", "dead"]),
    "timestamp": st.sampled_from(["2026-11-28T10:00:00Z", "2026-11-28T10:00:00.123+02:00",
                                  "1970-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "2026-11-28T09:59:59.999999Z"]),
}, optional={
    "processing_time_ms": st.integers(-5, 10**7),
    "wait_time_ms": st.integers(-5, 10**7),
    "priority": st.sampled_from(["HIGH", "low", "nope"]),
    "error": st.fixed_dictionaries({"message": st.text(max_size=50)}),
    "payload": st.recursive(st.none() | st.floats(allow_nan=True) | st.text(max_size=5),
                            lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=3), c, max_size=3),
                            max_leaves=4),
    "extra_key": st.integers(),
})


HUGE = json.dumps({"event_id": "huge", "job_id": "x" * 70_000}).encode()  # beyond the entry limit
DEEP = b'{"event_id": "e", "payload": ' + b"[" * 5000 + b"]" * 5000 + b"}"
NAN = b'{"processing_time_ms": NaN, "timestamp": Infinity}'
_ODD_VALUES = st.one_of(st.integers(), st.text(max_size=3), st.none(), st.floats(), st.lists(st.integers(), max_size=2))


@st.composite
def _entry(draw: st.DrawFn) -> bytes:
    """A valid event, or one broken in one of many ways (only the chosen way is built)."""
    body = {"event_id": uuid.uuid4().hex, **draw(_valid)}
    dumped = json.dumps(body).encode()
    how = draw(st.sampled_from(["valid", "valid", "valid", "missing", "wrong_type", "huge", "deep", "binary",
                                "truncated", "bad_utf8", "nan"]))
    if how == "missing":
        gone = draw(st.sampled_from(sorted(body)))
        return json.dumps({k: v for k, v in body.items() if k != gone}).encode()
    if how == "wrong_type":
        return json.dumps({**body, draw(st.sampled_from(sorted(body))): draw(_ODD_VALUES)}).encode()
    if how == "binary":
        return draw(st.binary(max_size=40))
    if how == "truncated":
        return dumped[: len(dumped) // 2]
    if how == "bad_utf8":
        return dumped.replace(b'"job_id"', b'"job_id\xff"')
    return {"valid": dumped, "huge": HUGE, "deep": DEEP, "nan": NAN}[how]


@st.composite
def _entries(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    fields = st.sampled_from([b"event"] * 8 + [b"heartbeat", b"other"])
    return [(draw(fields), draw(_entry())) for _ in range(ENTRIES)]


@pytest.mark.slow
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                                     HealthCheck.large_base_example])
@given(_entries())
def test_fuzzed_entries_are_dead_lettered_or_counted(entries: list[tuple[bytes, bytes]]) -> None:
    cfg = Settings(redis_url=REDIS_URL, key_prefix="fz" + uuid.uuid4().hex[:8], partitions=1)
    client = redis.Redis.from_url(REDIS_URL)
    keys = Keys(cfg.key_prefix)
    try:
        for field, raw in entries:
            client.xadd(keys.stream(0), {field: raw})
        Aggregator(cfg, client).run(drain=True)  # must not raise
        oldest_ms = (int(time.time()) - cfg.day_retention_s - 3_600) * 1000  # 1970 is older, 2026 is not

        valid: list[Event] = []
        invalid = 0
        seen: set[str] = set()
        heartbeats = 0
        for field, raw in entries:
            if field == b"heartbeat":
                heartbeats += 1  # judged by its own model; counted below either way
                continue
            item = parse_event(raw, cfg.max_entry_bytes) if field == b"event" else None
            if isinstance(item, Event) and item.ts_ms < oldest_ms:
                invalid += 1  # older than the longest retention: dead-lettered too
            elif isinstance(item, Event):
                if item.event_id not in seen:
                    seen.add(item.event_id)
                    valid.append(item)
            else:
                invalid += 1
        wm = {k.decode(): int(v) for k, v in client.hgetall(keys.watermark(0)).items() if k != b"id"}
        assert wm["consumed"] == len(entries)
        assert wm.get("events", 0) == len(valid)
        dead = client.xrange(keys.deadletter(0))
        assert wm.get("dead_letters", 0) == len(dead) >= invalid  # + heartbeats that failed their model
        assert len(dead) - invalid + wm.get("heartbeats", 0) == heartbeats
        assert all(fields[b"reason"] for _, fields in dead)
        want = Counter((e.queue, e.type) for e in valid)
        for (queue, kind), n in want.items():
            assert int(client.hget(keys.totals(0, queue), f"n:{kind}") or 0) == n
    finally:
        batch = list(client.scan_iter(match=f"*{cfg.key_prefix}*", count=1000))
        if batch:
            client.delete(*batch)


def test_the_dead_letter_stream_is_capped_and_its_size_reported(settings: Settings, client: redis.Redis) -> None:
    from fastapi.testclient import TestClient

    from api.main import create_app

    small = settings.model_copy(update={"partitions": 1, "deadletter_maxlen": 10})
    keys = Keys(small.key_prefix)
    for i in range(2_000):
        client.xadd(keys.stream(0), {"event": orjson.dumps({"bad": i})})
    Aggregator(small, client).run(drain=True)
    kept = client.xlen(keys.deadletter(0))
    assert kept < 300  # MAXLEN ~ 10: trimmed in whole macro nodes, so a little above the cap
    with TestClient(create_app(small)) as api:
        overview = api.get("/api/stats/overview").json()["data"]
    assert overview["dead_letters"] == 2_000 and overview["dead_letter_stream_length"] == kept
