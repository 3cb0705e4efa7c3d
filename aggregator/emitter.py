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

from aggregator import spool
from aggregator.buffer import EventBuffer, Payload
from aggregator.connection import RedisTarget, store_partitions
from aggregator.lifecycle import LifecycleMethods
from aggregator.settings import Settings
from aggregator.xadd import XaddSender

log = logging.getLogger("jobpulse.emitter")

MAX_BACKOFF_S = 5.0
WARN_EVERY_S = 30.0


class SendLoop:
    """What the sync and asyncio senders share: the batch in flight (kept until
    Redis takes it) and the one serialised ahead while Redis appends it,
    heartbeat timing, backoff and rate-limited warnings."""

    def __init__(self, buffer: EventBuffer, heartbeat_interval_s: float) -> None:
        self.buffer = buffer
        self.heartbeat_interval_s = heartbeat_interval_s
        self.backoff_s = 0.0
        self.last_warning = 0.0
        self.partitions: int | None = None
        self.inflight: list[Payload] = []
        self.ahead: list[Payload] = []  # taken from the buffer after the batch in flight: sent next
        self.taking = 0  # events being serialised, in neither the buffer nor a batch meanwhile
        self.next_heartbeat = 0.0

    def set_partitions(self, stored: int, configured: int) -> int:
        """Use P as stored in the meta key (stored by whichever component came first)."""
        if stored != configured:
            log.warning("jobpulse: %s says partitions=%d but JOBPULSE_PARTITIONS=%d; using %d",
                        self.buffer.keys.meta, stored, configured, stored)
        self.partitions = stored
        return stored

    def next_batch(self) -> list[Payload]:
        """What to send now: the batch that failed last time, else the next one (with a heartbeat when due)."""
        if not self.inflight and self.partitions is not None:
            if time.monotonic() >= self.next_heartbeat:
                self.inflight.append(self.buffer.heartbeat(self.partitions, self.heartbeat_interval_s))
                self.next_heartbeat = time.monotonic() + self.heartbeat_interval_s
            if self.ahead:
                self.inflight.extend(self.ahead)
                self.ahead = []
            else:
                self.inflight.extend(self._take(self.partitions))
                self.taking = 0
        return self.inflight

    def take_ahead(self) -> None:
        """Serialise the batch after the one in flight (the sender's work while Redis appends that one)."""
        if not self.ahead and self.partitions is not None and self.buffer.items:
            self.ahead = self._take(self.partitions)
            self.taking = 0

    def _take(self, partitions: int) -> list[Payload]:
        self.taking = min(len(self.buffer.items), self.buffer.batch_size)  # so pending() never dips to 0
        return self.buffer.take(partitions)

    def pending(self) -> int:
        """Events not yet accepted by Redis."""
        return len(self.buffer.items) + self.taking + len(self.inflight) + len(self.ahead)

    def failed(self, exc: Exception) -> float:
        """Seconds to wait before the next try."""
        self.backoff_s = min(MAX_BACKOFF_S, max(0.05, self.backoff_s * 2))
        now = time.monotonic()
        if now - self.last_warning >= WARN_EVERY_S:
            self.last_warning = now
            log.warning(
                "jobpulse: cannot reach Redis (%s); %d events buffered, %d dropped so far",
                exc,
                len(self.buffer.items),
                self.buffer.dropped,
            )
        return self.backoff_s

    def sent(self) -> None:
        """Redis took the batch in flight."""
        self.inflight = []
        self.backoff_s = 0.0

    def restore(self, spool_dir: str | None) -> None:
        """Take over what earlier emitters left in the spool: it goes out first."""
        if spool_dir:
            payloads, items = spool.claim(spool_dir)
            self.inflight = payloads + self.inflight
            self.buffer.restore(items)

    def persist(self, spool_dir: str | None) -> None:
        """Leave what Redis has not taken in the spool (the sender has stopped), or say it is lost."""
        payloads = self.inflight + self.ahead
        unsent = len(self.buffer.items) + sum(1 for _, name, _ in payloads if name == b"event")
        if not unsent:
            return
        if spool_dir:
            path = spool.save(spool_dir, self.buffer.worker_id, payloads, self.buffer.items)
            log.warning("jobpulse: closing with %d events Redis has not taken; spooled to %s", unsent, path)
        else:
            log.warning("jobpulse: closing with %d events Redis has not taken; they are lost "
                        "(set JOBPULSE_EMIT_SPOOL_DIR to keep them for the next emitter)", unsent)
        self.inflight, self.ahead = [], []
        self.buffer.items.clear()


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
        self._sender = XaddSender(self._client, settings.stream_maxlen)
        self._loop = SendLoop(self.buffer, settings.heartbeat_interval_s)
        self._loop.restore(settings.emit_spool_dir)
        self._wakeup = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobpulse-emitter", daemon=True)
        self._thread.start()

    @property
    def worker_id(self) -> str:
        """The id this emitter heartbeats under."""
        return self.buffer.worker_id

    def _wake(self) -> None:
        if not self._wakeup.is_set():  # set() takes a lock; a busy job calls this for every event
            self._wakeup.set()

    def pending(self) -> int:
        """Events not yet accepted by Redis."""
        return self._loop.pending()

    @property
    def reachable(self) -> bool:
        """False while the last send failed and the sender is backing off."""
        return self._loop.backoff_s == 0

    def flush(self, timeout_s: float = 5.0, *, unless_down: bool = False) -> bool:
        """Wait until every buffered event is in Redis; False on timeout (or, with
        ``unless_down``, as soon as a send fails: the caller will not wait out an outage)."""
        deadline = time.monotonic() + timeout_s
        while self.pending() and time.monotonic() < deadline:
            if unless_down and not self.reachable:
                break
            self._wakeup.set()
            time.sleep(0.005)
        return not self.pending()

    def close(self, timeout_s: float = 5.0) -> bool:
        """Send what is buffered (up to ``timeout_s``) and stop the thread; what is left
        goes to the spool directory when one is set."""
        sent = self.flush(timeout_s)
        self._closing.set()
        self._wakeup.set()
        self._thread.join(timeout=timeout_s + 1.0)
        if not self._thread.is_alive():  # never write the spool under a sender still running
            self._loop.persist(self.settings.emit_spool_dir)
        elif self.pending():
            log.warning("jobpulse: closing with %d events Redis has not taken; the sender is stuck", self.pending())
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
                stored = store_partitions(self._client, self.buffer.keys, self.settings.partitions)
                self._loop.set_partitions(stored, self.settings.partitions)
            while batch := self._loop.next_batch():
                written = self._sender.write(batch)
                try:
                    self._loop.take_ahead()  # Python's work overlaps Redis' instead of waiting for it
                finally:
                    self._sender.confirm(written)
                self._loop.sent()
        except Exception as exc:  # never let the thread die; retry what was in flight
            return self._loop.failed(exc)
        return 0.0
