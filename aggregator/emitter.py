"""The worker-side emitter (threads): a job calls it at each lifecycle step;
a background thread batches the events into the partition streams.

When Redis is unreachable the events wait in a bounded buffer (oldest dropped
first when full, and counted) and are re-sent with backoff. A re-sent event
keeps its ``event_id``, so the aggregator counts it once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import redis

from aggregator.buffer import EventBuffer, Payload
from aggregator.connection import RedisTarget, read_partitions
from aggregator.lifecycle import LifecycleMethods
from aggregator.settings import Settings

log = logging.getLogger("jobpulse.emitter")

MAX_BACKOFF_S = 5.0
WARN_EVERY_S = 30.0


class SendLoop:
    """Backoff and rate-limited warnings for a sender that may meet a dead Redis."""

    def __init__(self) -> None:
        self.backoff_s = 0.0
        self.last_warning = 0.0
        self.partitions: int | None = None

    def failed(self, exc: Exception, buffer: EventBuffer) -> float:
        """Seconds to wait before the next try."""
        self.backoff_s = min(MAX_BACKOFF_S, max(0.05, self.backoff_s * 2))
        now = time.monotonic()
        if now - self.last_warning >= WARN_EVERY_S:
            self.last_warning = now
            log.warning(
                "jobpulse: cannot reach Redis (%s); %d events buffered, %d dropped so far",
                exc,
                len(buffer.items),
                buffer.dropped,
            )
        return self.backoff_s

    def ok(self) -> None:
        """A send went through."""
        self.backoff_s = 0.0


class Emitter(LifecycleMethods):
    """Thread-based emitter; safe to call from any thread of the worker."""

    def __init__(
        self,
        settings: Settings,
        target: RedisTarget | None = None,
        *,
        worker_id: str | None = None,
        queues: tuple[str, ...] = (),
        concurrency: int = 0,
        client: redis.Redis | None = None,
    ) -> None:
        self.settings = settings
        self.buffer = EventBuffer(settings, worker_id, queues, concurrency)
        opts: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0}
        self._client = client or (target or RedisTarget(settings.redis_url)).sync(**opts)
        self._loop = SendLoop()
        self._inflight: list[Payload] = []
        self._wakeup = threading.Event()
        self._closing = threading.Event()
        self._next_heartbeat = 0.0
        self._thread = threading.Thread(target=self._run, name="jobpulse-emitter", daemon=True)
        self._thread.start()

    @property
    def worker_id(self) -> str:
        """The id this emitter heartbeats under."""
        return self.buffer.worker_id

    def _wake(self) -> None:
        self._wakeup.set()

    def pending(self) -> int:
        """Events not yet accepted by Redis."""
        return len(self.buffer.items) + len(self._inflight)

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until every buffered event is in Redis; False on timeout."""
        deadline = time.monotonic() + timeout_s
        while self.pending() and time.monotonic() < deadline:
            self._wakeup.set()
            time.sleep(0.005)
        return not self.pending()

    def close(self, timeout_s: float = 5.0) -> bool:
        """Send what is buffered (up to ``timeout_s``) and stop the thread."""
        sent = self.flush(timeout_s)
        self._closing.set()
        self._wakeup.set()
        self._thread.join(timeout=1.0)
        return sent

    def __enter__(self) -> Emitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self) -> None:
        interval_s = self.settings.emit_flush_interval_ms / 1000
        while not self._closing.is_set():
            self._wakeup.wait(interval_s)
            self._wakeup.clear()
            delay = self._send_all()
            if delay:
                self._closing.wait(delay)

    def _send_all(self) -> float:
        """Send every buffered batch; seconds to back off, or 0."""
        try:
            if self._loop.partitions is None:
                self._loop.partitions = read_partitions(self._client, self.buffer.keys)
                if self._loop.partitions is None:
                    raise ConnectionError(f"{self.buffer.keys.meta} not set yet: no aggregator has started")
            partitions = self._loop.partitions
            if time.monotonic() >= self._next_heartbeat:
                self._inflight.append(self.buffer.heartbeat(partitions, self.settings.heartbeat_interval_s))
                self._next_heartbeat = time.monotonic() + self.settings.heartbeat_interval_s
            while True:
                if not self._inflight:
                    self._inflight = self.buffer.take(partitions)
                if not self._inflight:
                    break
                pipe = self._client.pipeline(transaction=False)
                for stream, name, body in self._inflight:
                    pipe.xadd(stream, {name: body}, maxlen=self.settings.stream_maxlen, approximate=True)
                pipe.execute()
                self._inflight = []
                self._loop.ok()
        except Exception as exc:  # never let the thread die; retry what was in flight
            return self._loop.failed(exc, self.buffer)
        return 0.0
