"""How the read side reaches Redis cheaply: read scripts by SHA, commands packed by hand and pipelined
on one pooled connection (standalone), concurrent calls (Cluster, whose pipelines refuse scripts), and
large parsing moved off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio
from redis.asyncio import ConnectionPool
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import NoScriptError

# Replies larger than this (hash reads) are parsed in a worker thread, off the event loop.
OFFLOAD_READS = 1000
T = TypeVar("T")
# redis-py >= 5.3 deprecates naming the command when taking a pooled connection; 5.0-5.2 require it
_POOL_TAKES_NO_ARGS = inspect.signature(ConnectionPool.get_connection).parameters["command_name"].default is None


class Script:
    """A read script called by its SHA, loaded on first NOSCRIPT (so a call costs one command)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def resp(args: Sequence[str | int | bytes]) -> bytes:
    """One command in the Redis protocol (RESP): a few µs, where redis-py's general packer takes tens
    per call (measured on the overview, whose Redis work is a few script calls)."""
    parts = [b"*%d\r\n" % len(args)]
    for a in args:
        raw = a if isinstance(a, bytes) else str(a).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(parts)


async def offload(reads: int, work: Callable[[], T]) -> T:
    """Run CPU work in a thread when it is large, so other requests are not held up meanwhile."""
    return await asyncio.to_thread(work) if reads > OFFLOAD_READS else work()


class RedisReads:
    """One request's way to Redis; ``redis_time_s`` adds up its waits (PerformanceMetrics)."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self.cluster = isinstance(client, RedisCluster)
        self.redis_time_s = 0.0

    async def run(self, pipe: Any) -> list[Any]:
        """Execute a redis-py pipeline, timed."""
        return await self.timed(pipe.execute())

    async def timed(self, pending: Awaitable[Any]) -> list[Any]:
        """Await Redis replies, adding the wait to ``redis_time_s``."""
        start = time.perf_counter()
        try:
            return list(await pending)
        finally:
            self.redis_time_s += time.perf_counter() - start

    async def eval(self, script: Script, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """One script call per (keys, args): pipelined on one connection (standalone), or concurrent
        (Cluster, whose pipelines refuse scripts)."""
        if not self.cluster:
            packed = b"".join(resp(["EVALSHA", script.sha, len(k), *k, *a]) for k, a in calls)
            return await self.eval_packed(script, packed, len(calls))
        for attempt in range(2):
            try:
                return await self.timed(asyncio.gather(
                    *(self.client.evalsha(script.sha, len(k), *k, *a) for k, a in calls)))  # type: ignore[misc, arg-type]
            except NoScriptError:
                if attempt:
                    raise
                await self.client.script_load(script.source)
        raise AssertionError("unreachable")  # pragma: no cover

    async def eval_packed(self, script: Script, packed: bytes, replies: int) -> list[Any]:
        """Send EVALSHA calls already packed; load the script on NOSCRIPT and send them again."""
        for attempt in range(2):
            try:
                return await self.timed(self.pipelined(packed, replies))
            except NoScriptError:
                if attempt:
                    raise
                await self.client.script_load(script.source)
        raise AssertionError("unreachable")  # pragma: no cover

    async def pipelined(self, packed: bytes, replies: int) -> list[Any]:
        """Send packed commands on one pooled connection and read their replies (a pipeline without
        redis-py's per-command packing)."""
        pool = self.client.connection_pool
        conn = await (pool.get_connection() if _POOL_TAKES_NO_ARGS else pool.get_connection("EVALSHA"))
        try:
            await conn.send_packed_command(packed, check_health=False)
            return [await conn.read_response() for _ in range(replies)]
        except BaseException:
            await conn.disconnect()  # replies may be left unread: never reuse this connection
            raise
        finally:
            await pool.release(conn)
