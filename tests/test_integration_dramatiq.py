"""Dramatiq: a real `dramatiq` worker process on a Redis broker with the
jobpulse middleware; jobpulse's API must report exactly the outcomes it ran."""

from __future__ import annotations

import importlib
import sys
import uuid
from types import ModuleType

import pytest

from aggregator.integrations import dramatiq as jp_dramatiq
from aggregator.settings import Settings
from tests.integration_harness import Stats, expected_counts, unreachable_redis_url, worker, worker_env

BROKER_DB = "redis://127.0.0.1:6379/7"
EXPECTED = expected_counts()


def _actors(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> ModuleType:
    """The test's own import of the actors, as a producer."""
    for key in ("JP_TEST_BROKER", "JP_TEST_QUEUE", "JOBPULSE_REDIS_URL", "JOBPULSE_KEY_PREFIX"):
        monkeypatch.setenv(key, env[key])
    sys.modules.pop("tests.apps.dramatiq_tasks", None)
    return importlib.import_module("tests.apps.dramatiq_tasks")


def _worker_cmd() -> list[str]:
    return [sys.executable, "-m", "dramatiq", "tests.apps.dramatiq_tasks", "--processes", "1", "--threads", "2"]


@pytest.mark.slow
def test_worker_counts_match_the_messages_run(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    queue = "dq-" + uuid.uuid4().hex[:8]
    env = worker_env(settings, JP_TEST_BROKER=BROKER_DB, JP_TEST_QUEUE=queue)
    with Stats(settings) as stats:
        actors = _actors(monkeypatch, env)
        with worker(_worker_cmd(), env):
            for i in range(5):
                actors.ok.send(i)
            for i in range(2):
                actors.boom.send(i)
            actors.flaky.send(f"attempts:{queue}")
            actors.hopeless.send()
            actors.slow.send()
            jp_dramatiq.emitter.flush()
            got = stats.wait_for({queue: EXPECTED})
        assert got[queue] == EXPECTED
        stats.assert_latencies_reported(queue)
        assert stats.overview()["active_workers"] == 1


@pytest.mark.slow
def test_messages_succeed_when_stats_redis_is_unreachable(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    queue = "dq-" + uuid.uuid4().hex[:8]
    env = worker_env(settings, JP_TEST_BROKER=BROKER_DB, JP_TEST_QUEUE=queue,
                     JOBPULSE_REDIS_URL=unreachable_redis_url())
    actors = _actors(monkeypatch, env)
    results = actors.redis.Redis.from_url(BROKER_DB)
    key = f"attempts:{queue}"
    with worker(_worker_cmd(), env):
        actors.flaky.send(key)  # fails twice, then succeeds: three runs whatever the emitter does
        deadline = actors.time.monotonic() + 60
        while int(results.get(key) or 0) < 3 and actors.time.monotonic() < deadline:
            actors.time.sleep(0.1)
    assert int(results.get(key) or 0) == 3
