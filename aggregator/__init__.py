"""jobpulse's worker-side surface: what a worker (or a tool writing the wire format) imports.

    from aggregator import Emitter, Settings

    emitter = Emitter(Settings(), worker_id="worker-1", concurrency=8)
    emitter.started(job_id, "email", wait_time_ms=120)
    emitter.completed(job_id, "email", processing_time_ms=85)
    emitter.close()

Everything here needs only the light install (``pip install jobpulse``); the
names are imported on first use, so ``import aggregator`` itself costs nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aggregator.async_emitter import AsyncEmitter
    from aggregator.connection import ConfigError, RedisTarget
    from aggregator.emitter import Emitter
    from aggregator.keys import partition_of
    from aggregator.settings import Settings

__all__ = ["AsyncEmitter", "ConfigError", "Emitter", "RedisTarget", "Settings", "partition_of"]

_HOME = {
    "AsyncEmitter": "aggregator.async_emitter",
    "ConfigError": "aggregator.connection",
    "Emitter": "aggregator.emitter",
    "RedisTarget": "aggregator.connection",
    "Settings": "aggregator.settings",
    "partition_of": "aggregator.keys",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its module on first use."""
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'aggregator' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
