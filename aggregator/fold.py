"""Folding stream entries into the writes they cause: pure, no I/O.

The pipeline (``pipeline.py``) adds each chunk it reads to an open
:class:`Flush`, with the stored state of the chunk's jobs at hand (from the
owner's :class:`~aggregator.jobcache.JobCache`, or read from Redis), and
applies the flush's :class:`Effects` atomically. Given the same entries and
prior state, the stored result is the same however the entries are split into
flushes (a property test checks it), which is what makes a re-read after a
crash safe.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

import msgspec
import orjson

from aggregator import schema
from aggregator.effects import Effects
from aggregator.events import (
    EVENT_FIELD,
    HEARTBEAT_FIELD,
    Event,
    Heartbeat,
    Rejected,
    fast_event,
    model_event,
    parse_event,
    parse_heartbeat,
)
from aggregator.failures import FailureTally
from aggregator.jobcache import ERROR_CHARS, JobCache, JobRecord, Known
from aggregator.keys import Keys
from aggregator.recent import NOTED, QueueNotes
from aggregator.rollup import ALL_ROLLED_S
from aggregator.tally import MinuteTally, alive_bits, roll_up

PENDING, RUNNING, AWAITING_RETRY, FINISHED = (
    schema.JOB_PENDING, schema.JOB_RUNNING, schema.JOB_AWAITING_RETRY, schema.JOB_FINISHED)

STATE_AFTER = {
    "enqueued": PENDING,
    "retried": PENDING,
    "restored": PENDING,
    "started": RUNNING,
    "failed": AWAITING_RETRY,
    "timed_out": AWAITING_RETRY,
    "completed": FINISHED,
    "dead": FINISHED,
    "cancelled": FINISHED,
    "archived": FINISHED,
}
# Breaks ties between events of one job stamped with the same millisecond.
LIFECYCLE_RANK = {
    "enqueued": 0,
    "started": 1,
    "completed": 2,
    "failed": 2,
    "timed_out": 2,
    "retried": 3,
    "dead": 4,
    "cancelled": 4,
    "archived": 5,
    "restored": 6,
}
OUTCOMES = frozenset({"completed", "failed", "timed_out", "dead"})
FAILURES = frozenset({"failed", "timed_out", "dead"})


# One stream entry, parsed: (entry id, arrival ms from the id, what it holds). A plain tuple: one is
# built per event, and a tuple costs a fraction of an object with attributes.
Entry = tuple[str, int, Event | Heartbeat | Rejected]


@dataclass(frozen=True)
class FoldConfig:
    """The settings folding depends on."""

    keys: Keys
    partition: int
    retention_s: dict[str, int]
    dedup_window_s: int
    job_ttl_s: int
    future_tolerance_ms: int
    recent_jobs: int = 0  # job ids kept per queue in its index of recent jobs (aggregator/recent.py)
    recent_failures: int = 0  # failures kept per queue

    @functools.cached_property
    def job_key_prefix(self) -> str:
        """``keys.job(partition, "")``: a job's key is this plus its id."""
        return self.keys.job(self.partition, "")

    @functools.cached_property
    def _gauges(self) -> dict[tuple[str, str], tuple[str, str, str]]:
        return {}

    def gauge(self, state: str, queue: str) -> tuple[str, str, str] | None:
        """The sorted set holding jobs of ``queue`` in ``state``, its summary field, and the queue."""
        if state != PENDING and state != RUNNING:
            return None
        got = self._gauges.get((state, queue))
        if got is None:
            if state == PENDING:
                got = (self.keys.pending(self.partition, queue), schema.PENDING, queue)
            else:
                got = (self.keys.running(self.partition, queue), schema.RUNNING, queue)
            self._gauges[state, queue] = got
        return got


@dataclass(slots=True)
class _Track:
    """A job while a flush is folded.

    ``record`` is the one the owner's cache holds, changed in place as events
    apply, or a new one for a job nothing is stored of. Nothing needs the
    record as it was: what the gauges need is kept here, the cache's trim
    reads only whether the job is finished (and a job this flush changes is
    stored again by it), and whatever makes the pipeline re-read from Redis
    (a refused or unanswered apply, a lost lease) drops the cache with it.
    """

    record: JobRecord
    prior_state: str | None  # as stored before the flush (None: nothing is)
    prior_queue: str
    expires_at_s: float | None  # of the stored key, if known
    entered_ms: int | None = None  # set when the flush moved the job into a new state
    changed: bool = False  # the flush applied an event (the state may be unchanged)

    @classmethod
    def start(cls, known: Known | None) -> _Track:
        """A job's track from what is stored (``None``: nothing is)."""
        if known is None or known.record is None:
            return cls(JobRecord("", 0, 0, "", []), None, "", known.expires_at_s if known else None)
        r = known.record
        return cls(r, r.state, r.queue, known.expires_at_s)


