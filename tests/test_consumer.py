"""Exactly once on real Redis: kill -9 twenty times mid-ingest, fencing of a stale owner."""

from __future__ import annotations

import random
import signal
import time

import pytest
import redis

from aggregator.consumer import Aggregator
from aggregator.keys import Keys
from aggregator.settings import Settings
from tests.helpers import assert_exact, spawn_aggregator
from tests.workload import build, publish

T0_MS = int(time.time() * 1000) - 3_600_000


@pytest.mark.slow
def test_kill_9_at_random_points_loses_and_repeats_nothing(settings: Settings, client: redis.Redis) -> None:
    events, expected = build(200_000, 20, seed=7, t0_ms=T0_MS)
    keys = Keys(settings.key_prefix)
    client.hset(keys.meta, mapping={"partitions": settings.partitions, "version": "1"})
    publish(client, keys, settings.partitions, events)
    rng = random.Random(3)

    def consumed() -> int:
        return sum(int(client.hget(keys.watermark(p), "consumed") or 0) for p in range(settings.partitions))

    kills = 0
    for _ in range(20):
        target = consumed() + rng.randint(1, 8000)  # a random point in the stream, usually mid-batch
        proc = spawn_aggregator(settings)
        deadline = time.monotonic() + 60
        while consumed() < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)  # the new process waits out the killed one's 1 s lease first
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills == 20 and 0 < consumed() < len(events), "the kills must land mid-ingest"
    final = spawn_aggregator(settings, "--drain")
    _, err = final.communicate(timeout=120)
    assert final.returncode == 0, err.decode()[-2000:]
    assert_exact(client, settings, expected)
    dups = sum(int(client.hget(keys.watermark(p), "duplicates") or 0) for p in range(settings.partitions))
    assert dups == len(events) - len({e["event_id"] for e in events}) > 0  # every re-sent copy seen, ignored


def test_stale_owner_is_fenced_out(settings: Settings, client: redis.Redis) -> None:
    events, expected = build(2_000, 3, seed=1, t0_ms=T0_MS)
    keys = Keys(settings.key_prefix)
    small = settings.model_copy(update={"batch_size": 100})
    first = Aggregator(small, client, owner_id="first")
    first.rebalance(want_all=True)
    publish(client, keys, settings.partitions, events)
    assert first.step_all() > 0
    first.flush_all()
    for p in range(settings.partitions):  # the first owner stalls past its lease
        client.delete(keys.lease(p))
    second = Aggregator(small, client, owner_id="second")
    second.rebalance(want_all=True)
    assert len(second.owned) == settings.partitions
    with_data = [p for p in range(settings.partitions) if client.xlen(keys.stream(p))]
    first.step_all()  # folded, then refused by the apply script: nothing applied
    first.flush_all()
    assert first.progress.fenced == len(with_data) > 0
    assert not set(first.owned) & set(with_data)
    second.run(drain=True)
    assert_exact(client, settings, expected)


def test_two_aggregators_started_together_share_without_double_counting(
    settings: Settings, client: redis.Redis
) -> None:
    events, expected = build(5_000, 8, seed=2, t0_ms=T0_MS)
    keys = Keys(settings.key_prefix)
    client.hset(keys.meta, mapping={"partitions": settings.partitions, "version": "1"})
    publish(client, keys, settings.partitions, events)
    a, b = Aggregator(settings, client, owner_id="a"), Aggregator(settings, client, owner_id="b")
    a.rebalance(want_all=True)
    b.rebalance(want_all=True)
    assert set(a.owned).isdisjoint(b.owned)
    for agg in (a, b):
        while agg.step_all():
            pass
        agg.flush_all()
    a.release_all()
    b.run(drain=True)
    assert_exact(client, settings, expected)


def test_sigterm_finishes_and_releases_the_leases(settings: Settings, client: redis.Redis) -> None:
    keys = Keys(settings.key_prefix)
    client.hset(keys.meta, mapping={"partitions": settings.partitions, "version": "1"})
    proc = spawn_aggregator(settings)
    deadline = time.monotonic() + 30
    while not all(client.exists(keys.lease(p)) for p in range(settings.partitions)):
        assert time.monotonic() < deadline and proc.poll() is None, "the aggregator never took its leases"
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert not any(client.exists(keys.lease(p)) for p in range(settings.partitions))
    assert client.zcard(keys.aggregators) == 0
