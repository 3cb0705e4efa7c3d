"""What the app holds between requests, typed: routes reach it through :mod:`api.deps`."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import redis
import redis.asyncio

from aggregator.connection import store_partitions_async
from aggregator.keys import Keys
from aggregator.settings import Settings


class PartitionCount:
    """P as stored in the meta key (stored by this API if it is the first component to start);
    the setting while Redis cannot be read."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, fallback: int) -> None:
        self.client, self.keys, self.fallback = client, keys, fallback
        self.known: int | None = None

    async def __call__(self) -> int:
        if self.known is None:
            try:
                self.known = await self._stored()
            except (redis.RedisError, OSError):
                return self.fallback
        return self.known if self.known is not None else self.fallback

    async def _stored(self) -> int | None:
        try:
            return await store_partitions_async(self.client, self.keys, self.fallback)
        except redis.exceptions.NoPermissionError:  # the read-only ACL user: read what another stored
            raw = await self.client.hget(self.keys.meta, "partitions")  # type: ignore[misc]  # redis-py 5 stubs
            return None if raw is None else int(raw)


class StreamSlots:
    """How many live streams there are, bounded so clients cannot exhaust the API."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.open = 0

    def take(self) -> bool:
        """Reserve a slot; False when all are in use."""
        if self.open >= self.limit:
            return False
        self.open += 1
        return True

    def give_back(self) -> None:
        """Free a slot (the client went away)."""
        self.open -= 1


@dataclass
class AppState:
    """The app's settings, Redis client and counters; ``clock`` is the time source (a test sets it)."""

    settings: Settings
    keys: Keys
    streams: StreamSlots
    clock: Callable[[], float] = time.time
    started_s: float = field(default_factory=time.time)
    redis_client: redis.asyncio.Redis | None = None  # set while the app runs (lifespan)
    partitions: PartitionCount | None = None

    def client(self) -> redis.asyncio.Redis:
        """The Redis client (the app is running)."""
        assert self.redis_client is not None, "the app's lifespan has not started"
        return self.redis_client