def parse_entries(raw: Iterable[tuple[bytes, list[bytes] | dict[bytes, bytes]]],
                  max_bytes: int) -> tuple[list[Entry], set[str]]:
    """Validate raw stream entries (fields as a flat list, or a dict); bad ones become :class:`Rejected`.
    Also returns the ids of the jobs the events name (as :func:`event_job_ids`, without a second pass)."""
    out: list[Entry] = []
    append = out.append
    job_ids: set[str] = set()
    add_id = job_ids.add
    item: Event | Heartbeat | Rejected | None
    ms_prefix, arrival_ms = b"-", 0  # entries of one millisecond share it: "<ms>-"
    for entry_id_b, flat in raw:
        if not entry_id_b.startswith(ms_prefix):
            cut = entry_id_b.index(b"-")
            ms_prefix, arrival_ms = entry_id_b[: cut + 1], int(entry_id_b[:cut])
        entry_id = entry_id_b.decode()
        if type(flat) is list and len(flat) == 2 and flat[0] == EVENT_FIELD:  # the usual entry: no dict needed
            value = flat[1]  # (parse_event, inlined)
            if len(value) > max_bytes:
                item = parse_event(value, max_bytes)  # (refused, and says why)
            else:
                item = fast_event(value)
                if item is not None:
                    add_id(item.job_id)
                    append((entry_id, arrival_ms, item))
                    continue
                item = model_event(value)
        else:
            fields = dict(zip(flat[::2], flat[1::2], strict=True)) if isinstance(flat, list) else flat
            if EVENT_FIELD in fields:
                item = parse_event(fields[EVENT_FIELD], max_bytes)
            elif HEARTBEAT_FIELD in fields:
                item = parse_heartbeat(fields[HEARTBEAT_FIELD], max_bytes)
            else:
                names = b",".join(sorted(fields))[:200].decode(errors="replace")
                item = Rejected(f"entry has no 'event' field (fields: {names})", b"")
        if type(item) is Event:
            add_id(item.job_id)
        append((entry_id, arrival_ms, item))
    return out, job_ids


def event_job_ids(entries: list[Entry]) -> set[str]:
    """The ids of the jobs whose events ``entries`` hold."""
    return {item.job_id for _, _, item in entries if type(item) is Event}


