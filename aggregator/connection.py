"""Where Redis is, how to get a client for it, and the deployment meta."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from aggregator.keys import Keys

META_VERSION = "1"


class ConfigError(RuntimeError):
    """The configuration cannot work with the Redis it points at."""


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


def cluster_url(url: str) -> str | None:
    """The plain URL of a seed node if ``url`` names a cluster (``redis+cluster://host:port``), else None."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower())
    return f"{plain}://{rest}" if sep and plain else None


@dataclass
class RedisTarget:
    """A Redis URL (``redis+cluster://`` for Redis Cluster), or an in-process
    fakeredis server (the embedded fallback).

    Cluster clients are typed as ``redis.Redis``: they offer the same command
    methods, and every multi-key call jobpulse makes stays within one
    partition's hash tag, so within one slot.
    """

    url: str | None = None
    fake_server: Any = None

    def sync(self, **options: Any) -> redis.Redis:
        """A blocking client (bytes in, bytes out)."""
        if self.fake_server is not None:
            import fakeredis

            return fakeredis.FakeRedis(server=self.fake_server, **options)
        if not self.url:
            raise ConfigError("no Redis URL: set JOBPULSE_REDIS_URL")
        if seed := cluster_url(self.url):
            return cast(redis.Redis, RedisCluster.from_url(seed, **options))
        return redis.Redis.from_url(self.url, **options)

    def asyncio(self, **options: Any) -> redis.asyncio.Redis:
        """An asyncio client (bytes in, bytes out)."""
        if self.fake_server is not None:
            import fakeredis

            return fakeredis.FakeAsyncRedis(server=self.fake_server, **options)
        if not self.url:
            raise ConfigError("no Redis URL: set JOBPULSE_REDIS_URL")
        if seed := cluster_url(self.url):
            return cast(redis.asyncio.Redis, AsyncRedisCluster.from_url(seed, **options))
        return redis.asyncio.Redis.from_url(self.url, **options)  # type: ignore[no-any-return]  # redis-py 5 stubs

    def describe(self) -> str:
        """Where this points, with any password hidden."""
        if self.fake_server is not None:
            return "in-process fakeredis"
        return redact_url(self.url or "")


def redact_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    creds, _, host = rest.rpartition("@")
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"


def _stored(raw: bytes | str | None, configured: int) -> int:
    return configured if raw is None else int(raw)


def store_partitions(client: redis.Redis, keys: Keys, partitions: int) -> int:
    """Store P with ``HSETNX`` unless some component already did; the stored value (one round trip).

    Whichever component starts first (emitter, aggregator, API, bridge) stores its configured P; every
    component then uses the stored one, so no start order loses an event."""
    pipe = client.pipeline(transaction=False)
    pipe.hsetnx(keys.meta, "partitions", str(partitions))
    pipe.hsetnx(keys.meta, "version", META_VERSION)
    pipe.hget(keys.meta, "partitions")
    return _stored(pipe.execute()[-1], partitions)


async def store_partitions_async(client: redis.asyncio.Redis, keys: Keys, partitions: int) -> int:
    """:func:`store_partitions` for an asyncio client."""
    pipe = client.pipeline(transaction=False)
    pipe.hsetnx(keys.meta, "partitions", str(partitions))
    pipe.hsetnx(keys.meta, "version", META_VERSION)
    pipe.hget(keys.meta, "partitions")
    return _stored((await pipe.execute())[-1], partitions)


def ensure_meta(client: redis.Redis, keys: Keys, partitions: int) -> int:
    """Store P on first start; refuse a different P later. Returns P."""
    stored = store_partitions(client, keys, partitions)
    if stored != partitions:
        raise ConfigError(
            f"{keys.meta} says partitions={stored} but JOBPULSE_PARTITIONS={partitions}; "
            "P cannot change on a live deployment. Set JOBPULSE_PARTITIONS="
            f"{stored}, or use a new JOBPULSE_KEY_PREFIX."
        )
    return stored
