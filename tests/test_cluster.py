"""Redis Cluster: P = 16 on a real 3-master cluster with 3 aggregator processes
(one killed mid-run and replaced) gives exactly the single-node numbers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from aggregator.connection import RedisTarget
from aggregator.consumer import Aggregator
from aggregator.emitter import Emitter
from aggregator.keys import Keys
from aggregator.settings import Settings
from api.main import create_app
from tests.helpers import assert_exact
from tests.redis_cluster import available, redis_cluster
from tests.workload import build, publish

P = 16
# numbers that depend on the moment of the request or on the process, not on the events
VOLATILE = {"timestamp", "uptime_seconds", "last_updated", "aggregator_lag_seconds", "performance_metrics",
            "window_seconds", "oldest_pending_age_seconds"}


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    """A 3-master Redis Cluster started for this module."""
    if not available():
        if os.environ.get("CI"):
            pytest.fail("CI needs redis-server and redis-cli for the cluster tests")
        pytest.skip("redis-server / redis-cli not installed")
    with redis_cluster(3) as url:
        yield url


def _spawn(url: str, prefix: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, JOBPULSE_REDIS_URL=url, JOBPULSE_KEY_PREFIX=prefix, JOBPULSE_PARTITIONS=str(P),
               JOBPULSE_LEASE_TTL_MS="1000", JOBPULSE_BATCH_SIZE="500")
    return subprocess.Popen([sys.executable, "-m", "aggregator", "aggregate"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _consumed(client: redis.Redis, keys: Keys) -> int:
    pipe = client.pipeline(transaction=False)
    for p in range(P):
        pipe.hget(keys.watermark(p), "consumed")
    return sum(int(v or 0) for v in pipe.execute())


def _wait_consumed(client: redis.Redis, keys: Keys, n: int, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    while _consumed(client, keys) < n:
        for proc in procs:
            assert proc.poll() is None, proc.stderr.read().decode()[-3000:] if proc.stderr else "exited"
        assert time.monotonic() < deadline, f"consumed {_consumed(client, keys)} of {n}"
        time.sleep(0.05)


def _owners(client: redis.Redis, keys: Keys) -> set[str]:
    """The aggregator processes holding a partition's lease now."""
    leases = [client.get(keys.lease(p)) for p in range(P)]
    return {lease.decode().rsplit(":", 1)[0] for lease in leases if lease}


def _stable(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: _stable(v) for k, v in body.items() if k not in VOLATILE}
    if isinstance(body, list):
        return [_stable(v) for v in body]
    return body


def _api_view(settings: Settings, now_s: float) -> dict[str, Any]:
    # one clock for both views: the bucket holding "now" is divided by its elapsed part
    with TestClient(create_app(settings, clock=lambda: now_s)) as api:
        return {route: _stable(api.get(route).json()["data"])
                for route in ("/api/stats/overview", "/api/stats/detailed", "/api/stats/trends?granularity=minute")}


@pytest.mark.slow
def test_cluster_with_three_aggregators_equals_single_node(
    cluster_url: str, settings: Settings, client: redis.Redis
) -> None:
    t0_ms = int(time.time() * 1000) - 1_800_000
    events, expected = build(20_000, 12, seed=11, t0_ms=t0_ms)
    half = len(events) // 2

    single = settings.model_copy(update={"partitions": P})
    publish(client, Keys(single.key_prefix), P, events)
    Aggregator(single, client).run(drain=True)

    on_cluster = single.model_copy(update={"redis_url": cluster_url, "key_prefix": "c" + uuid.uuid4().hex[:8]})
    cluster = RedisTarget(cluster_url).sync()
    keys = Keys(on_cluster.key_prefix)
    cluster.hset(keys.meta, mapping={"partitions": P, "version": "1"})
    procs = [_spawn(cluster_url, on_cluster.key_prefix) for _ in range(3)]
    try:
        publish(cluster, keys, P, events[:half])
        _wait_consumed(cluster, keys, half // 3, procs)
        procs[0].send_signal(signal.SIGKILL)  # mid-run: its partitions must move, nothing twice
        procs[0].wait()
        procs.append(_spawn(cluster_url, on_cluster.key_prefix))
        publish(cluster, keys, P, events[half:])
        _wait_consumed(cluster, keys, len(events), procs[1:])
        # The partitions are shared: right after a kill (or a starved process's leases running out, on a
        # loaded machine) one process may hold them all for a moment, until the next renewals rebalance.
        deadline = time.monotonic() + 10
        while len(_owners(cluster, keys)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(_owners(cluster, keys)) >= 2
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)

    assert_exact(cluster, on_cluster, expected)
    now_s = time.time()
    view = _api_view(single, now_s)
    assert view["/api/stats/overview"]["total_jobs"] > 0 and len(view["/api/stats/detailed"]["queue_stats"]) == 12
    assert _api_view(on_cluster, now_s) == view


@pytest.mark.slow
def test_emitter_and_api_work_through_the_cluster_client(cluster_url: str) -> None:
    settings = Settings(redis_url=cluster_url, key_prefix="e" + uuid.uuid4().hex[:8], partitions=P)
    client = RedisTarget(cluster_url).sync()
    aggregator = Aggregator(settings, client)  # stores P in the meta key for the emitter
    with Emitter(settings, worker_id="cluster-worker", concurrency=2) as emitter:
        for i in range(300):
            emitter.enqueued(f"j{i}", f"q{i % 7}")
            emitter.started(f"j{i}", f"q{i % 7}", wait_time_ms=5)
            emitter.completed(f"j{i}", f"q{i % 7}", processing_time_ms=20)
    aggregator.run(drain=True)
    with TestClient(create_app(settings)) as api:
        overview = api.get("/api/stats/overview").json()["data"]
        assert overview["total_jobs"] == overview["completed_jobs"] == 300
        assert overview["total_queues"] == 7 and overview["running_jobs"] == overview["pending_jobs"] == 0
        assert api.get("/api/stats/health").json()["data"]["database_healthy"] is True
        assert api.get("/ready").status_code == 200
