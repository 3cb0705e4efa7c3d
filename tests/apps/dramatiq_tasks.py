"""Dramatiq actors as a user writes them, plus the two jobpulse lines; the tests run a real worker of them."""

from __future__ import annotations

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

from aggregator.integrations.dramatiq import install

BROKER = os.environ["JP_TEST_BROKER"]
QUEUE = os.environ["JP_TEST_QUEUE"]
broker = RedisBroker(url=BROKER, namespace=f"dramatiq-{QUEUE}")
install(broker)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name=QUEUE)
def ok(x: int) -> None:
    """Succeeds."""


@dramatiq.actor(queue_name=QUEUE, max_retries=0)
def boom(n: int) -> None:
    """Fails; not retried."""
    raise ValueError(f"boom {n}")


@dramatiq.actor(queue_name=QUEUE, max_retries=3, min_backoff=10, max_backoff=50)
def flaky(key: str) -> None:
    """Fails on its first two attempts."""
    if redis.Redis.from_url(BROKER).incr(key) <= 2:
        raise ConnectionError("upstream refused")


@dramatiq.actor(queue_name=QUEUE, max_retries=1, min_backoff=10, max_backoff=50)
def hopeless() -> None:
    """Always fails."""
    raise KeyError("missing")


@dramatiq.actor(queue_name=QUEUE, max_retries=0, time_limit=300)
def slow() -> None:
    """Runs past its time limit."""
    for _ in range(50):  # TimeLimit interrupts between bytecodes, so sleep in slices
        time.sleep(0.1)
