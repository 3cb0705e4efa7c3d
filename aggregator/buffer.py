"""The emitter's in-memory side, shared by the sync and asyncio emitters:
a bounded buffer the caller appends to, and the serialisation of what is
sent. Nothing here does I/O, so a job never waits on Redis."""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

from aggregator.events import EventType, encode
from aggregator.keys import Keys, partition_of
from aggregator.settings import Settings

_EVENT_TYPES = frozenset(t.value for t in EventType)
_FINISHING = frozenset({"completed", "failed", "timed_out", "dead", "cancelled"})
_MAX_TRACKED = 100_000  # running job ids remembered for the busy count
_MAX_QUEUES = 1000

Item = tuple[str, str, str, float, dict[str, Any] | None]
Payload = tuple[str, bytes, bytes]  # stream key, field name, JSON


def iso(ts_s: float) -> str:
    """RFC 3339 UTC timestamp with milliseconds."""
    return datetime.fromtimestamp(ts_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _IsoClock:
    """``iso`` for runs of timestamps in the same second, without a datetime per event."""

    def __init__(self) -> None:
        self.second = -1
        self.prefix = ""

    def __call__(self, ts_s: float) -> str:
        # rounded to microseconds the way datetime.fromtimestamp does, then truncated to ms
        frac, whole = math.modf(ts_s)
        micro = round(frac * 1e6)
        second = int(whole) + micro // 1_000_000
        milli = micro % 1_000_000 // 1000
        if second != self.second:
            self.second, self.prefix = second, iso(second)[:-5]  # "YYYY-MM-DDTHH:MM:SS"
        return f"{self.prefix}.{milli:03d}Z"


class EventBuffer:
    """A bounded FIFO of events; when full, the oldest event is dropped and counted."""

    def __init__(self, settings: Settings, worker_id: str | None, queues: tuple[str, ...], concurrency: int) -> None:
        self.keys = Keys(settings.key_prefix)
        self.capacity = settings.emit_buffer_max
        self.batch_size = settings.emit_batch_size
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.concurrency = concurrency
        self.queues = set(queues)
        self.items: deque[Item] = deque()
        self.dropped = 0
        self._running: set[str] = set()
        # event ids: a random per-buffer prefix and a counter, unique without a uuid4 per event
        self._id_prefix = uuid.uuid4().hex
        self._id_seq = 0
        self._iso = _IsoClock()
        self._streams: dict[str, str] = {}
        self._streams_of = 0  # the partition count _streams was computed for
        self._lock = threading.Lock()  # guards dropped and _running against the sender

    def append(
        self, event_type: str, job_id: str, queue: str, ts_s: float | None, extras: dict[str, Any] | None
    ) -> bool:
        """Add an event; True when a full batch is waiting (wake the sender)."""
        if event_type not in _EVENT_TYPES:  # a typo in the caller's code is a bug worth raising on
            raise ValueError(f"{event_type!r} is not a valid EventType")
        if len(self.items) >= self.capacity:
            with contextlib.suppress(IndexError):  # the sender may have emptied it meanwhile
                self.items.popleft()
            with self._lock:
                self.dropped += 1
        self.items.append((event_type, job_id, queue, time.time() if ts_s is None else ts_s, extras))
        if len(self.queues) < _MAX_QUEUES:
            self.queues.add(queue)
        if event_type == "started":
            if len(self._running) < _MAX_TRACKED:
                self._running.add(job_id)
        elif event_type in _FINISHING:
            self._running.discard(job_id)
        return len(self.items) >= self.batch_size

    def restore(self, items: list[Item]) -> None:
        """Put back events from the spool, oldest first, under the same bound."""
        for item in items:
            if len(self.items) >= self.capacity:
                self.items.popleft()
                with self._lock:
                    self.dropped += 1
            self.items.append(item)

    @property
    def busy(self) -> int:
        """Jobs started through this emitter and not finished yet."""
        return len(self._running)

    def take(self, partitions: int) -> list[Payload]:
        """Remove up to one batch and serialise it, ready to XADD."""
        out: list[Payload] = []
        if partitions != self._streams_of:
            self._streams, self._streams_of = {}, partitions
        streams = self._streams
        for _ in range(min(self.batch_size, len(self.items))):
            try:
                event_type, job_id, queue, ts_s, extras = self.items.popleft()
            except IndexError:
                break
            self._id_seq += 1
            body: dict[str, Any] = {
                "event_id": f"{self._id_prefix}-{self._id_seq}",
                "job_id": job_id,
                "queue_name": queue,
                "event_type": event_type,
                "timestamp": self._iso(ts_s),
                "worker_id": self.worker_id,
            }
            if extras:
                body.update(extras)
            stream = streams.get(queue)
            if stream is None:
                stream = streams[queue] = self.keys.stream(partition_of(queue, partitions))
            out.append((stream, b"event", encode(body)))
        return out

    def heartbeat(self, partitions: int, interval_s: float) -> Payload:
        """This worker's heartbeat entry."""
        body = {
            "worker_id": self.worker_id,
            "queues": sorted(self.queues),
            "concurrency": self.concurrency,
            "busy": self.busy,
            "interval_s": interval_s,
            "dropped": self.dropped,
            "timestamp": iso(time.time()),
        }
        return (self.keys.stream(partition_of(self.worker_id, partitions)), b"heartbeat", encode(body))


def event_extras(
    priority: str | None = None,
    processing_time_ms: int | None = None,
    wait_time_ms: int | None = None,
    error: str | BaseException | None = None,
    error_type: str | None = None,
    attempt: int | None = None,
    job_type: str | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any] | None:
    """The optional wire fields of one event, leaving out what is not given."""
    extras: dict[str, Any] = {}
    if priority is not None:
        extras["priority"] = priority
    if processing_time_ms is not None:
        extras["processing_time_ms"] = max(0, int(processing_time_ms))
    if wait_time_ms is not None:
        extras["wait_time_ms"] = max(0, int(wait_time_ms))
    if error is not None:
        if isinstance(error, BaseException):
            error_type = error_type or type(error).__name__
            error = str(error) or type(error).__name__
        extras["error"] = {"message": error, "error_type": error_type}
    if attempt is not None:
        extras["attempt"] = attempt
    if job_type is not None:
        extras["job_type"] = job_type
    if metadata:
        extras["metadata"] = metadata
    return extras or None
