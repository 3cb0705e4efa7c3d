"""The emitter's in-memory side, shared by the sync and asyncio emitters:
a bounded buffer the caller appends to, and the serialisation of what is
sent. Nothing here does I/O, so a job never waits on Redis."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import Any

import orjson

from aggregator.events import EventType, encode
from aggregator.keys import Keys, partition_of
from aggregator.settings import Settings

log = logging.getLogger("jobpulse.emitter")

_EVENT_TYPES = {t.value: t.value.encode() for t in EventType}
_FINISHING = frozenset({"completed", "failed", "timed_out", "dead", "cancelled"})
_MAX_TRACKED = 100_000  # running job ids remembered for the busy count
_MAX_QUEUES = 1000

# An event's JSON, written field by field: the same bytes orjson.dumps makes of the dict
# {event_id, job_id, queue_name, event_type, timestamp, worker_id, **extras}, in that order, at half
# the cost (a few of the values are cached, JSON-encoded, per queue and per worker).
_BODY = b'{"event_id":"%s-%d","job_id":%s,"queue_name":%s,"event_type":"%s","timestamp":"%s","worker_id":%s}'
_BODY_EXTRAS = _BODY[:-1] + b",%s}"  # + the members of the optional fields' JSON object

# (event type, job id, queue, timestamp s, the optional fields as the members of a JSON object, or None:
# b'"priority":"high","attempt":2'); no dict in it, so the garbage collector stops tracking a
# buffered item after one young collection
Item = tuple[str, str, str, float, bytes | None]
Payload = tuple[str, bytes, bytes]  # stream key, field name, JSON


def iso(ts_s: float) -> str:
    """RFC 3339 UTC timestamp with milliseconds."""
    return datetime.fromtimestamp(ts_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class _IsoClock:
    """``iso`` (as ASCII bytes) for runs of timestamps in the same second, without a datetime per event."""

    def __init__(self) -> None:
        self.start = math.nan  # the second the prefix is for, as a float (none yet)
        self.prefix = b""
        self.milli = -1  # the millisecond of that second last written, and what was written
        self.last = b""

    def __call__(self, ts_s: float) -> bytes:
        # rounded to microseconds the way datetime.fromtimestamp does, then truncated to ms. Within the
        # cached second, ts_s - start is exactly the fraction math.modf would give (a subtraction of
        # two floats this close is exact)
        frac = ts_s - self.start
        if 0.0 <= frac < 1.0:
            micro = round(frac * 1e6)
            if micro < 1_000_000:
                milli = micro // 1000
                if milli != self.milli:  # a busy worker writes many events per millisecond
                    self.milli, self.last = milli, b"%s.%03dZ" % (self.prefix, milli)
                return self.last
        frac, whole = math.modf(ts_s)
        micro = round(frac * 1e6)
        second = int(whole) + micro // 1_000_000
        milli = micro % 1_000_000 // 1000
        prefix = iso(second)[:-5].encode()  # "YYYY-MM-DDTHH:MM:SS"
        text = b"%s.%03dZ" % (prefix, milli)
        if second >= 0:  # the fast path counts the fraction up from the second's start
            self.start, self.prefix, self.milli, self.last = float(second), prefix, milli, text
        return text


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
        self._id_prefix = uuid.uuid4().hex.encode()
        self._id_seq = 0
        self._iso = _IsoClock()
        self._queues: dict[str, tuple[str, bytes]] = {}  # queue -> (its stream, its name as JSON)
        self._queues_of = 0  # the partition count _queues was computed for
        self._worker_json = ("", b"")  # (worker_id, its JSON): worker_id may be reassigned
        self._lock = threading.Lock()  # guards dropped and _running against the sender

    def append(self, event_type: str, job_id: str, queue: str, ts_s: float | None, extras: bytes | None) -> bool:
        """Add an event (``extras``: its optional fields as :func:`event_extras` writes them); True
        when a full batch is waiting (wake the sender)."""
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
        add = out.append
        if partitions != self._queues_of:
            self._queues, self._queues_of = {}, partitions
        queues, popleft, clock, dumps = self._queues, self.items.popleft, self._iso, orjson.dumps
        if self._worker_json[0] != self.worker_id:
            self._worker_json = (self.worker_id, dumps(self.worker_id))
        id_prefix, worker, seq, bad = self._id_prefix, self._worker_json[1], self._id_seq, 0
        for _ in range(min(self.batch_size, len(self.items))):
            try:
                event_type, job_id, queue, ts_s, extras = popleft()
            except IndexError:
                break
            seq += 1
            try:
                known = queues.get(queue)
                if known is None:
                    known = queues[queue] = (self.keys.stream(partition_of(queue, partitions)), dumps(queue))
                if extras:
                    body = _BODY_EXTRAS % (id_prefix, seq, dumps(job_id), known[1], _EVENT_TYPES[event_type],
                                           clock(ts_s), worker, extras)
                else:
                    body = _BODY % (id_prefix, seq, dumps(job_id), known[1], _EVENT_TYPES[event_type],
                                    clock(ts_s), worker)
            except Exception:  # e.g. a lone surrogate in a name, a NaN timestamp: this event alone is lost
                bad += 1
                continue
            add((known[0], b"event", body))
        self._id_seq = seq
        if bad:
            with self._lock:
                self.dropped += bad
            log.error("jobpulse: dropped %d events that cannot be written as JSON", bad)
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
) -> bytes | None:
    """The optional wire fields of one event, leaving out what is not given, as the members of a
    JSON object (``"priority":"high","attempt":2``); raises if one cannot be written as JSON."""
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
    # the slice is a small copy: orjson's own buffer, freed at once, is costly to keep (~1 µs per event)
    return orjson.dumps(extras)[1:-1] if extras else None
