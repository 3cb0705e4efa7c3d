"""Folding a batch of stream entries into the writes it causes: pure, no I/O.

The consumer reads the prior state of the batch's jobs, calls :func:`fold`,
and applies the resulting :class:`Effects` atomically. Given the same entries
and prior state, the result is always the same, which is what makes a
re-read after a crash safe.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson

from aggregator import errors, sketch
from aggregator.effects import Effects
from aggregator.events import (
    EVENT_FIELD,
    HEARTBEAT_FIELD,
    Event,
    Heartbeat,
    Rejected,
    parse_event,
    parse_heartbeat,
)
from aggregator.keys import GRANULARITY_S, Keys, bucket_start
from aggregator.sketch import histogram_index

PENDING, RUNNING, AWAITING_RETRY, FINISHED = "P", "R", "W", "F"

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
SAMPLE_MESSAGE_CHARS = 500


@dataclass(slots=True)
class JobState:
    """A job's latest applied state as stored in its job hash."""

    state: str
    ts_ms: int
    rank: int
    queue: str


@dataclass(slots=True)
class Prior:
    """What Redis knows about a batch's jobs before the batch."""

    jobs: dict[str, JobState] = field(default_factory=dict)
    seen_event_ids: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Entry:
    """One stream entry, parsed."""

    entry_id: str
    arrival_ms: int
    item: Event | Heartbeat | Rejected


@dataclass(frozen=True)
class FoldConfig:
    """The settings folding depends on."""

    keys: Keys
    partition: int
    retention_s: dict[str, int]
    dedup_window_s: int
    job_ttl_s: int
    future_tolerance_ms: int


@dataclass
class _Track:
    """A job's state while the batch is folded."""

    prior: JobState | None
    current: JobState | None
    entered_ms: int | None = None  # set when the batch moved the job into a new state
    moved: bool = False  # the batch has a newer latest event (the state may be unchanged)
    event_ids: list[str] = field(default_factory=list)


def parse_entries(raw: Iterable[tuple[bytes, dict[bytes, bytes]]], max_bytes: int) -> list[Entry]:
    """Validate raw XREAD entries; bad ones become :class:`Rejected`."""
    out = []
    for entry_id_b, fields in raw:
        entry_id = entry_id_b.decode()
        arrival_ms = int(entry_id.split("-", 1)[0])
        item: Event | Heartbeat | Rejected
        if EVENT_FIELD in fields:
            item = parse_event(fields[EVENT_FIELD], max_bytes)
        elif HEARTBEAT_FIELD in fields:
            item = parse_heartbeat(fields[HEARTBEAT_FIELD], max_bytes)
        else:
            names = b",".join(sorted(fields))[:200].decode(errors="replace")
            item = Rejected(f"entry has no 'event' field (fields: {names})", b"")
        out.append(Entry(entry_id, arrival_ms, item))
    return out


def jobs_to_read(entries: list[Entry]) -> dict[str, list[str]]:
    """job_id -> event ids of the batch, the prior state the fold needs."""
    wanted: dict[str, list[str]] = {}
    for entry in entries:
        if isinstance(entry.item, Event):
            wanted.setdefault(entry.item.job_id, []).append(entry.item.event_id)
    return wanted


