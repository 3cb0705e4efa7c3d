"""arq functions and WorkerSettings as a user writes them, plus the two jobpulse lines."""

from __future__ import annotations

import asyncio
import os
from typing import Any, ClassVar

from arq import Retry
from arq.connections import RedisSettings
from arq.worker import func

from aggregator.integrations.arq import instrument


async def ok(ctx: dict[str, Any], x: int) -> int:
    """Succeeds."""
    return x * 2


async def boom(ctx: dict[str, Any], n: int) -> None:
    """Fails; arq does not retry exceptions."""
    raise ValueError(f"boom {n}")


async def refused(ctx: dict[str, Any]) -> None:
    """Fails with the exception the other queues' flaky jobs raise; arq does not retry it."""
    raise ConnectionError("upstream refused")


async def flaky(ctx: dict[str, Any]) -> str:
    """Asks for a retry on its first two tries."""
    if ctx["job_try"] <= 2:
        raise Retry(defer=0.01)
    return "done"


async def hopeless(ctx: dict[str, Any]) -> None:
    """Asks for a retry every time; its max_tries is 2."""
    raise Retry(defer=0.01)


async def slow(ctx: dict[str, Any]) -> None:
    """Runs past its timeout."""
    await asyncio.sleep(5)


class WorkerSettings:
    """What `arq tests.apps.arq_tasks.WorkerSettings` runs."""

    functions: ClassVar = [ok, boom, refused, flaky, func(hopeless, max_tries=2), func(slow, timeout=0.5)]
    redis_settings = RedisSettings.from_dsn(os.environ.get("JP_TEST_BROKER", "redis://127.0.0.1:6379/8"))
    queue_name = os.environ.get("JP_TEST_QUEUE", "arq:queue")
    max_jobs = 4


instrument(WorkerSettings)
