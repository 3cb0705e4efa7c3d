"""What the integration tests share: worker subprocesses that report to a
test's key prefix, and reading back what jobpulse's API says per job type."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import redis
from fastapi.testclient import TestClient

from aggregator.connection import RedisTarget
from aggregator.consumer import Aggregator
from aggregator.embedded import free_port
from aggregator.keys import Keys
from aggregator.settings import Settings
from api.main import create_app

ROOT = Path(__file__).resolve().parents[1]
OUTCOMES = ("completed", "failed", "timed_out", "dead")
Counts = dict[str, dict[str, int]]


def expected_counts(job_type_prefix: str = "") -> Counts:
    """What every integration test runs, per job type: 5 successes, 2 failures not retried, one job
    failing twice then succeeding, one retried once then failing for good, one timing out."""
    p = job_type_prefix
    return {
        p + "ok": {"enqueued": 5, "started": 5, "completed": 5},
        p + "boom": {"enqueued": 2, "started": 2, "dead": 2},
        p + "flaky": {"enqueued": 1, "started": 3, "failed": 2, "retried": 2, "completed": 1},
        p + "hopeless": {"enqueued": 1, "started": 2, "failed": 1, "retried": 1, "dead": 1},
        p + "slow": {"enqueued": 1, "started": 1, "timed_out": 1},
    }


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a worker process reporting to ``settings``' Redis and prefix."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPULSE_")}
    env.update(JOBPULSE_REDIS_URL=settings.redis_url or "", JOBPULSE_KEY_PREFIX=settings.key_prefix,
               JOBPULSE_EMIT_FLUSH_INTERVAL_MS="20", PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def unreachable_redis_url() -> str:
    """A Redis URL nothing listens on."""
    return f"redis://127.0.0.1:{free_port()}/0"


@contextmanager
def worker(cmd: Sequence[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker process for the duration of the block; its log is shown if the test fails."""
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"jp-worker-{os.getpid()}-{time.monotonic_ns()}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(list(cmd), env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait()
        print(log_path.read_text(errors="replace")[-4000:])
        log_path.unlink(missing_ok=True)


def started_attempts(settings: Settings, job_type: str) -> list[int]:
    """The ``attempt`` of every ``started`` event of ``job_type`` still in the streams (read before a drain)."""
    client = redis.Redis.from_url(settings.redis_url or "")
    keys = Keys(settings.key_prefix)
    attempts = []
    for p in range(settings.partitions):
        for _, fields in client.xrange(keys.stream(p)):
            event = orjson.loads(fields.get(b"event", b"{}"))
            if event.get("event_type") == "started" and event.get("job_type") == job_type:
                attempts.append(event.get("attempt"))
    return sorted(attempts)


class Stats:
    """The aggregator (drained on demand) and the API over one test's prefix."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.aggregator = Aggregator(settings, redis.Redis.from_url(settings.redis_url or ""))
        self.api = TestClient(create_app(settings, RedisTarget(settings.redis_url)))

    def __enter__(self) -> Stats:
        self.api.__enter__()  # runs the app's lifespan (its Redis clients)
        return self

    def __exit__(self, *exc: object) -> None:
        self.api.__exit__(*exc)
        # this process's emitters (producers) would heartbeat on into the test's prefix after its cleanup
        for name in ("celery", "rq", "dramatiq", "arq"):
            module = sys.modules.get(f"aggregator.integrations.{name}")
            if module is not None:
                module.emitter.configure(None)

    def queue_stats(self, queue: str) -> dict[str, Any]:
        """``queue``'s entry of /api/stats/detailed (empty if the queue is unknown)."""
        self.aggregator.run(drain=True)
        body = self.api.get("/api/stats/detailed", params={"queues": queue}).json()
        assert body["success"], body
        stats: list[dict[str, Any]] = body["data"]["queue_stats"]
        return stats[0] if stats else {}

    def job_types(self, queue: str) -> Counts:
        """Lifetime event counts per job type of ``queue``, as the API reports them."""
        counts: Counts = self.queue_stats(queue).get("job_types", {})
        return counts

    def assert_latencies_reported(self, queue: str) -> None:
        """Processing and wait times arrived: the window's percentiles are numbers."""
        stats = self.queue_stats(queue)
        assert stats["processing_time_ms"]["p50"] is not None, stats
        assert stats["wait_time_ms"]["p50"] is not None, stats

    def wait_for(self, expected: dict[str, Counts], timeout_s: float = 90) -> dict[str, Counts]:
        """Poll until every queue has at least the expected outcomes, then read once more."""
        want = {q: sum(n.get(o, 0) for n in c.values() for o in OUTCOMES) for q, c in expected.items()}
        deadline = time.monotonic() + timeout_s
        while True:
            got = {q: self.job_types(q) for q in expected}
            have = {q: sum(n.get(o, 0) for n in c.values() for o in OUTCOMES) for q, c in got.items()}
            if all(have[q] >= want[q] for q in want) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        time.sleep(0.5)  # anything extra the workers would wrongly send arrives now
        return {q: self.job_types(q) for q in expected}

    def overview(self) -> dict[str, Any]:
        """/api/stats/overview's data."""
        self.aggregator.run(drain=True)
        data: dict[str, Any] = self.api.get("/api/stats/overview").json()["data"]
        return data
