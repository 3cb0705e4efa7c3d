"""Fixtures: a real Redis and a clean key namespace per test; each test marked with its group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import redis

from aggregator.embedded import free_port
from aggregator.settings import Settings
from tests.groups import group_of
from tests.helpers import REDIS_URL


@pytest.hookimpl(tryfirst=True)  # before ``-m`` selects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test ``unit``, ``integration`` or ``system`` (see tests/groups.py)."""
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if isinstance(item, pytest.Function) else ""
        function = item.originalname if isinstance(item, pytest.Function) else item.name
        item.add_marker(group_of(module, function, list(getattr(item, "fixturenames", ()))))


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The real Redis the suite runs against; CI fails rather than skip without it."""
    try:
        redis.Redis.from_url(REDIS_URL).ping()
    except redis.ConnectionError:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a real Redis at {REDIS_URL}")
        pytest.skip(f"no Redis at {REDIS_URL}")
    return REDIS_URL


@pytest.fixture
def settings(redis_url: str) -> Iterator[Settings]:
    """Settings with a key prefix no other test uses; its keys are deleted afterwards."""
    prefix = "t" + uuid.uuid4().hex[:10]
    yield Settings(redis_url=redis_url, key_prefix=prefix, partitions=4, lease_ttl_ms=1000)
    client = redis.Redis.from_url(redis_url)
    for pattern in (f"{prefix}:*", f"{{{prefix}:*"):
        keys = list(client.scan_iter(match=pattern, count=1000))
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])


@pytest.fixture
def client(settings: Settings) -> redis.Redis:
    """A client of the test Redis."""
    return redis.Redis.from_url(settings.redis_url or "")


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    """`jobpulse serve --demo` as a user runs it (embedded store), on a free port; its base URL."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPULSE_")}
    proc = subprocess.Popen([sys.executable, "-m", "aggregator", "serve", "--demo", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if httpx.get(base + "/api/stats/overview", timeout=2).json()["data"]["completed_jobs"] > 0:
                break
        except (httpx.TransportError, KeyError, TypeError):
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "serve --demo did not come up"
        time.sleep(0.2)
    try:
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=15)
