"""Sending one batch of the emitter's XADDs to Redis.

A single Redis (or a TLS / Unix-socket one, with whatever AUTH and ACL user
the client was given) gets the batch the lean way: every ``XADD`` of the batch
written in RESP by hand, sent in one write on a connection of the client's own
pool, then the N replies read back. redis-py's ``Pipeline`` does the same round
trip at several µs of Python per command (a command object, argument
encoding, a callback and a parse per reply), which is most of an emitter's
cost per event. Redis Cluster (the partition streams live in different slots)
and clients this module does not know go through the plain pipeline.

Either way a failure raises, so the caller keeps the batch and sends it again:
entries Redis took before the failure are sent twice with the same
``event_id``, which the aggregator counts once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.connection import Connection as AsyncConnection
from redis.asyncio.connection import SSLConnection as AsyncSSLConnection
from redis.asyncio.connection import UnixDomainSocketConnection as AsyncUnixConnection
from redis.connection import Connection, SSLConnection, UnixDomainSocketConnection

Payload = tuple[str, bytes, bytes]  # stream key, field name, JSON (as EventBuffer.take makes them)

# the connection classes whose send_packed_command / read_response the lean path relies on; a
# subclass (fakeredis, a client-side cache proxy) may not speak RESP on a socket: pipeline for those
_LEAN = (Connection, SSLConnection, UnixDomainSocketConnection)
_LEAN_ASYNC = (AsyncConnection, AsyncSSLConnection, AsyncUnixConnection)


class XaddPacker:
    """Writes ``XADD <stream> MAXLEN ~ <n> * <name> <body>`` in RESP, as redis-py would pack it."""

    def __init__(self, maxlen: int, encoding: str = "utf-8") -> None:
        self.maxlen = str(maxlen).encode()
        self.encoding = encoding
        self._heads: dict[tuple[str, bytes], bytes] = {}

    def head(self, stream: str, name: bytes) -> bytes:
        """Everything of the command but its last argument (a handful of streams: cached)."""
        key = stream.encode(self.encoding)
        parts = [b"XADD", key, b"MAXLEN", b"~", self.maxlen, b"*", name]
        return b"*8\r\n" + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)

    def pack(self, batch: Sequence[Payload]) -> bytes:
        """The whole batch as one buffer."""
        heads = self._heads
        out: list[bytes] = []
        add = out.append
        for stream, name, body in batch:
            head = heads.get((stream, name))
            if head is None:
                head = heads[(stream, name)] = self.head(stream, name)
            add(head)
            add(b"$%d\r\n" % len(body))
            add(body)
            add(b"\r\n")
        return b"".join(out)


def _encoding(pool: Any) -> str:
    kwargs: dict[str, Any] = getattr(pool, "connection_kwargs", {})
    return str(kwargs.get("encoding", "utf-8"))


def _lean_pool(client: Any, classes: tuple[type, ...]) -> Any:
    """The client's connection pool when the lean path can use it, else None."""
    pool = getattr(client, "connection_pool", None)
    if pool is None or getattr(pool, "connection_class", None) not in classes:
        return None
    if getattr(pool, "cache", None) is not None:  # client-side caching (redis-py 6) wraps its connections
        return None
    return pool


