"""Where Redis is, how to get a client for it, and the deployment meta."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from aggregator.keys import Keys

META_VERSION = "1"
log = logging.getLogger("jobpulse")
T = TypeVar("T")

# At start-up these mean "not ready yet", not "misconfigured": nothing listens yet or the name
# does not resolve yet (a container still starting), or a Redis Cluster whose slots are not all
# assigned yet (`redis-cli --cluster create` still running). A refused password is final.
NOT_READY_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.RedisClusterException,
)


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

    def probe(self) -> None:
        """Raise unless this Redis answers and, for a cluster, every node says every slot is served."""
        if not self.url:
            return
        seed = cluster_url(self.url)
        timeouts = {"socket_timeout": 5.0, "socket_connect_timeout": 5.0}
        with redis.Redis.from_url(seed or self.url, **timeouts) as client:
            if not seed:
                client.ping()
                return
            # a node not yet joined makes RedisCluster fail with an IndexError: ask the seed first
            info: dict[str, Any] = client.execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
        if info.get("cluster_state") != "ok":
            state, assigned = info.get("cluster_state"), info.get("cluster_slots_assigned")
            raise redis.exceptions.ClusterDownError(  # type: ignore[no-untyped-call]
                f"cluster_state:{state}, {assigned} of 16384 slots assigned")
        cluster = RedisCluster.from_url(seed, **timeouts)
        try:  # each node takes a moment after `redis-cli --cluster create` to agree
            states = cluster.execute_command("CLUSTER INFO", target_nodes=RedisCluster.ALL_NODES)
        finally:
            cluster.close()
        down = sorted(node for node, node_info in states.items() if node_info.get("cluster_state") != "ok")
        if down:
            raise redis.exceptions.ClusterDownError(  # type: ignore[no-untyped-call]
                f"cluster_state is not ok on {', '.join(down)}")

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


def wait_until_ready(
    connect: Callable[[], T],
    where: str,
    stopped: Callable[[], bool],
    first_backoff_s: float = 0.5,
    max_backoff_s: float = 10.0,
) -> T | None:
    """``connect()``, retried with backoff while Redis is not ready; None once ``stopped()`` says so.

    ``stopped`` is polled (every 50 ms while waiting), not an Event: a signal handler sets it, and
    an Event's set() would take the lock that the interrupted Event.wait() may be holding."""
    backoff_s, started_s, waited = first_backoff_s, time.monotonic(), False
    while True:
        try:
            result = connect()
        except redis.AuthenticationError:
            raise
        except NOT_READY_ERRORS as exc:
            reason = (str(exc).splitlines() or [""])[0]
            log.warning("Redis at %s is not ready (%s: %s); retrying in %.1f s",
                        where, type(exc).__name__, reason, backoff_s)
            deadline_s = time.monotonic() + backoff_s
            while (left_s := deadline_s - time.monotonic()) > 0:
                if stopped():
                    return None
                time.sleep(min(left_s, 0.05))
            backoff_s, waited = min(backoff_s * 2, max_backoff_s), True
            continue
        if waited:
            log.info("Redis at %s is ready after %.1f s", where, time.monotonic() - started_s)
        return result
