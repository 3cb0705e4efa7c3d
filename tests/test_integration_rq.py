"""RQ: a real `rq worker` (forking a work horse per job) with the jobpulse
Worker class; jobpulse's API must report exactly the outcomes it ran."""

from __future__ import annotations

import sys
import uuid

import pytest
import redis
from rq import Retry

from aggregator.integrations import rq as jp_rq
from aggregator.settings import Settings
from tests.apps import rq_tasks
from tests.integration_harness import (
    Stats,
    expected_counts,
    started_attempts,
    unreachable_redis_url,
    worker,
    worker_env,
)

BROKER_DB = "redis://127.0.0.1:6379/6"
P = "tests.apps.rq_tasks."
EXPECTED = expected_counts(P)


def _burst_worker(queue: str, env: dict[str, str]) -> int:
    """Run ``rq worker --burst`` until the queue is empty; its exit code."""
    cmd = [sys.executable, "-m", "rq.cli", "worker", "--burst", "-w", "aggregator.integrations.rq.JobpulseWorker",
           "--url", BROKER_DB, queue]
    with worker(cmd, env) as proc:
        return proc.wait(timeout=120)


@pytest.mark.slow
def test_worker_counts_match_the_jobs_run(settings: Settings) -> None:
    queue = "rq-" + uuid.uuid4().hex[:8]
    jp_rq.configure(settings)
    with Stats(settings) as stats:
        q = jp_rq.JobpulseQueue(queue, connection=redis.Redis.from_url(BROKER_DB))
        for i in range(5):
            q.enqueue(rq_tasks.ok, i)
        for i in range(2):
            q.enqueue(rq_tasks.boom, i)
        q.enqueue(rq_tasks.flaky, retry=Retry(max=3))
        q.enqueue(rq_tasks.hopeless, retry=Retry(max=1))
        q.enqueue(rq_tasks.slow, job_timeout=1)
        jp_rq.emitter.flush()
        assert _burst_worker(queue, worker_env(settings, JP_TEST_BROKER=BROKER_DB)) == 0
        assert started_attempts(settings, P + "flaky") == [1, 2, 3]  # read before the aggregator trims
        got = stats.wait_for({queue: EXPECTED}, timeout_s=30)
        assert got[queue] == EXPECTED
        stats.assert_latencies_reported(queue)
        assert stats.overview()["active_workers"] == 1  # every work horse heartbeats as its RQ worker


@pytest.mark.slow
def test_jobs_succeed_when_stats_redis_is_unreachable(settings: Settings) -> None:
    queue = "rq-" + uuid.uuid4().hex[:8]
    broken = settings.model_copy(update={"redis_url": unreachable_redis_url()})
    jp_rq.configure(broken)
    q = jp_rq.JobpulseQueue(queue, connection=redis.Redis.from_url(BROKER_DB))
    jobs = [q.enqueue(rq_tasks.ok, i) for i in range(3)]
    env = worker_env(broken, JP_TEST_BROKER=BROKER_DB)
    assert _burst_worker(queue, env) == 0
    assert [j.latest_result().return_value for j in jobs] == [0, 2, 4]  # type: ignore[union-attr]