class XaddSender:
    """Sends batches for the thread emitter: :meth:`write` a batch, do other work while Redis
    appends it, then :meth:`confirm` it."""

    def __init__(self, client: redis.Redis, maxlen: int) -> None:
        self.client = client
        self.maxlen = maxlen
        self.pool = _lean_pool(client, _LEAN)
        self.packer = XaddPacker(maxlen, _encoding(self.pool))

    @property
    def lean(self) -> bool:
        """True when batches skip redis-py's Pipeline."""
        return self.pool is not None

    def write(self, batch: Sequence[Payload]) -> Any:
        """Start sending ``batch``; what :meth:`confirm` needs. Call ``confirm`` next, whatever happens."""
        if self.pool is None:  # the pipeline sends it all on confirm
            pipe = self.client.pipeline(transaction=False)
            for stream, name, body in batch:  # XADD spelled out: xadd()'s argument handling costs 2 µs
                pipe.execute_command("XADD", stream, "MAXLEN", "~", self.maxlen, "*", name, body)  # type: ignore[no-untyped-call]
            return pipe
        data = self.packer.pack(batch)
        conn = _get_connection(self.pool)
        try:
            conn.send_packed_command([data])
        except BaseException:
            self._give_back(conn, broken=True)
            raise
        return conn, len(batch)

    def confirm(self, written: Any) -> None:
        """Wait until Redis has taken the batch; raises (after reading every reply) if it refused any."""
        if self.pool is None:
            written.execute()
            return
        conn, n = written
        try:
            refused = _read_replies(conn, n)
        except BaseException:
            self._give_back(conn, broken=True)
            raise
        self._give_back(conn, broken=False)
        if refused is not None:
            raise refused

    def send(self, batch: Sequence[Payload]) -> None:
        """XADD every payload of ``batch``, waiting for Redis."""
        self.confirm(self.write(batch))

    def _give_back(self, conn: Any, broken: bool) -> None:
        if broken:
            conn.disconnect()  # a reply stream read half-way must not go back to the pool in use
        self.pool.release(conn)


def _get_connection(pool: Any) -> Any:
    try:
        return pool.get_connection()
    except TypeError:  # redis-py before 5.3 wants a command name (later ones deprecate it)
        return pool.get_connection("XADD")


def _read_replies(conn: Any, n: int) -> redis.ResponseError | None:
    """Read ``n`` replies; the first error reply, or None (the others are entry ids)."""
    refused: redis.ResponseError | None = None
    read = conn.read_response
    for _ in range(n):
        try:
            read()
        except redis.ResponseError as exc:  # keep reading: the connection stays in step
            refused = refused or exc
    return refused


class AsyncXaddSender:
    """:class:`XaddSender` for the asyncio emitter."""

    def __init__(self, client: redis.asyncio.Redis, maxlen: int) -> None:
        self.client = client
        self.maxlen = maxlen
        self.pool = _lean_pool(client, _LEAN_ASYNC)
        self.packer = XaddPacker(maxlen, _encoding(self.pool))

    async def write(self, batch: Sequence[Payload]) -> Any:
        """Start sending ``batch``; what :meth:`confirm` needs. Call ``confirm`` next, whatever happens."""
        if self.pool is None:
            pipe = self.client.pipeline(transaction=False)
            for stream, name, body in batch:
                pipe.execute_command("XADD", stream, "MAXLEN", "~", self.maxlen, "*", name, body)
            return pipe
        data = self.packer.pack(batch)
        conn = await _get_connection_async(self.pool)
        try:
            await conn.send_packed_command([data])
        except BaseException:  # failed or cancelled half-way: the connection is out of step
            await self._give_back(conn, broken=True)
            raise
        return conn, len(batch)

    async def confirm(self, written: Any) -> None:
        """Wait until Redis has taken the batch; raises (after reading every reply) if it refused any."""
        if self.pool is None:
            await written.execute()
            return
        conn, n = written
        refused: redis.ResponseError | None = None
        try:
            for _ in range(n):
                try:
                    await conn.read_response()
                except redis.ResponseError as exc:  # keep reading: the connection stays in step
                    refused = refused or exc
        except BaseException:
            await self._give_back(conn, broken=True)
            raise
        await self._give_back(conn, broken=False)
        if refused is not None:
            raise refused

    async def send(self, batch: Sequence[Payload]) -> None:
        """XADD every payload of ``batch``, waiting for Redis."""
        await self.confirm(await self.write(batch))

    async def _give_back(self, conn: Any, broken: bool) -> None:
        if broken:
            await conn.disconnect()
        await self.pool.release(conn)


async def _get_connection_async(pool: Any) -> Any:
    try:
        return await pool.get_connection()
    except TypeError:  # redis-py before 5.3 wants a command name
        return await pool.get_connection("XADD")
