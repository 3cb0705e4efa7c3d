"""Fixtures: a real Redis and a clean key namespace per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from aggregator.settings import Settings

REDIS_URL = os.environ.get("JOBPULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
SHARED = Path(__file__).resolve().parents[2] / "shared"


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
