"""What a flush tells of its jobs beyond the gauges: each job's times, status and last error for the
bounded per-queue record of recent jobs, each queue's latest failures, and the time of the latest
``archived`` and ``restored`` event.

A job's info is the array :data:`aggregator.schema.JOB_INFO`, stored joined by ``INFO_SEP``. Within a
flush it is built event by event here; ``apply.lua`` (op ``Q``) merges it into the stored one with the
same rules (the smallest creation time, the largest other times, the latest event by time and lifecycle
rank, the starts added up; ties keep what came first), so however the entries are split into flushes the
stored info is the same. Each queue keeps only its ``recent_jobs`` most recently active jobs and its
``recent_failures`` latest failures: the record's memory is bounded by queues × those caps, whatever the
rate.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass, field
from typing import Any

import orjson

from aggregator import schema
from aggregator.effects import Effects
from aggregator.events import Event
from aggregator.keys import Keys

FAILURES = frozenset({"failed", "timed_out", "dead"})
OUTCOMES = frozenset({"completed", *FAILURES})
ARCHIVE_EVENTS = frozenset({"archived", "restored"})
ERROR_CHARS = 500  # of a message kept in the record

# positions in the info array (0-based here; apply.lua counts from 1)
(CREATED, CREATED_PRIORITY, STARTED, COMPLETED, FAILED, ERROR, TS, RANK, STATUS, PRIORITY, OUTCOME, PROCESSING,
 ATTEMPT, STARTS, QUEUE) = range(len(schema.JOB_INFO))


def _attempt(ev: Event) -> int | None:
    """The attempt number the event gives (``attempt`` or ``error.retry_attempt``, the larger), if any."""
    attempt, retry = ev.attempt, ev.error.retry_attempt if ev.error is not None else None
    if retry is None or (attempt is not None and attempt >= retry):
        return attempt
    return retry


_SEP, _SEP_STR = schema.INFO_SEP.encode(), schema.INFO_SEP
_INT_FIELDS = frozenset({CREATED, STARTED, COMPLETED, FAILED, TS, RANK, OUTCOME, PROCESSING, ATTEMPT, STARTS})


def encode_info(info: list[Any]) -> bytes:
    """The stored form of a job's info: its fields joined by INFO_SEP, empty for None."""
    return _SEP_STR.join(["" if v is None else str(v) for v in info]).encode()


def decode_info(raw: bytes) -> list[Any]:
    """A stored info as the array (ints where the field is a number, None where it is empty)."""
    parts = raw.split(_SEP)
    return [None if not v else int(v) if i in _INT_FIELDS else v.decode() for i, v in enumerate(parts)]


def _message(ev: Event) -> str | None:
    """The event's error message as kept (cut, and without the separator), if it carries an error."""
    if ev.error is None:
        return None
    return ev.error.message[:ERROR_CHARS].replace(schema.INFO_SEP, " ")


def failure_member(ev: Event) -> bytes:
    """A failure as stored in the recent-failures set: ``[job id, event ms, type, message, attempt]``."""
    return orjson.dumps([ev.job_id, ev.ts_ms, ev.type, (ev.error_message or "")[:ERROR_CHARS], _attempt(ev)])


@dataclass
class RecentJobs:
    """The recent-jobs info, failures and archive times of one flush."""

    keys: Keys
    partition: int
    jobs_cap: int
    failures_cap: int
    info: dict[str, list[Any]] = field(default_factory=dict)  # job id -> JOB_INFO array
    failures: dict[str, dict[bytes, int]] = field(default_factory=dict)  # queue -> member -> event ms
    last: dict[tuple[str, str], int] = field(default_factory=dict)  # (queue, archived|restored) -> latest ms

    def note(self, ev: Event, rank: int) -> None:
        """Fold one applied (not duplicate) event."""
        kind = ev.type
        if kind in FAILURES and self.failures_cap:
            self.failures.setdefault(ev.queue, {})[failure_member(ev)] = ev.ts_ms
        elif kind in ARCHIVE_EVENTS:
            key = (ev.queue, kind)
            if ev.ts_ms > self.last.get(key, -1):
                self.last[key] = ev.ts_ms
        if not self.jobs_cap:
            return
        # the job's info; this runs for every event: plain comparisons, no allocation but a job's first array
        ts = ev.ts_ms
        info = self.info.get(ev.job_id)
        if info is None:  # the job's first event in this flush: it is also its latest so far
            info = self.info[ev.job_id] = [None, None, None, None, None, None, ts, rank, kind, ev.priority, None,
                                           None, None, 0, ev.queue]
        else:
            latest = info[TS]
            if ts > latest or (ts == latest and rank > info[RANK]):
                info[TS], info[RANK], info[STATUS], info[PRIORITY], info[QUEUE] = ts, rank, kind, ev.priority, ev.queue
        if kind == "enqueued":
            if info[CREATED] is None or ts < info[CREATED]:
                info[CREATED], info[CREATED_PRIORITY] = ts, ev.priority
        elif kind == "started":
            info[STARTS] += 1
            if info[STARTED] is None or ts > info[STARTED]:
                info[STARTED] = ts
        elif kind in OUTCOMES:
            if kind == "completed":
                if info[COMPLETED] is None or ts > info[COMPLETED]:
                    info[COMPLETED] = ts
            elif info[FAILED] is None or ts > info[FAILED]:
                info[FAILED], info[ERROR] = ts, _message(ev)
            if ev.processing_ms is not None and (info[OUTCOME] is None or ts > info[OUTCOME]):
                info[OUTCOME], info[PROCESSING] = ts, ev.processing_ms
        if ev.attempt is not None or ev.error is not None:
            attempt = _attempt(ev)
            if attempt is not None and (info[ATTEMPT] is None or attempt > info[ATTEMPT]):
                info[ATTEMPT] = attempt

    def write(self, fx: Effects, new_jobs: Container[str]) -> None:
        """Add the flush's writes to ``fx``; ``new_jobs``: those with no stored state before the flush."""
        keys, p = self.keys, self.partition
        if self.info:
            info_key = keys.job_info(p)
            sets: dict[str, str] = {}
            for job_id, info in self.info.items():
                queue = info[QUEUE]
                recent_key = sets.get(queue) or sets.setdefault(queue, keys.recent_jobs(p, queue))
                fx.recent_job(info_key, recent_key, job_id, encode_info(info), job_id in new_jobs, info[TS],
                              self.jobs_cap)
        for queue, members in self.failures.items():
            fx.capped_add(keys.recent_failures(p, queue), members, self.failures_cap)
        for (queue, kind), ts in self.last.items():
            for totals in (keys.totals(p, queue), keys.summary(p)):
                fx.maximum(totals, schema.LAST_OF + kind, ts)
