"""Any start order loses nothing: producers and workers that run and exit before any aggregator
has ever run on a fresh key prefix store P themselves; the aggregator started afterwards folds
every event. An emitter that cannot reach Redis at exit says how many events it leaves behind."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import redis
from fastapi.testclient import TestClient

from aggregator.connection import RedisTarget
from aggregator.keys import Keys
from aggregator.settings import Settings
from api.main import create_app
from tests.integration_harness import unreachable_redis_url, worker, worker_env

BROKER_DB = "redis://127.0.0.1:6379/6"

PRODUCER = """
import sys
from redis import Redis
from aggregator.integrations.rq import JobpulseQueue
from tests.apps import rq_tasks
q = JobpulseQueue(sys.argv[1], connection=Redis.from_url(sys.argv[2]))
for i in range(int(sys.argv[3])):
    q.enqueue(rq_tasks.ok, i)
"""

EMITTER = """
import sys
from aggregator import Emitter, Settings
emitter = Emitter(Settings(), worker_id="early-bird", concurrency=1)
for i in range(int(sys.argv[1])):
    emitter.enqueued(f"j{i}", sys.argv[2])
    emitter.started(f"j{i}", sys.argv[2], wait_time_ms=3)
    emitter.completed(f"j{i}", sys.argv[2], processing_time_ms=5)
emitter.close(timeout_s=float(sys.argv[3]))
"""


PRODUCER_AT_EXIT = """
from aggregator.integrations.base import ProcessEmitter
emitter = ProcessEmitter()  # what every integration uses; closed by atexit
for i in range(9):
    emitter.get().enqueued(f"j{i}", "q")
"""


def _run(code: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def _drain_then_read(settings: Settings, queue: str) -> dict[str, int]:
    """`jobpulse aggregate --drain` (the first aggregator ever on this prefix), then the API's job counts."""
    drained = subprocess.run([sys.executable, "-m", "aggregator", "aggregate", "--drain"],
                             env=worker_env(settings, JOBPULSE_PARTITIONS=str(settings.partitions)),
                             capture_output=True, text=True, timeout=120)
    assert drained.returncode == 0, drained.stderr
    with TestClient(create_app(settings, RedisTarget(settings.redis_url))) as api:
        body = api.get("/api/stats/detailed", params={"queues": queue}).json()
    assert body["success"], body
    (stats,) = body["data"]["queue_stats"]
    return {k: stats[k] for k in ("enqueued_total", "completed_total", "failed_total", "dead_total")}


def _no_aggregator_yet(settings: Settings) -> None:
    assert not redis.Redis.from_url(settings.redis_url or "").exists(Keys(settings.key_prefix).aggregators)


@pytest.mark.slow
def test_rq_producer_and_worker_before_any_aggregator_lose_nothing(settings: Settings) -> None:
    queue = "rq-early-" + uuid.uuid4().hex[:8]
    env = worker_env(settings, JP_TEST_BROKER=BROKER_DB, JOBPULSE_PARTITIONS=str(settings.partitions))
    _run(PRODUCER, env, queue, BROKER_DB, "30")  # stores P: the first component on this prefix
    # the worker is configured with another P: it uses the stored one, as every component does
    cmd = [sys.executable, "-m", "rq.cli", "worker", "--burst", "-w", "aggregator.integrations.rq.JobpulseWorker",
           "--url", BROKER_DB, queue]
    with worker(cmd, {**env, "JOBPULSE_PARTITIONS": str(settings.partitions * 2)}) as proc:
        assert proc.wait(timeout=120) == 0
    _no_aggregator_yet(settings)
    got = _drain_then_read(settings, queue)
    assert got == {"enqueued_total": 30, "completed_total": 30, "failed_total": 0, "dead_total": 0}


def test_plain_emitter_before_any_aggregator_loses_nothing(settings: Settings) -> None:
    queue = "early-" + uuid.uuid4().hex[:8]
    done = _run(EMITTER, worker_env(settings, JOBPULSE_PARTITIONS=str(settings.partitions)), "40", queue, "10")
    assert "Redis has not taken" not in done.stderr
    _no_aggregator_yet(settings)
    meta = redis.Redis.from_url(settings.redis_url or "").hgetall(Keys(settings.key_prefix).meta)
    assert meta[b"partitions"] == str(settings.partitions).encode()
    got = _drain_then_read(settings, queue)
    assert got == {"enqueued_total": 40, "completed_total": 40, "failed_total": 0, "dead_total": 0}


def test_an_emitter_that_cannot_reach_redis_at_exit_reports_its_count(settings: Settings) -> None:
    unreachable = settings.model_copy(update={"redis_url": unreachable_redis_url()})
    done = _run(EMITTER, worker_env(unreachable), "7", "q", "0.3")
    assert "closing with 21 events Redis has not taken; they are lost" in done.stderr, done.stderr
    # an integration's producer that simply exits says it too (its emitter is closed at interpreter exit)
    done = _run(PRODUCER_AT_EXIT, worker_env(unreachable))
    assert "closing with 9 events Redis has not taken; they are lost" in done.stderr, done.stderr