class Flush:
    """The writes of one flush of one partition, folded entry by entry.

    Entries are added in chunks as they are read; every write to the same
    field is merged in memory, and a job's state is written once, at
    :meth:`finish`, however many of its events the flush holds.
    """

    def __init__(self, cfg: FoldConfig) -> None:
        self.cfg = cfg
        self.fx = Effects()
        self.tracks: dict[str, _Track] = {}
        self.minutes: dict[str, dict[int, MinuteTally]] = {}  # queue -> minute (epoch s) -> its tally
        self.entries = 0
        self.last_entry_id: str | None = None
        self.notes = QueueNotes(cfg.keys, cfg.partition, cfg.recent_jobs, cfg.recent_failures)
        self.noted: list[Event] = []  # applied events whose type is in NOTED, for self.notes
        self.failures = FailureTally()

    def jobs_to_read(self, ids: Iterable[str], cache: JobCache, now_s: float) -> list[str]:
        """Jobs among ``ids`` (see :func:`event_job_ids`) whose stored state this flush does not know yet."""
        tracks = self.tracks
        return cache.missing([job_id for job_id in ids if job_id not in tracks], now_s)

    def add(self, entries: list[Entry], cache: JobCache) -> None:
        """Fold ``entries``; every job they name is in ``self.tracks`` or ``cache``."""
        fx, cfg = self.fx, self.cfg
        wm = cfg.keys.watermark(cfg.partition)
        tracks, minutes, noted, failures = self.tracks, self.minutes, self.noted, self.failures
        events = duplicates = clamped = 0
        max_age_ms, future_ms = max(cfg.retention_s.values()) * 1000, cfg.future_tolerance_ms
        for entry_id, arrival_ms, item in entries:
            if type(item) is not Event:
                if isinstance(item, Rejected):
                    fx.dead_letter(entry_id, item.reason, item.raw)
                    fx.add(wm, schema.WM_DEAD_LETTERS)
                elif isinstance(item, Heartbeat):
                    _fold_heartbeat(fx, cfg.keys.workers(cfg.partition), item, arrival_ms)
                    fx.add(wm, schema.WM_HEARTBEATS)
                continue
            track = tracks.get(item.job_id)
            if track is None:
                track = tracks[item.job_id] = _Track.start(cache.get(item.job_id))
            if item.event_id in track.record.event_ids:
                duplicates += 1
                continue
            ts_ms = item.ts_ms
            if ts_ms < arrival_ms - max_age_ms:
                # no bucket keeps it, and as a pending job it would age the queue by centuries
                reason = f"timestamp too old: more than the longest retention ({max_age_ms // 1000} s) before arrival"
                fx.dead_letter(entry_id, reason, msgspec.json.encode(item))
                fx.add(wm, schema.WM_DEAD_LETTERS)
                continue
            if ts_ms > arrival_ms + future_ms:
                item.ts_ms = ts_ms = arrival_ms
                clamped += 1
            events += 1
            minute = ts_ms // 60_000 * 60
            # (two plain lookups cost less than building and hashing a (queue, minute) key)
            of_queue = minutes.get(item.queue)
            if of_queue is None:
                of_queue = minutes[item.queue] = {}
            tally = of_queue.get(minute)
            if tally is None:
                tally = of_queue[minute] = MinuteTally(alive_bits(minute, arrival_ms // 1000, cfg))
            # The event's counts, raw (one dict update each, the commonest path of all);
            # MinuteTally.expand turns them into stored fields once per flush.
            kind = item.type
            kinds = tally.kinds
            kinds[kind] = kinds.get(kind, 0) + 1
            if kind == "enqueued":
                priorities = tally.priorities
                priorities[item.priority] = priorities.get(item.priority, 0) + 1
            elif kind == "started":
                if item.wait_ms is not None:
                    waits = tally.wait_ms
                    waits[item.wait_ms] = waits.get(item.wait_ms, 0) + 1
            elif kind in OUTCOMES and item.processing_ms is not None:
                took = tally.processing_ms
                took[item.processing_ms] = took.get(item.processing_ms, 0) + 1
            if item.job_type:
                job_types = tally.job_types
                job_types[kind, item.job_type] = job_types.get((kind, item.job_type), 0) + 1
            if ts_ms < tally.first_ms:
                tally.first_ms = ts_ms
            if ts_ms > tally.last_ms:
                tally.last_ms = ts_ms
            if kind in NOTED:  # failures, archived and restored: a few per job at most
                if kind in FAILURES and item.error is not None:
                    failures.count(item.error, item.queue, ts_ms)
                noted.append(item)
            _advance(track, item)
        for fld, n in ((schema.WM_EVENTS, events), (schema.WM_DUPLICATES, duplicates), (schema.WM_CLAMPED, clamped)):
            if n:
                fx.add(wm, fld, n)
        self.entries += len(entries)
        if entries:
            self.last_entry_id = entries[-1][0]

    def finish(self, cache: JobCache, now_s: float, rolled_s: int = ALL_ROLLED_S) -> Effects:
        """The flush's writes, given the roll-up marker (aggregator/rollup.py); ``cache`` learns the
        job states they store."""
        fx, cfg = self.fx, self.cfg
        recent: dict[str, dict[str, int]] = {}  # queue -> job id -> time of its latest event
        unknown: dict[str, list[str]] = {}  # queue -> jobs nothing was stored of
        for job_id, track in self.tracks.items():
            if not track.changed:
                continue  # only duplicates: nothing to write
            _fold_job(fx, job_id, track, cfg, cache, now_s, unknown)
            record = track.record
            scores = recent.get(record.queue)
            if scores is None:
                scores = recent[record.queue] = {}
            scores[job_id] = record.ts_ms
        for queue, jobs in unknown.items():
            for state in (PENDING, RUNNING):
                _leave(fx, cfg.gauge(state, queue), jobs)  # type: ignore[arg-type]  # PENDING and RUNNING have sets
        roll_up(fx, self.minutes, cfg, rolled_s)
        self.failures.write(fx, cfg)
        self.notes.write(fx, recent, self.noted)
        return fx


def fold(entries: list[Entry], prior: dict[str, JobRecord], cfg: FoldConfig, now_s: float = 0.0) -> Effects:
    """All writes caused by ``entries`` given the stored state of their jobs (pure; for tests and tools)."""
    cache = JobCache(capacity=len(prior) + len(entries) + 1)
    for job_id, record in prior.items():
        cache.put(job_id, Known(record.copy()))  # folding changes the records it is given
    flush = Flush(cfg)
    for job_id in flush.jobs_to_read(event_job_ids(entries), cache, now_s):
        cache.put(job_id, Known(None))
    flush.add(entries, cache)
    return flush.finish(cache, now_s)


def _advance(track: _Track, ev: Event) -> None:
    """Apply ``ev`` to its job: the state if ``ev`` is its latest event so far, and the fields of
    hammerwork-web's job views (JobRecord). Those take the smallest creation time, the largest other
    times, the latest event by (time, rank), the starts added up, ties keeping what came first: the
    record is the same however the events are split into flushes (and, but for ties, in any order).
    """
    r = track.record
    r.event_ids.append(ev.event_id)
    track.changed = True
    kind, ts = ev.type, ev.ts_ms
    if kind == "started":
        r.starts += 1
        if r.started_ms is None or ts > r.started_ms:
            r.started_ms = ts
    elif kind == "enqueued":
        if r.created_ms is None or ts < r.created_ms:
            r.created_ms, r.priority = ts, ev.priority
    elif kind in OUTCOMES:
        if kind == "completed":
            if r.completed_ms is None or ts > r.completed_ms:
                r.completed_ms = ts
        elif r.failed_ms is None or ts > r.failed_ms:
            r.failed_ms, r.error = ts, ev.error.message[:ERROR_CHARS] if ev.error is not None else None
        if ev.processing_ms is not None and (r.outcome_ms is None or ts > r.outcome_ms):
            r.outcome_ms, r.processing_ms = ts, ev.processing_ms
    attempt = ev.attempt
    if ev.error is not None and ev.error.retry_attempt is not None and (attempt is None or
                                                                        ev.error.retry_attempt > attempt):
        attempt = ev.error.retry_attempt
    if attempt is not None and (r.attempt is None or attempt > r.attempt):
        r.attempt = attempt
    rank = LIFECYCLE_RANK[kind]
    if r.state and (ts < r.ts_ms or (ts == r.ts_ms and rank <= r.rank)):
        return  # older than what is applied: counted, but no gauge change
    state = STATE_AFTER[kind]
    if r.state != state or r.queue != ev.queue:
        track.entered_ms = ts
        r.state = state
        r.queue = ev.queue
    r.ts_ms = ts
    r.rank = rank
    r.kind = kind
    if r.created_ms is None:  # no enqueue seen: the latest event's priority
        r.priority = ev.priority


def _fold_job(fx: Effects, job_id: str, track: _Track, cfg: FoldConfig, cache: JobCache, now_s: float,
              unknown: dict[str, list[str]]) -> None:
    """The job's gauge moves and its record's write (a track with an applied event only); a job
    nothing was stored of is added to ``unknown`` (queue -> job ids) instead of leaving a gauge."""
    record = track.record
    if track.entered_ms is not None:
        new = cfg.gauge(record.state, record.queue)
        if track.prior_state is None:
            # Unknown job (new, or its state expired): no gauge may still hold it. Taken out of
            # both of its queue's sets for the whole flush at once, before additions, so a job
            # that is now in one of them is put back (the gauge counts what ZREM and ZADD did).
            jobs = unknown.get(record.queue)
            if jobs is None:
                jobs = unknown[record.queue] = []
            jobs.append(job_id)
        else:
            old = cfg.gauge(track.prior_state, track.prior_queue)
            if old and old != new:
                _leave(fx, old, (job_id,))
        if new:
            fx.gauge_add(new[0], new[1], job_id, track.entered_ms)
            if new[1] == schema.PENDING:
                fx.oldest[new[0]] = new[2]
    # A finished job is kept only as long as duplicates of its events may arrive.
    finished = record.state == FINISHED
    ttl_s = cfg.dedup_window_s if finished else cfg.job_ttl_s
    expires = track.expires_at_s
    if expires is None or finished != (track.prior_state == FINISHED) or expires - now_s < ttl_s / 2:
        expires = now_s + ttl_s
    else:
        ttl_s = 0  # the stored key keeps its TTL
    fx.jobs[cfg.job_key_prefix + job_id] = (record.encode(), ttl_s)
    cache.put(job_id, Known(record, expires), finished)


def _leave(fx: Effects, gauge: tuple[str, str, str], job_ids: Iterable[str]) -> None:
    fx.gauge_remove(gauge[0], gauge[1], job_ids)
    if gauge[1] == schema.PENDING:
        fx.oldest[gauge[0]] = gauge[2]


def _fold_heartbeat(fx: Effects, key: str, hb: Heartbeat, arrival_ms: int) -> None:
    record = {
        "queues": hb.queues,
        "concurrency": hb.concurrency,
        "busy": hb.busy,
        "interval_s": hb.interval_s,
        "dropped": hb.dropped,
        "seen_ms": arrival_ms,
    }
    fx.hset[key][hb.worker_id] = orjson.dumps(record).decode()
