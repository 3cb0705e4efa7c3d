"""The emitter's optional on-disk spool (``JOBPULSE_EMIT_SPOOL_DIR``).

An emitter that closes with events Redis has not taken (an outage during a
worker restart or deploy) writes them to a file of its own in the spool
directory; the next emitter started on that directory claims every such file
and sends its events first. A batch that was in flight keeps its event ids, so
if Redis did take it after all, the aggregator counts it once.

What it does not cover: a process killed with SIGKILL (or a crash) loses its
in-memory buffer as before; the spool is written on ``close()``.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from aggregator.buffer import Item, Payload

log = logging.getLogger("jobpulse.emitter")

SUFFIX = ".spool"


def save(directory: str, worker_id: str, inflight: Iterable[Payload], items: Iterable[Item]) -> Path | None:
    """Write what was not sent to a new spool file; its path, or None when there was nothing."""
    lines = [orjson.dumps({"s": s, "f": f.decode(), "b": b.decode()}) for s, f, b in inflight if f == b"event"]
    # an item's optional fields are JSON members already: written as the object they make
    lines += [orjson.dumps({"i": [*item[:4], orjson.Fragment(b"{%s}" % item[4]) if item[4] else None]})
              for item in items]
    if not lines:
        return None
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{re.sub(r'[^A-Za-z0-9_.-]', '_', worker_id)[:80]}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = folder / f".{name}.tmp"
    with tmp.open("wb") as f:
        f.write(b"\n".join(lines) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    path = folder / (name + SUFFIX)
    tmp.rename(path)  # complete or absent: another emitter never claims half a file
    return path


def claim(directory: str) -> tuple[list[Payload], list[Item]]:
    """Take every spool file in ``directory`` (each exactly once, even with emitters starting together)."""
    payloads: list[Payload] = []
    items: list[Item] = []
    folder = Path(directory)
    if not folder.is_dir():
        return payloads, items
    for path in sorted(folder.glob("*" + SUFFIX)):
        mine = path.with_name(f".{path.name}.claimed-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            path.rename(mine)  # atomic: the emitter whose rename succeeds owns the file
        except FileNotFoundError:
            continue
        for line in mine.read_bytes().splitlines():
            try:
                record: dict[str, Any] = orjson.loads(line)
                if "i" in record:
                    event_type, job_id, queue, ts_s, extras = record["i"]
                    members = orjson.dumps(extras)[1:-1] if extras else None  # as event_extras writes them
                    items.append((event_type, job_id, queue, float(ts_s), members))
                else:
                    payloads.append((record["s"], record["f"].encode(), record["b"].encode()))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning("jobpulse: skipped an unreadable line of spool file %s", path.name)
        mine.unlink()
    if payloads or items:
        log.info("jobpulse: resending %d spooled events", len(payloads) + len(items))
    return payloads, items
