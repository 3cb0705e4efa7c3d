"""arq: a real `arq` worker (burst mode) running instrumented functions;
jobpulse's API must report exactly the outcomes it ran."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

import pytest
from arq.connections import RedisSettings, create_pool

from aggregator.integrations import arq as jp_arq
from aggregator.settings import Settings
from tests.integration_harness import (
    Stats,
    expected_counts,
    started_attempts,
    unreachable_redis_url,
    worker,
    worker_env,
)

BROKER_DB = "redis://127.0.0.1:6379/8"
EXPECTED = expected_counts()


async def _enqueue(queue: str, calls: list[tuple[str, tuple[Any, ...]]]) -> list[str]:
    pool = jp_arq.instrument_pool(await create_pool(RedisSettings.from_dsn(BROKER_DB), default_queue_name=queue))
    try:
        jobs = [await pool.enqueue_job(name, *args) for name, args in calls]
        return [j.job_id for j in jobs if j is not None]
    finally:
        await pool.aclose()


async def _results(job_ids: list[str]) -> list[Any]:
    from arq.jobs import Job

    pool = await create_pool(RedisSettings.from_dsn(BROKER_DB))
    try:
        return [(await Job(j, pool).result_info()).result for j in job_ids]  # type: ignore[union-attr]
    finally:
        await pool.aclose()


def _burst_worker(env: dict[str, str]) -> int:
    with worker([sys.executable, "-m", "arq", "--burst", "tests.apps.arq_tasks.WorkerSettings"], env) as proc:
        return proc.wait(timeout=120)


@pytest.mark.slow
def test_worker_counts_match_the_jobs_run(settings: Settings) -> None:
    queue = "arq-" + uuid.uuid4().hex[:8]
    jp_arq.emitter.configure(settings)
    with Stats(settings) as stats:
        calls = [("ok", (i,)) for i in range(5)] + [("boom", (i,)) for i in range(2)]
        calls += [("flaky", ()), ("hopeless", ()), ("slow", ())]
        asyncio.run(_enqueue(queue, calls))
        jp_arq.emitter.flush()
        assert _burst_worker(worker_env(settings, JP_TEST_BROKER=BROKER_DB, JP_TEST_QUEUE=queue)) == 0
        assert started_attempts(settings, "flaky") == [1, 2, 3]  # read before the aggregator trims
        got = stats.wait_for({queue: EXPECTED}, timeout_s=30)
        assert got[queue] == EXPECTED
        stats.assert_latencies_reported(queue)
        assert stats.overview()["active_workers"] == 1


@pytest.mark.slow
def test_jobs_succeed_when_stats_redis_is_unreachable(settings: Settings) -> None:
    queue = "arq-" + uuid.uuid4().hex[:8]
    jp_arq.emitter.configure(settings.model_copy(update={"redis_url": unreachable_redis_url()}))
    job_ids = asyncio.run(_enqueue(queue, [("ok", (i,)) for i in range(3)]))
    env = worker_env(settings, JP_TEST_BROKER=BROKER_DB, JP_TEST_QUEUE=queue,
                     JOBPULSE_REDIS_URL=unreachable_redis_url())
    assert _burst_worker(env) == 0
    assert asyncio.run(_results(job_ids)) == [0, 2, 4]
