"""Helpers the test modules share (test modules never import from each other or from conftest)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import fakeredis
import orjson
import redis

from aggregator.consumer import Aggregator
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
    """``jobpulse aggregate`` as a child process with the settings' Redis, prefix, P and lease.

    Reads and flushes are small (a flush holds at most four reads), so a fault lands at many points.
    """
    env = dict(os.environ, JOBPULSE_REDIS_URL=settings.redis_url or "", JOBPULSE_KEY_PREFIX=settings.key_prefix,
               JOBPULSE_PARTITIONS=str(settings.partitions), JOBPULSE_LEASE_TTL_MS=str(settings.lease_ttl_ms),
               JOBPULSE_BATCH_SIZE=str(batch_size), JOBPULSE_MAX_FLUSH_ENTRIES=str(4 * batch_size))
    return subprocess.Popen([sys.executable, "-m", "aggregator", "aggregate", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


_KINDS = {
    "unsigned integer": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "any": lambda v: True,
    "RFC 3339 date-time string": lambda v: isinstance(v, str) and "T" in v,
    "null": lambda v: v is None,
}


def check_shape(value: object, shape: object, named: dict[str, object], where: str = "body") -> None:
    """Assert ``value`` has ``shape``: a dict of fields, ``{"list_of": s}``, ``{"object_of": s}``, the name
    of a shape in ``named``, or kinds joined by " or " (keys starting with "_" are notes)."""
    if isinstance(shape, str) and shape in named:
        check_shape(value, named[shape], named, where)
    elif isinstance(shape, dict) and "list_of" in shape:
        assert isinstance(value, list), f"{where}: {value!r} is not a list"
        for i, item in enumerate(value):
            check_shape(item, shape["list_of"], named, f"{where}[{i}]")
    elif isinstance(shape, dict) and "object_of" in shape:
        if value is None and shape.get("_or_null"):
            return
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        assert set(shape.get("_keys", value)) <= set(value), f"{where}: keys {sorted(value)}"
        for key, item in value.items():
            check_shape(item, shape["object_of"], named, f"{where}.{key}")
    elif isinstance(shape, dict):
        assert isinstance(value, dict), f"{where}: {value!r} is not an object"
        for key, sub in shape.items():
            if not key.startswith("_"):
                assert key in value, f"{where}.{key} missing"
                check_shape(value[key], sub, named, f"{where}.{key}")
    else:
        assert isinstance(shape, str), f"{where}: bad shape {shape!r}"
        assert any(_KINDS[kind](value) for kind in shape.split(" or ")), f"{where}: {value!r} is not {shape}"


def drain_on_fakeredis(events: list[dict[str, object]], cfg: Settings,
                       client: fakeredis.FakeRedis | None = None) -> fakeredis.FakeRedis:
    """XADD ``events`` to a fakeredis (a fresh one unless given) and drain them with one aggregator."""
    client = client or fakeredis.FakeRedis(server=fakeredis.FakeServer())
    keys = Keys(cfg.key_prefix)
    client.hset(keys.meta, "partitions", cfg.partitions)
    for ev in events:
        body = {k: v for k, v in ev.items() if k != "_ts_ms"}
        client.xadd(keys.stream(partition_of(str(ev["queue_name"]), cfg.partitions)), {"event": orjson.dumps(body)})
    Aggregator(cfg, client).run(drain=True)
    return client