def fold(entries: list[Entry], prior: Prior, cfg: FoldConfig) -> Effects:
    """All writes caused by ``entries`` given what Redis held before them."""
    fx = Effects()
    keys, p = cfg.keys, cfg.partition
    wm = keys.watermark(p)
    seen = set(prior.seen_event_ids)
    tracks: dict[str, _Track] = {}
    minutes: dict[tuple[str, int], _MinuteTally] = {}
    for entry in entries:
        item = entry.item
        if isinstance(item, Rejected):
            fx.dead_letter(entry.entry_id, item.reason, item.raw)
            fx.add(wm, "dead_letters")
        elif isinstance(item, Heartbeat):
            _fold_heartbeat(fx, keys.workers(p), item, entry.arrival_ms)
            fx.add(wm, "heartbeats")
        elif item.event_id in seen:
            fx.add(wm, "duplicates")
        else:
            seen.add(item.event_id)
            if item.ts_ms > entry.arrival_ms + cfg.future_tolerance_ms:
                item.ts_ms = entry.arrival_ms
                fx.add(wm, "clamped")
            fx.add(wm, "events")
            minute = item.ts_ms // 60_000 * 60
            tally = minutes.get((item.queue, minute))
            if tally is None:
                alive = _alive_bits(minute, entry.arrival_ms // 1000, cfg)
                tally = minutes[item.queue, minute] = _MinuteTally(alive)
            _fold_counts(tally, item)
            if item.type in FAILURES and item.error_message is not None:
                _fold_error(fx, item, cfg)
            track = tracks.get(item.job_id)
            if track is None:
                known = prior.jobs.get(item.job_id)
                copy = JobState(known.state, known.ts_ms, known.rank, known.queue) if known else None
                track = tracks[item.job_id] = _Track(prior=known, current=copy)
            _advance(track, item)
    for job_id, track in tracks.items():
        _fold_job(fx, job_id, track, cfg)
    _roll_up(fx, minutes, cfg)
    return fx


def _advance(track: _Track, ev: Event) -> None:
    """Move a job to the state of ``ev`` if ``ev`` is its latest event so far."""
    track.event_ids.append(ev.event_id)
    rank = LIFECYCLE_RANK[ev.type]
    cur = track.current
    if cur is not None and (ev.ts_ms, rank) <= (cur.ts_ms, cur.rank):
        return  # older than what is applied: counted, but no gauge change
    state = STATE_AFTER[ev.type]
    if cur is None or cur.state != state or cur.queue != ev.queue:
        track.entered_ms = ev.ts_ms
    track.current = JobState(state, ev.ts_ms, rank, ev.queue)
    track.moved = True


def _gauge_key(keys: Keys, p: int, state: str, queue: str) -> str | None:
    if state == PENDING:
        return keys.pending(p, queue)
    if state == RUNNING:
        return keys.running(p, queue)
    return None


def _fold_job(fx: Effects, job_id: str, track: _Track, cfg: FoldConfig) -> None:
    keys, p = cfg.keys, cfg.partition
    cur = track.current
    assert cur is not None  # every track saw at least one event
    job_key = keys.job(p, job_id)
    if track.entered_ms is not None:
        new_set = _gauge_key(keys, p, cur.state, cur.queue)
        if track.prior is not None:
            old_set = _gauge_key(keys, p, track.prior.state, track.prior.queue)
            stale = [old_set] if old_set else []
        else:
            # Unknown job (new, or its state expired): make sure no gauge still holds it.
            stale = [keys.pending(p, cur.queue), keys.running(p, cur.queue)]
        for key in stale:
            if key and key != new_set:
                fx.zrem[key].add(job_id)
        if new_set:
            fx.zadd[new_set][job_id] = track.entered_ms
    if track.moved:
        # stored even when the state is unchanged: a later, older event must compare against it
        fx.hset[job_key].update(s=cur.state, t=str(cur.ts_ms), o=str(cur.rank), q=cur.queue)
    for event_id in track.event_ids:
        fx.hset[job_key]["e:" + event_id] = "1"
    # A finished job is kept only as long as duplicates of its events may arrive.
    fx.expire_s[job_key] = cfg.dedup_window_s if cur.state == FINISHED else cfg.job_ttl_s


def _fold_counts(tally: _MinuteTally, ev: Event) -> None:
    kind = ev.type
    adds = tally.adds
    key = "n:" + kind
    adds[key] = adds.get(key, 0) + 1
    if kind == "enqueued":
        key = "p:" + ev.priority
        adds[key] = adds.get(key, 0) + 1
    elif kind in OUTCOMES and ev.processing_ms is not None:
        _add_time(tally, "pt", "ps", ev.processing_ms)
        key = f"ph:{histogram_index(ev.processing_ms)}"
        tally.types[key] = tally.types.get(key, 0) + 1
    elif kind == "started" and ev.wait_ms is not None:
        _add_time(tally, "wt", "ws", ev.wait_ms)
        key = f"wh:{histogram_index(ev.wait_ms)}"
        tally.types[key] = tally.types.get(key, 0) + 1
    if ev.job_type:
        key = f"t:{kind}:{ev.job_type}"
        tally.types[key] = tally.types.get(key, 0) + 1
    if ev.ts_ms < tally.first_ms:
        tally.first_ms = ev.ts_ms
    if ev.ts_ms > tally.last_ms:
        tally.last_ms = ev.ts_ms


def _add_time(tally: _MinuteTally, name: str, sketch_name: str, value_ms: int) -> None:
    adds = tally.adds
    for fld, n in ((f"{name}_sum", value_ms), (f"{name}_n", 1), (f"{sketch_name}:{sketch.bin_of(value_ms)}", 1)):
        adds[fld] = adds.get(fld, 0) + n
    fld = f"{name}_max"
    if value_ms > tally.maxes.get(fld, -1):
        tally.maxes[fld] = value_ms


@dataclass(slots=True)
class _MinuteTally:
    """One queue's events of one event-time minute in the batch: bucket fields and totals."""

    alive: int  # bit per granularity whose bucket still exists; writing an expired one would resurrect it
    adds: dict[str, int] = field(default_factory=dict)
    maxes: dict[str, int] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)  # totals only: per job type counts, histogram buckets
    first_ms: int = 2**63
    last_ms: int = -1


