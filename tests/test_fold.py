"""Gauges never drift: random lifecycles, duplicated and reordered, against a reference model."""

from __future__ import annotations

import random
import time
import uuid

import fakeredis
import orjson
import redis
from fastapi.testclient import TestClient
from hypothesis import example, given, settings
from hypothesis import strategies as st

from aggregator.connection import RedisTarget
from aggregator.consumer import Aggregator
from aggregator.fold import event_job_ids, parse_entries
from aggregator.jobcache import JobRecord
from aggregator.keys import Keys, partition_of
from aggregator.settings import Settings
from api.main import create_app
from tests.helpers import drain_on_fakeredis
from tests.workload import Expected, event, lifecycle, publish

QUEUES = ["a", "b"]
T0_MS = (int(time.time()) // 86_400 - 1) * 86_400_000  # yesterday: inside every retention, same all day


@settings(max_examples=200, deadline=None)
# found by hypothesis: a newer event that left the state unchanged was not stored, so an
# older retried event later looked newest and put a running job back to pending
@example(seed=1, n_jobs=9, shuffle=True, dup_fraction=0.375, batch_size=1)
@given(
    seed=st.integers(0, 10**6),
    n_jobs=st.integers(1, 12),
    shuffle=st.booleans(),
    dup_fraction=st.floats(0, 0.5),
    batch_size=st.integers(1, 50),
)
def test_gauges_match_reference_model(seed: int, n_jobs: int, shuffle: bool, dup_fraction: float,
                                      batch_size: int) -> None:
    rng = random.Random(seed)
    cfg = Settings(key_prefix="prop" + uuid.uuid4().hex[:6], partitions=2, batch_size=batch_size)
    expected = Expected()
    events = []
    for j in range(n_jobs):
        evs = lifecycle(rng, f"j{j}", rng.choice(QUEUES), T0_MS + rng.randint(0, 10_000))
        for ev in evs:
            expected.add(ev)
        events.extend(evs)
    events.extend(dict(ev) for ev in rng.sample(events, int(len(events) * dup_fraction)))
    if shuffle:
        rng.shuffle(events)  # reorder (within each partition, too)
    client = drain_on_fakeredis(events, cfg)
    keys = Keys(cfg.key_prefix)
    for q in QUEUES:
        p = partition_of(q, cfg.partitions)
        assert client.zcard(keys.pending(p, q)) == expected.gauge(q, "P")
        assert client.zcard(keys.running(p, q)) == expected.gauge(q, "R")
        totals = {k.decode(): int(v) for k, v in client.hgetall(keys.totals(p, q)).items() if k.startswith(b"n:")}
        assert totals == {f"n:{kind}": n for (qq, kind), n in expected.counts.items() if qq == q}
        if not shuffle:
            # in order, a pending job's score is when it last became pending
            want = sorted(
                max(e["_ts_ms"] for e in events if e["job_id"] == job and e["event_type"] in ("enqueued", "retried"))
                for job, (_, _, state, queue) in expected.latest.items() if state == "P" and queue == q
            )
            got = sorted(int(s) for _, s in client.zrange(keys.pending(p, q), 0, -1, withscores=True))
            assert got == want
    # each partition's summary is the sum of its queues: what the overview reads instead of every queue
    for p in range(cfg.partitions):
        mine = [q for q in QUEUES if partition_of(q, cfg.partitions) == p]
        summary = {k.decode(): int(v) for k, v in client.hgetall(keys.summary(p)).items()}
        assert summary.get("pending", 0) == sum(client.zcard(keys.pending(p, q)) for q in mine)
        assert summary.get("running", 0) == sum(client.zcard(keys.running(p, q)) for q in mine)
        for q in mine:
            totals = {k.decode(): int(v) for k, v in client.hgetall(keys.totals(p, q)).items()}
            assert all(summary.get(k, 0) >= v for k, v in totals.items() if k.startswith("n:"))
        assert sum(v for k, v in summary.items() if k.startswith("n:")) == sum(
            int(v) for q in mine for k, v in client.hgetall(keys.totals(p, q)).items() if k.startswith(b"n:"))
        oldest = dict(client.zrange(keys.oldest_pending(p), 0, -1, withscores=True))
        for q in mine:
            head = client.zrange(keys.pending(p, q), 0, 0, withscores=True)
            assert oldest.get(q.encode()) == (head[0][1] if head else None)


def test_future_events_are_clamped_to_arrival_and_counted() -> None:
    cfg = Settings(key_prefix="clamp", partitions=1)
    arrival_guess_ms = int(time.time() * 1000)
    ev = {"event_id": "e1", "job_id": "j", "queue_name": "a", "event_type": "enqueued",
          "timestamp": "2999-01-01T00:00:00Z", "_ts_ms": 0}
    client = drain_on_fakeredis([ev], cfg)
    keys = Keys("clamp")
    assert client.hget(keys.watermark(0), "clamped") == b"1"
    stored = JobRecord.decode(client.get(keys.job(0, "j")) or b"").ts_ms
    assert abs(stored - arrival_guess_ms) < 60_000  # the arrival time, not the year 2999


_NOT_STATS = (b":events", b":lease", b":fence", b":aggregators", b":housekeeping")


def _stored(client: fakeredis.FakeRedis, prefix: str) -> dict[bytes, object]:
    """Every stats key and its content; the stream, leases and timing fields left out."""
    out: dict[bytes, object] = {}
    for key in client.scan_iter(match=f"*{prefix}*", count=1000):
        if key.endswith(_NOT_STATS) or b":aggregator:" in key:
            continue
        kind = client.type(key)
        if kind == b"hash":
            out[key] = {k: v for k, v in client.hgetall(key).items() if k not in (b"applied_ms", b"id")}
        elif kind == b"zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            out[key] = sorted(client.smembers(key))
        elif kind == b"string":
            out[key] = client.get(key)
    return out


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 10**6), chunk=st.integers(1, 40), per_flush=st.integers(1, 200))
@example(seed=161, chunk=4, per_flush=4)  # once found: a job forgotten by a trim while its chunk was read
def test_the_same_events_split_by_count_or_by_time_store_the_same_stats(seed: int, chunk: int,
                                                                          per_flush: int) -> None:
    rng = random.Random(seed)
    events = []
    for j in range(15):
        events.extend(lifecycle(rng, f"j{j}", rng.choice(QUEUES), T0_MS + rng.randint(0, 600_000)))
    events.extend(dict(ev) for ev in rng.sample(events, len(events) // 5))  # re-sent copies
    rng.shuffle(events)
    prefix = "split" + uuid.uuid4().hex[:6]
    # one flush per `per_flush` entries read `chunk` at a time, vs a flush for every chunk (a 1 ms interval)
    common = {"key_prefix": prefix, "partitions": 2, "batch_size": chunk}
    by_count = drain_on_fakeredis(events, Settings(**common, max_flush_entries=per_flush, flush_interval_ms=400))
    by_time = drain_on_fakeredis(events, Settings(**common, flush_interval_ms=1))
    count_keys, time_keys = _stored(by_count, prefix), _stored(by_time, prefix)
    differing = {k: (v, time_keys.get(k)) for k, v in count_keys.items() if time_keys.get(k) != v}
    for k, (a, b) in list(differing.items()):
        if isinstance(a, dict) and isinstance(b, dict):
            differing[k] = {f: (a.get(f), b.get(f)) for f in a.keys() | b.keys() if a.get(f) != b.get(f)}
    assert count_keys.keys() == time_keys.keys() and not differing


def test_events_older_than_the_longest_retention_are_dead_lettered(settings: Settings, client: redis.Redis) -> None:
    keys = Keys(settings.key_prefix)
    now_ms = int(time.time() * 1000)
    client.hset(keys.meta, "partitions", settings.partitions)
    events = [event("ancient", "q", "enqueued", 0, timestamp="0001-01-01T00:00:00Z"),
              event("ancient", "q", "failed", 0, timestamp="0001-01-01T00:00:01Z", error={"message": "old"}),
              event("recent", "q", "enqueued", now_ms - 5_000)]
    publish(client, keys, settings.partitions, events)
    Aggregator(settings, client).run(drain=True)
    p = partition_of("q", settings.partitions)
    dead = client.xrange(keys.deadletter(p))
    assert len(dead) == 2
    assert all(b"too old" in fields[b"reason"] and b"ancient" in fields[b"entry"] for _, fields in dead)
    assert client.hget(keys.watermark(p), "dead_letters") == b"2"
    assert client.zrange(keys.pending(p, "q"), 0, -1) == [b"recent"]
    assert client.hget(keys.totals(p, "q"), "n:enqueued") == b"1"
    with TestClient(create_app(settings, RedisTarget(settings.redis_url))) as api:
        overview = api.get("/api/stats/overview").json()["data"]
    assert overview["pending_jobs"] == 1 and overview["failed_jobs"] == 0
    assert 0 <= overview["oldest_pending_age_seconds"] < 3_600  # the recent job's age, not 2,000 years


def test_parsing_names_the_jobs_of_valid_events_only() -> None:
    good = orjson.dumps(event("j1", "q", "enqueued", T0_MS))
    upper = orjson.dumps({**event("j2", "q", "enqueued", T0_MS), "priority": "HIGH"})  # the model's path
    bad = orjson.dumps({**event("j3", "q", "enqueued", T0_MS), "event_type": "exploded"})
    raw = [(b"5-0", [b"event", good]), (b"5-1", [b"event", upper]), (b"6-0", [b"event", bad]),
           (b"6-1", [b"heartbeat", b"{}"]), (b"7-0", {b"event": good})]
    entries, job_ids = parse_entries(raw, max_bytes=10_000)
    assert job_ids == {"j1", "j2"} == event_job_ids(entries)
    assert [(entry_id, arrival_ms) for entry_id, arrival_ms, _ in entries] == [
        ("5-0", 5), ("5-1", 5), ("6-0", 6), ("6-1", 6), ("7-0", 7)]
    kinds = [type(item).__name__ for _, _, item in entries]
    assert kinds == ["Event", "Event", "Rejected", "Rejected", "Event"]
    assert entries[1][2].priority == "high"  # type: ignore[union-attr]
