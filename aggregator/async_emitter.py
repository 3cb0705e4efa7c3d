"""The asyncio emitter: the same buffer and wire format as :mod:`emitter`,
sent by a task on the caller's event loop instead of a thread."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import redis.asyncio

from aggregator.buffer import EventBuffer
from aggregator.connection import RedisTarget, store_partitions_async
from aggregator.emitter import SendLoop
from aggregator.lifecycle import LifecycleMethods
from aggregator.settings import Settings
from aggregator.xadd import AsyncXaddSender


class AsyncEmitter(LifecycleMethods):
    """Emitter for asyncio workers; ``await start()`` once, ``await close()`` at exit."""

    def __init__(
        self,
        settings: Settings,
        target: RedisTarget | None = None,
        *,
        worker_id: str | None = None,
        queues: tuple[str, ...] = (),
        concurrency: int = 0,
        client: redis.asyncio.Redis | None = None,
    ) -> None:
        self.settings = settings
        self.buffer = EventBuffer(settings, worker_id, queues, concurrency)
        opts: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
        self._client = client or (target or RedisTarget(settings.redis_url)).asyncio(**opts)
        self._sender = AsyncXaddSender(self._client, settings.stream_maxlen)
        self._loop = SendLoop(self.buffer, settings.heartbeat_interval_s)
        self._loop.restore(settings.emit_spool_dir)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def _wake(self) -> None:
        if not self._wakeup.is_set():  # set() takes a lock; a busy job calls this for every event
            self._wakeup.set()

    async def start(self) -> AsyncEmitter:
        """Start the sender task on the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="jobpulse-emitter")
        return self

    def pending(self) -> int:
        """Events not yet accepted by Redis."""
        return self._loop.pending()

    async def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every buffered event is in Redis; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.pending() and time.monotonic() < deadline:
            self._wakeup.set()
            await asyncio.sleep(0.005)
        return not self.pending()

    async def close(self, timeout_s: float = 5.0) -> bool:
        """Send what is buffered (up to ``timeout_s``), then stop the task; what is left
        goes to the spool directory when one is set."""
        sent = await self.flush(timeout_s)
        if self._task is not None:
            # Asked to stop rather than cancelled: on Python 3.11 a cancel that lands as
            # wait_for's inner wait completes can be swallowed, and close() would wait forever.
            self._closing = True
            self._wakeup.set()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2.0):  # a send stuck on a dead socket is cancelled
                    await self._task
            self._task = None
        self._loop.persist(self.settings.emit_spool_dir)  # the sender has stopped (or was cancelled)
        await self._client.aclose()
        return sent

    async def __aenter__(self) -> AsyncEmitter:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self) -> None:
        interval_s = self.settings.emit_flush_interval_ms / 1000
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval_s):
                    await self._wakeup.wait()
            self._wakeup.clear()
            if self._closing:
                break
            delay = await self._send_all()
            if delay:
                await asyncio.sleep(delay)

    async def _send_all(self) -> float:
        try:
            if self._loop.partitions is None:
                stored = await store_partitions_async(self._client, self.buffer.keys, self.settings.partitions)
                self._loop.set_partitions(stored, self.settings.partitions)
            while batch := self._loop.next_batch():
                written = await self._sender.write(batch)
                try:
                    self._loop.take_ahead()  # Python's work overlaps Redis' instead of waiting for it
                finally:
                    await self._sender.confirm(written)
                self._loop.sent()
        except Exception as exc:  # the task must outlive any Redis trouble
            return self._loop.failed(exc)
        return 0.0
