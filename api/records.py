"""What the store's reads are parsed into, and the parsing of raw Redis replies: pure, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from api.stats import Tally


@dataclass
class QueueSnapshot:
    """One queue now: lifetime totals, gauges and the tally of a window."""

    name: str
    totals: Tally
    pending: int
    running: int
    oldest_pending_ms: int | None
    window: Tally
    first_ms: int | None = None
    last_ms: int | None = None
    seen: bool = True


@dataclass
class PartitionStatus:
    """How far the aggregator is with one partition."""

    partition: int
    consumed: int = 0
    events: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    clamped: int = 0
    lost: int = 0
    watermark_ms: int | None = None
    applied_ms: int | None = None
    newest_entry_ms: int | None = None
    stream_length: int = 0
    deadletter_length: int = 0
    owner: str | None = None

    @property
    def lag_s(self) -> float:
        """How far behind the aggregator is: newest entry time − last applied entry time, seconds."""
        if self.newest_entry_ms is None:
            return 0.0
        return max(0.0, (self.newest_entry_ms - (self.watermark_ms or 0)) / 1000)


@dataclass
class Worker:
    """A worker's last heartbeat."""

    worker_id: str
    queues: list[str]
    concurrency: int
    busy: int
    interval_s: float
    dropped: int
    seen_ms: int


@dataclass
class PartitionView:
    """One partition now, read at a cost that does not depend on its number of queues."""

    status: PartitionStatus
    counts: dict[str, int]  # lifetime events per type
    pending: int
    running: int
    first_ms: int | None  # event time of the first data the partition holds
    oldest_pending_ms: int | None
    queues_seen: int
    workers: list[Worker]
    window: Tally
    backlog: list[tuple[str, int]]  # queues holding more pending jobs than the threshold asked for


@dataclass
class ErrorSignature:
    """One normalised error message over a range of hours."""

    sig: str
    count: int = 0
    first_ms: int = 0
    last_ms: int = 0
    queues: dict[str, int] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)  # failures per error type the events gave
    error_type: str = "Error"
    sample: str = ""


def pairs(flat: Sequence[Any]) -> dict[Any, Any]:
    """A flat ``field, value, …`` reply as a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def entry_ms(entry_id: bytes | None) -> int | None:
    """The millisecond part of a stream entry id."""
    return int(entry_id.split(b"-", 1)[0]) if entry_id else None


def int_or_none(raw: bytes | None) -> int | None:
    """An integer reply, None when absent or empty."""
    return int(raw) if raw else None


def partition_status(p: int, wm: dict[bytes, bytes], newest: bytes | None, length: int, dl_length: int,
                     lease: bytes | None) -> PartitionStatus:
    """A partition's status from its watermark hash, newest stream entry id, stream lengths and lease."""
    applied = wm.get(b"applied_ms")
    return PartitionStatus(
        partition=p, consumed=int(wm.get(b"consumed", 0)), events=int(wm.get(b"events", 0)),
        duplicates=int(wm.get(b"duplicates", 0)), dead_letters=int(wm.get(b"dead_letters", 0)),
        clamped=int(wm.get(b"clamped", 0)), lost=int(wm.get(b"lost", 0)), watermark_ms=entry_ms(wm.get(b"id")),
        applied_ms=None if applied is None else int(applied), newest_entry_ms=entry_ms(newest),
        stream_length=int(length), deadletter_length=int(dl_length),
        owner=bytes(lease).decode().rsplit(":", 1)[0] if lease else None)


def workers(raw: dict[bytes, bytes]) -> list[Worker]:
    """The workers of one heartbeat hash (worker id -> JSON)."""
    out = []
    for worker_id, body in raw.items():
        rec = orjson.loads(body)
        out.append(Worker(worker_id=worker_id.decode(), queues=rec["queues"], concurrency=rec["concurrency"],
                          busy=rec["busy"], interval_s=rec["interval_s"], dropped=rec["dropped"],
                          seen_ms=rec["seen_ms"]))
    return out


def flat_int(flat: Sequence[Any], name: bytes) -> int | None:
    """The integer value of field ``name`` in a flat ``field, value, …`` reply, None when absent."""
    i = -1
    while True:
        try:
            i = flat.index(name, i + 1)
        except ValueError:
            return None
        if i % 2 == 0:  # a field, not a value that happens to be spelled the same
            return int(flat[i + 1])


def snapshot(name: str, reply: list[Any]) -> QueueSnapshot:
    """A queue's snapshot from its reply of the QUEUES script (api/lua.py)."""
    seen, totals, pending, running, oldest, window = reply
    # first_ms and last_ms are in the totals too; Tally leaves them out
    return QueueSnapshot(name=name, totals=Tally().add_flat(zip(totals[::2], totals[1::2], strict=True)),
                         pending=int(pending), running=int(running),
                         oldest_pending_ms=int(float(oldest)) if oldest else None,
                         window=Tally().add_flat(zip(window[::2], window[1::2], strict=True)),
                         first_ms=flat_int(totals, b"first_ms"), last_ms=flat_int(totals, b"last_ms"), seen=bool(seen))
