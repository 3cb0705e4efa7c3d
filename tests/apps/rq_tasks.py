"""Job functions for the RQ test; attempts are counted in Redis so a job can fail a known number of times."""

from __future__ import annotations

import os
import time

import redis
from rq import get_current_job


def ok(x: int) -> int:
    """Succeeds."""
    return x * 2


def boom(n: int) -> None:
    """Fails."""
    raise ValueError(f"boom {n}")


def flaky() -> str:
    """Fails on its first two attempts."""
    job = get_current_job()
    assert job is not None
    if redis.Redis.from_url(os.environ["JP_TEST_BROKER"]).incr(f"attempts:{job.id}") <= 2:
        raise ConnectionError("upstream refused")
    return "done"


def hopeless() -> None:
    """Always fails."""
    raise KeyError("missing")


def slow() -> None:
    """Runs past its job_timeout."""
    time.sleep(5)