_TOTALS_TOO = frozenset({"pt_sum", "pt_n", "wt_sum", "wt_n"})


def _alive_bits(minute: int, arrival_s: int, cfg: FoldConfig) -> int:
    alive = 0
    for bit, (gran, step_s) in enumerate(GRANULARITY_S.items()):
        if minute - minute % step_s + step_s + cfg.retention_s[gran] > arrival_s:
            alive |= 1 << bit
    return alive


def _roll_up(fx: Effects, minutes: dict[tuple[str, int], _MinuteTally], cfg: FoldConfig) -> None:
    """Add each minute tally into its queue's totals and its minute, hour and day buckets."""
    keys, p = cfg.keys, cfg.partition
    queues = fx.sadd[keys.queues(p)]
    for (q, minute), t in minutes.items():
        queues.add(q)
        totals = keys.totals(p, q)
        dst = fx.incr[totals]
        for fld, n in t.adds.items():
            if fld in _TOTALS_TOO or (fld[1] == ":" and fld[0] in "np"):  # n:<type>, p:<priority>, sums
                dst[fld] = dst.get(fld, 0) + n
        for fld, n in t.types.items():
            dst[fld] = dst.get(fld, 0) + n
        fx.minimum(totals, "first_ms", t.first_ms)
        fx.maximum(totals, "last_ms", t.last_ms)
        for bit, (gran, step_s) in enumerate(GRANULARITY_S.items()):
            if not t.alive >> bit & 1:
                continue
            start = minute - minute % step_s
            for key in (keys.bucket(p, gran, start, q), keys.bucket(p, gran, start)):
                dst = fx.incr[key]
                for fld, n in t.adds.items():
                    dst[fld] = dst.get(fld, 0) + n
                for fld, value in t.maxes.items():
                    fx.maximum(key, fld, value)
                fx.expire_at_s[key] = start + step_s + cfg.retention_s[gran]


def _fold_error(fx: Effects, ev: Event, cfg: FoldConfig) -> None:
    keys, p = cfg.keys, cfg.partition
    message = ev.error_message or ""
    error_type = ev.error_type or errors.classify(message)
    sig = errors.signature(error_type + "\n" + message)
    hour = bucket_start(ev.ts_ms, 3600)
    key = keys.errors(p, hour)
    fx.add(key, "n:" + sig)
    fx.add(key, f"q:{sig}:{ev.queue}")
    fx.minimum(key, "f:" + sig, ev.ts_ms)
    fx.maximum(key, "l:" + sig, ev.ts_ms)
    fx.expire_at_s[key] = hour + 3600 + cfg.retention_s["h"]
    sig_key = keys.error_sig(p, sig)
    fx.set_once(sig_key, "type", error_type)
    fx.set_once(sig_key, "sample", message[:SAMPLE_MESSAGE_CHARS])
    fx.expire_s[sig_key] = cfg.retention_s["h"] + 3600


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
