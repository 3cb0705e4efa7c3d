"""What a flush tells of its jobs beyond the gauges: each job's times, status and last error for the
bounded per-queue record of recent jobs, each queue's latest failures, and the time of the latest
``archived`` and ``restored`` event.

A job's info is the array :data:`aggregator.schema.JOB_INFO`. Within a flush it is built event by event
here; ``apply.lua`` (op ``Q``) merges it into the stored one with the same rules (the smallest creation
time, the largest other times, the latest event by time and lifecycle rank, the starts added up; ties
keep what came first), so however the entries are split into flushes the stored info is the same. Each
queue keeps only its ``recent_jobs`` most recently active jobs and its ``recent_failures`` latest
failures: the record's memory is bounded by queues × those caps, whatever the rate.
"""

from __future__ import annotations

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
    """The attempt number the event gives, if any."""
    given = [a for a in (ev.attempt, ev.error.retry_attempt if ev.error is not None else None) if a is not None]
    return max(given) if given else None


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
        ts, kind = ev.ts_ms, ev.type
        if self.jobs_cap:
            self._note_job(ev, ts, kind, rank)
        if kind in FAILURES and self.failures_cap:
            self.failures.setdefault(ev.queue, {})[failure_member(ev)] = ts
        if kind in ARCHIVE_EVENTS:
            key = (ev.queue, kind)
            if ts > self.last.get(key, -1):
                self.last[key] = ts

    def _note_job(self, ev: Event, ts: int, kind: str, rank: int) -> None:
        info = self.info.get(ev.job_id)
        if info is None:
            info = self.info[ev.job_id] = [None] * len(schema.JOB_INFO)
            info[STARTS] = 0
        if kind == "enqueued" and (info[CREATED] is None or ts < info[CREATED]):
            info[CREATED], info[CREATED_PRIORITY] = ts, ev.priority
        elif kind == "started":
            info[STARTS] += 1
            if info[STARTED] is None or ts > info[STARTED]:
                info[STARTED] = ts
        elif kind == "completed" and (info[COMPLETED] is None or ts > info[COMPLETED]):
            info[COMPLETED] = ts
        if kind in FAILURES and (info[FAILED] is None or ts > info[FAILED]):
            info[FAILED], info[ERROR] = ts, (ev.error_message or "")[:ERROR_CHARS] if ev.error is not None else None
        if info[TS] is None or (ts, rank) > (info[TS], info[RANK]):
            info[TS], info[RANK], info[STATUS], info[PRIORITY], info[QUEUE] = ts, rank, kind, ev.priority, ev.queue
        if kind in OUTCOMES and ev.processing_ms is not None and (info[OUTCOME] is None or ts > info[OUTCOME]):
            info[OUTCOME], info[PROCESSING] = ts, ev.processing_ms
        attempt = _attempt(ev)
        if attempt is not None and (info[ATTEMPT] is None or attempt > info[ATTEMPT]):
            info[ATTEMPT] = attempt

    def write(self, fx: Effects) -> None:
        """Add the flush's writes to ``fx``."""
        keys, p = self.keys, self.partition
        if self.info:
            info_key = keys.job_info(p)
            for job_id, info in self.info.items():
                fx.recent_job(info_key, keys.recent_jobs(p, str(info[QUEUE])), job_id, orjson.dumps(info),
                              self.jobs_cap)
        for queue, members in self.failures.items():
            fx.capped_add(keys.recent_failures(p, queue), members, self.failures_cap)
        for (queue, kind), ts in self.last.items():
            for totals in (keys.totals(p, queue), keys.summary(p)):
                fx.maximum(totals, schema.LAST_OF + kind, ts)
