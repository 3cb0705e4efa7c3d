"""Helpers the test modules share (test modules never import from each other or from conftest)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from aggregator.keys import Keys, partition_of
from aggregator.settings import Settings
from tests.workload import Expected

REDIS_URL = os.environ.get("JOBPULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def assert_exact(client: redis.Redis, settings: Settings, expected: Expected) -> None:
    """Every queue's lifetime counters and gauges equal the workload's."""
    keys, p_count = Keys(settings.key_prefix), settings.partitions
    queues = {q for q, _ in expected.counts}
    for q in sorted(queues):
        p = partition_of(q, p_count)
        totals = {k.decode(): int(v) for k, v in client.hgetall(keys.totals(p, q)).items() if k.startswith(b"n:")}
        want = {f"n:{kind}": n for (qq, kind), n in expected.counts.items() if qq == q}
        assert totals == want, q
        assert client.zcard(keys.pending(p, q)) == expected.gauge(q, "P"), q
        assert client.zcard(keys.running(p, q)) == expected.gauge(q, "R"), q


def spawn_aggregator(settings: Settings, *args: str, batch_size: int = 300) -> subprocess.Popen[bytes]:
    """``jobpulse aggregate`` as a child process with the settings' Redis, prefix, P and lease."""
    env = dict(os.environ, JOBPULSE_REDIS_URL=settings.redis_url or "", JOBPULSE_KEY_PREFIX=settings.key_prefix,
               JOBPULSE_PARTITIONS=str(settings.partitions), JOBPULSE_LEASE_TTL_MS=str(settings.lease_ttl_ms),
               JOBPULSE_BATCH_SIZE=str(batch_size))
    return subprocess.Popen([sys.executable, "-m", "aggregator", "aggregate", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
