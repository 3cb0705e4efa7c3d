"""The same exception is reported alike by every integration: its class name without a module
path and its own message, so it makes one error pattern whichever queue library ran the job."""

from __future__ import annotations

import asyncio
import gc
import uuid
from typing import Any

import pytest
import redis
from celery.exceptions import Retry as CeleryRetry
from rq import Retry as RqRetry

from aggregator.errors import normalise
from aggregator.integrations import arq as jp_arq
from aggregator.integrations import celery as jp_celery
from aggregator.integrations import dramatiq as jp_dramatiq
from aggregator.integrations import rq as jp_rq
from aggregator.integrations.base import describe_error
from aggregator.settings import Settings
from tests import test_integration_arq as arq_test
from tests import test_integration_celery as celery_test
from tests import test_integration_dramatiq as dramatiq_test
from tests import test_integration_rq as rq_test
from tests.apps import rq_tasks
from tests.integration_harness import Counts, Stats, worker, worker_env

# what every queue below runs: two ValueError("boom <n>"), two ConnectionError("upstream refused")
PATTERNS = {("ValueError", "boom <n>"), ("ConnectionError", "upstream refused")}


def test_exceptions_and_traceback_lines_describe_alike() -> None:
    assert describe_error(ValueError("boom 1")) == describe_error("ValueError: boom 1") == ("boom 1", "ValueError")
    assert describe_error("rq.timeouts.JobTimeoutException: Task exceeded maximum timeout value (1 seconds)") == (
        "Task exceeded maximum timeout value (1 seconds)", "JobTimeoutException")
    assert describe_error(KeyError("missing")) == describe_error("KeyError: 'missing'") == ("'missing'", "KeyError")
    assert describe_error(ValueError()) == describe_error("ValueError") == ("ValueError", "ValueError")
    assert describe_error("mod.Err: a: b\nc") == ("a: b\nc", "Err")
    for ours in ("timed out after 0.5 s", "Retry requested", "cancelled", "job failed"):
        assert describe_error(ours) == (ours, None)  # our own words: the aggregator classifies them


def test_a_celery_retry_reports_the_exception_it_was_raised_for() -> None:
    exc = ConnectionError("upstream refused")
    assert jp_celery._original(CeleryRetry(exc=exc, when=0)) is exc
    assert jp_celery._original(CeleryRetry(exc="ValueError: boom", when=0)) == "ValueError: boom"
    assert describe_error(jp_celery._original(CeleryRetry(when=0))) == ("Retry in 0s", "Retry")


def _patterns(stats: Stats, queue: str) -> set[tuple[str, str]]:
    stats.aggregator.run(drain=True)
    body = stats.api.get("/api/stats/detailed", params={"queues": queue}).json()
    assert body["success"], body
    return {(p["error_type"], normalise(p["sample_message"])) for p in body["data"]["error_patterns"]}


def _counts(prefix: str, retried: str) -> dict[str, Counts]:
    return {prefix + "boom": {"dead": 2}, prefix + retried: {"failed": 2} if retried == "flaky" else {"dead": 2}}


@pytest.mark.slow
def test_the_same_exceptions_make_the_same_patterns_under_every_integration(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex[:8]
    cq, rq, dq, aq = f"celery-{tag}", f"rq-{tag}", f"dq-{tag}", f"arq-{tag}"
    with Stats(settings) as stats:
        env = worker_env(settings, JP_TEST_BROKER=celery_test.BROKER_DB, JP_TEST_BACKEND=celery_test.BROKER_DB,
                         JP_TEST_QUEUE=cq)
        tasks = celery_test._tasks_module(monkeypatch, env)
        with worker(celery_test._worker_cmd(cq), env):
            results: list[Any] = [tasks.boom.delay(i) for i in range(2)] + [tasks.flaky.delay()]
            for r in results:
                r.get(timeout=60, propagate=False)
            del results, r
            gc.collect()  # an AsyncResult collected at interpreter exit tries to unsubscribe from Redis
            jp_celery.emitter.flush()
            stats.wait_for({cq: _counts("tests.apps.celery_tasks.", "flaky")})

        jp_rq.configure(settings)
        q = jp_rq.JobpulseQueue(rq, connection=redis.Redis.from_url(rq_test.BROKER_DB))
        for i in range(2):
            q.enqueue(rq_tasks.boom, i)
        q.enqueue(rq_tasks.flaky, retry=RqRetry(max=3))
        jp_rq.emitter.flush()
        assert rq_test._burst_worker(rq, worker_env(settings, JP_TEST_BROKER=rq_test.BROKER_DB)) == 0

        env = worker_env(settings, JP_TEST_BROKER=dramatiq_test.BROKER_DB, JP_TEST_QUEUE=dq)
        actors = dramatiq_test._actors(monkeypatch, env)
        with worker(dramatiq_test._worker_cmd(), env):
            for i in range(2):
                actors.boom.send(i)
            actors.flaky.send(f"attempts:{dq}")
            jp_dramatiq.emitter.flush()
            stats.wait_for({dq: _counts("", "flaky")})

        jp_arq.emitter.configure(settings)
        asyncio.run(arq_test._enqueue(aq, [("boom", (0,)), ("boom", (1,)), ("refused", ()), ("refused", ())]))
        jp_arq.emitter.flush()
        assert arq_test._burst_worker(worker_env(settings, JP_TEST_BROKER=arq_test.BROKER_DB,
                                                 JP_TEST_QUEUE=aq)) == 0

        stats.wait_for({rq: _counts("tests.apps.rq_tasks.", "flaky"), aq: _counts("", "refused")}, timeout_s=30)
        for queue in (cq, rq, dq, aq):
            assert _patterns(stats, queue) == PATTERNS, queue
        stats.aggregator.run(drain=True)
        together = stats.api.get("/api/stats/detailed").json()["data"]["error_patterns"]
    assert sorted((p["error_type"], p["count"], p["affected_queues"]) for p in together) == [
        ("ConnectionError", 8, sorted([cq, rq, dq, aq])), ("ValueError", 8, sorted([cq, rq, dq, aq]))]
