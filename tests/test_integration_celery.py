"""Celery: a real worker (prefork pool) on a Redis broker, and on RabbitMQ when
it is up; jobpulse's API must report exactly the task outcomes it ran."""

from __future__ import annotations

import gc
import importlib
import socket
import sys
import uuid
from collections.abc import Iterator
from types import ModuleType

import pytest

from aggregator.integrations import celery as jp_celery
from aggregator.settings import Settings
from tests.integration_harness import Stats, expected_counts, unreachable_redis_url, worker, worker_env

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
BROKER_DB = "redis://127.0.0.1:6379/5"


def _rabbitmq_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5672), timeout=1).close()
    except OSError:
        return False
    return True


def _tasks_module(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> ModuleType:
    """The test's own import of the app, as a producer: the same two lines publish ``enqueued``."""
    for key in ("JP_TEST_BROKER", "JP_TEST_BACKEND", "JP_TEST_QUEUE", "JOBPULSE_REDIS_URL", "JOBPULSE_KEY_PREFIX"):
        monkeypatch.setenv(key, env[key])
    sys.modules.pop("tests.apps.celery_tasks", None)
    return importlib.import_module("tests.apps.celery_tasks")


@pytest.fixture
def celery_env(redis_url: str, settings: Settings) -> Iterator[dict[str, str]]:
    """Worker env with this test's queue and jobpulse prefix."""
    queue = "celery-" + uuid.uuid4().hex[:8]
    yield worker_env(settings, JP_TEST_BROKER=BROKER_DB, JP_TEST_BACKEND=BROKER_DB, JP_TEST_QUEUE=queue)


def _worker_cmd(queue: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "tests.apps.celery_tasks", "worker", "--pool=prefork", "-c", "2",
            "-Q", f"{queue},{queue}-mail", "--without-heartbeat", "--without-gossip", "--without-mingle",
            "-l", "warning"]


@pytest.mark.slow
@pytest.mark.parametrize("broker", ["redis", "rabbitmq"])
def test_worker_counts_match_the_tasks_run(
    broker: str, celery_env: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    if broker == "rabbitmq":
        if not _rabbitmq_up():
            pytest.skip("RabbitMQ is not running on 127.0.0.1:5672")
        celery_env["JP_TEST_BROKER"] = RABBITMQ_URL
    queue = celery_env["JP_TEST_QUEUE"]
    with Stats(settings) as stats:  # the aggregator sets P in Redis before anything is emitted
        tasks = _tasks_module(monkeypatch, celery_env)
        with worker(_worker_cmd(queue), celery_env):
            results = [tasks.ok.delay(i) for i in range(5)]
            results += [tasks.ok.apply_async((i,), queue=f"{queue}-mail") for i in range(3)]
            results += [tasks.boom.delay(i) for i in range(2)]
            results += [tasks.flaky.delay(), tasks.hopeless.delay(), tasks.slow.delay()]
            for r in results:
                r.get(timeout=60, propagate=False)
            del results, r
            gc.collect()  # an AsyncResult collected at interpreter exit tries to unsubscribe from Redis
            jp_celery.emitter.flush()
            p = "tests.apps.celery_tasks."
            got = stats.wait_for({queue: expected_counts(p), f"{queue}-mail": {}})
        assert got[queue] == expected_counts(p)
        stats.assert_latencies_reported(queue)
        assert got[f"{queue}-mail"] == {p + "ok": {"enqueued": 3, "started": 3, "completed": 3}}
        overview = stats.overview()
        assert overview["completed_jobs"] == 5 + 3 + 1
        assert overview["dead_jobs"] == 3
        assert overview["active_workers"] >= 1  # pool processes that ran a task heartbeat as workers


@pytest.mark.slow
def test_tasks_succeed_when_stats_redis_is_unreachable(
    celery_env: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    celery_env["JOBPULSE_REDIS_URL"] = unreachable_redis_url()
    tasks = _tasks_module(monkeypatch, celery_env)
    with worker(_worker_cmd(celery_env["JP_TEST_QUEUE"]), celery_env):
        assert [tasks.ok.delay(i).get(timeout=60) for i in range(3)] == [0, 2, 4]
        with pytest.raises(ValueError, match="boom 7"):
            tasks.boom.delay(7).get(timeout=60)
