"""What a flush writes for hammerwork-web's job and queue views beyond each job's own record: each
queue's index of recent jobs, its latest failures with their error message, and the time of its latest
``archived`` and ``restored`` event.

A job's times, status and last error are fields of its per-job record (``JobRecord``, written once per
job per flush anyway). A queue's index of recent jobs is a sorted set of job ids scored by the time of
the job's latest event, capped at ``recent_jobs`` ids (the API reads the records it names with one MGET);
its failures are a sorted set capped at ``recent_failures``. The record's memory is bounded by queues ×
those caps, whatever the rate.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from aggregator import schema
from aggregator.effects import Effects
from aggregator.events import Event
from aggregator.jobcache import ERROR_CHARS
from aggregator.keys import Keys

FAILURES = frozenset({"failed", "timed_out", "dead"})
ARCHIVE_EVENTS = frozenset({"archived", "restored"})
NOTED = FAILURES | ARCHIVE_EVENTS  # the event types :meth:`QueueNotes.note` wants


def attempt_of(ev: Event) -> int | None:
    """The attempt number the event gives (``attempt`` or ``error.retry_attempt``, the larger), if any."""
    attempt, retry = ev.attempt, ev.error.retry_attempt if ev.error is not None else None
    if retry is None or (attempt is not None and attempt >= retry):
        return attempt
    return retry


def failure_member(ev: Event) -> str:
    """A failure as stored in the recent-failures set: ``[job id, event ms, type, message, attempt]``."""
    return orjson.dumps([ev.job_id, ev.ts_ms, ev.type, (ev.error_message or "")[:ERROR_CHARS],
                         attempt_of(ev)]).decode()


_SCORE_THEN_MEMBER = operator.itemgetter(1, 0)


def newest(scores: dict[str, int], cap: int) -> dict[str, int]:
    """The ``cap`` members a capped sorted set would keep of ``scores``: the highest scores, ties
    going to the greater member (Redis orders equal scores by member bytes; str order is the same)."""
    if len(scores) <= cap:
        return scores
    # (a sort in C: for a flush's few hundred jobs a third faster than heapq.nlargest with a key)
    return dict(sorted(scores.items(), key=_SCORE_THEN_MEMBER, reverse=True)[:cap])


_TS = operator.attrgetter("ts_ms")


def newest_failures(failures: list[Event], cap: int) -> dict[str, int]:
    """The members a capped failures set would keep of ``failures`` (as :func:`newest`), serialising
    only those that can make it: the newest down to the ``cap``-th distinct member's time."""
    failures.sort(key=_TS, reverse=True)
    members: dict[str, int] = {}
    floor = -1
    for ev in failures:
        if ev.ts_ms < floor:
            break  # older than ``cap`` members already taken
        members[failure_member(ev)] = ev.ts_ms
        if floor < 0 and len(members) >= cap:
            floor = ev.ts_ms
    return newest(members, cap)


@dataclass
class QueueNotes:
    """The writes of one flush's recent-job index entries, failures and archive times."""

    keys: Keys
    partition: int
    jobs_cap: int
    failures_cap: int

    def write(self, fx: Effects, recent: Mapping[str, dict[str, int]], noted: list[Event]) -> None:
        """Add the flush's writes to ``fx``; ``recent``: queue -> job id -> time of its latest event, of
        the jobs the flush applied events to; ``noted``: its applied events whose type is in :data:`NOTED`."""
        keys, p = self.keys, self.partition
        failures: dict[str, list[Event]] = {}  # queue -> its failure events
        last: dict[tuple[str, str], int] = {}  # (queue, archived|restored) -> latest ms
        for ev in noted:
            kind = ev.type
            if kind in FAILURES:
                if self.failures_cap:
                    failures.setdefault(ev.queue, []).append(ev)
            elif ev.ts_ms > last.get((ev.queue, kind), -1):
                last[ev.queue, kind] = ev.ts_ms
        if self.jobs_cap:
            # each job in the index of the queue of its latest event, scored by that event's time
            for queue, scores in recent.items():
                fx.capped_add(keys.recent_jobs(p, queue), newest(scores, self.jobs_cap), self.jobs_cap)
        for queue, queue_failures in failures.items():
            fx.capped_add(keys.recent_failures(p, queue), newest_failures(queue_failures, self.failures_cap),
                          self.failures_cap)
        for (queue, event_type), ts in last.items():
            for totals in (keys.totals(p, queue), keys.summary(p)):
                fx.maximum(totals, schema.LAST_OF + event_type, ts)
