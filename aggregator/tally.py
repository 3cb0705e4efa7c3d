"""One flush's counts per queue and event-time minute, and the writes they add up to: the
minute, hour and day buckets of each queue and of the partition, and the queue's totals
and the partition's summary. Pure: :class:`~aggregator.fold.Flush` counts each event into
its :class:`MinuteTally` and calls :func:`roll_up` once, when the flush is finished.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aggregator import schema, sketch
from aggregator.effects import Effects, add_counts
from aggregator.keys import GRANULARITY_S
from aggregator.sketch import histogram_index

if TYPE_CHECKING:
    from aggregator.fold import FoldConfig

# value_ms -> (sketch bin field, histogram field); durations repeat a lot, the log does not need recomputing
_TIME_FIELDS: dict[str, dict[int, tuple[str, str]]] = {"pt": {}, "wt": {}}
_TIME_FIELDS_MAX = 100_000


def _time_fields(name: str, value_ms: int) -> tuple[str, str]:
    memo = _TIME_FIELDS[name]
    got = memo.get(value_ms)
    if got is None:
        if len(memo) >= _TIME_FIELDS_MAX:
            memo.clear()
        bins, hist = (schema.PT_SKETCH, schema.PT_HIST) if name == "pt" else (schema.WT_SKETCH, schema.WT_HIST)
        got = memo[value_ms] = (f"{bins}{sketch.bin_of(value_ms)}", f"{hist}{histogram_index(value_ms)}")
    return got


_TIME_NAMES = {"pt": (schema.PT_SUM, schema.PT_N, schema.PT_MAX), "wt": (schema.WT_SUM, schema.WT_N, schema.WT_MAX)}


@dataclass(slots=True)
class MinuteTally:
    """One queue's events of one event-time minute in the flush: raw counts as folded, then
    (:meth:`expand`) the bucket fields and totals they add up to."""

    alive: int  # bit per granularity whose bucket still exists; writing an expired one would resurrect it
    kinds: dict[str, int] = field(default_factory=dict)  # event type -> events
    priorities: dict[str, int] = field(default_factory=dict)  # of enqueued events
    processing_ms: dict[int, int] = field(default_factory=dict)  # value -> outcomes that took it
    wait_ms: dict[int, int] = field(default_factory=dict)  # value -> starts that waited it
    job_types: dict[tuple[str, str], int] = field(default_factory=dict)  # (event type, job type) -> events
    adds: dict[str, int] = field(default_factory=dict)
    maxes: dict[str, int] = field(default_factory=dict)
    types: dict[str, int] = field(default_factory=dict)  # totals only: per job type counts, histogram buckets
    first_ms: int = 2**63
    last_ms: int = -1

    def expand(self) -> None:
        """Turn the raw counts into stored fields: ``adds``, ``maxes`` and ``types`` (once per tally)."""
        adds, types = self.adds, self.types
        for kind, n in self.kinds.items():
            adds[schema.COUNT + kind] = n
        for priority, n in self.priorities.items():
            adds[schema.PRIORITY + priority] = n
        for name, values in (("pt", self.processing_ms), ("wt", self.wait_ms)):
            if not values:
                continue
            total = count = 0
            memo = _TIME_FIELDS[name]
            for value_ms, n in values.items():
                bin_field, hist_field = memo.get(value_ms) or _time_fields(name, value_ms)
                adds[bin_field] = adds.get(bin_field, 0) + n
                types[hist_field] = types.get(hist_field, 0) + n
                total += value_ms * n
                count += n
            sum_field, n_field, max_field = _TIME_NAMES[name]
            adds[sum_field], adds[n_field] = total, count
            self.maxes[max_field] = max(values)
        for (kind, job_type), n in self.job_types.items():
            types[f"{schema.JOB_TYPE}{kind}:{job_type}"] = n


_TOTALS_PREFIXES = frozenset({schema.COUNT, schema.PRIORITY})


def expires_at_s(gran: str, start_s: int, cfg: FoldConfig) -> int:
    """When the bucket of ``gran`` starting at ``start_s`` expires: its retention after it ends."""
    return start_s + GRANULARITY_S[gran] + cfg.retention_s[gran]


def alive_bits(minute: int, arrival_s: int, cfg: FoldConfig) -> int:
    """A bit per granularity (minute, hour, day) whose bucket holding ``minute`` is still kept at ``arrival_s``."""
    alive = 0
    for bit, (gran, step_s) in enumerate(GRANULARITY_S.items()):
        if expires_at_s(gran, minute - minute % step_s, cfg) > arrival_s:
            alive |= 1 << bit
    return alive


# A bucket that more of a flush's tallies than this add to is merged in memory (see roll_up).
FANOUT_MAX_WRITERS = 4
_GRAN = list(GRANULARITY_S)
_STEP_S = list(GRANULARITY_S.values())
_HOUR_S = GRANULARITY_S["h"]


def roll_up(fx: Effects, minutes: dict[str, dict[int, MinuteTally]], cfg: FoldConfig, rolled_s: int) -> None:
    """Add the minute tallies into their queues' totals and their minute, hour and day buckets; a
    minute from ``rolled_s`` (the roll-up marker, aggregator/rollup.py) on goes to its minute buckets only.

    A tally's counts go to up to six buckets (its queue's and the partition's,
    per granularity). Its queue's minutes of one hour are summed first, and the
    sum goes to the hour and day buckets: a backfill's flush holds hundreds of
    minutes per queue, and adding each to four more buckets was most of its
    folding. Sent once, Redis adds a sum to each of its buckets (one ``F`` op):
    that costs Redis a few hash calls per bucket and spares the folding thread
    merging and sending the same fields several times. A bucket many of the
    flush's sums add to (the partition's minute of many queues, its hours) is
    merged here instead, so Redis still gets one write for it.
    """
    keys, p = cfg.keys, cfg.partition
    summary = keys.summary(p)
    fx.sadd[keys.queues(p)].update(minutes)
    targets: list[tuple[MinuteTally, list[str]]] = []  # tally or sum -> the buckets it adds to
    writers: dict[str, int] = {}  # bucket -> tallies or sums adding to it

    def to(t: MinuteTally, bits: int, start_of: int, q: str) -> None:
        buckets = []
        for bit, gran in enumerate(_GRAN):
            if bits >> bit & 1:
                start = start_of - start_of % _STEP_S[bit]
                expire_at = expires_at_s(gran, start, cfg)
                for key in (keys.bucket(p, gran, start, q), keys.bucket(p, gran, start)):
                    buckets.append(key)
                    writers[key] = writers.get(key, 0) + 1
                    fx.expire_at_s[key] = expire_at
        targets.append((t, buckets))

    for q, of_queue in minutes.items():
        # (hour, the alive bits of it and its day: 0 if it gets none of them) -> its minutes
        hours: dict[tuple[int, int], list[tuple[int, int, MinuteTally]]] = {}
        for minute, t in of_queue.items():
            t.expand()
            # Not rolled up yet: to the minute only (unless that is expired, after a long outage: then
            # straight to the rest, since the roll-up would find nothing to add to them).
            alive = t.alive if minute < rolled_s or not t.alive & 1 else t.alive & 1
            hours.setdefault((minute - minute % _HOUR_S, alive & ~1), []).append((minute, alive, t))
        life = MinuteTally(0)
        for (hour, bits), of_hour in hours.items():
            if len(of_hour) == 1:  # a lone minute: one write to all its buckets
                minute, alive, summed = of_hour[0]
                to(summed, alive, minute, q)
            else:
                summed = MinuteTally(bits)
                for minute, alive, t in of_hour:
                    if alive & 1:
                        to(t, 1, minute, q)
                    _merge(summed, t)
                if bits:
                    to(summed, bits, hour, q)
            _merge(life, summed)
        lifetime = {fld: n for fld, n in life.adds.items() if fld in schema.SUM_FIELDS or fld[:2] in _TOTALS_PREFIXES}
        lifetime.update(life.types)
        # the queue's totals, and the partition's summary (the overview reads only the latter)
        for totals in (keys.totals(p, q), summary):
            fx.add_all(totals, lifetime)
            fx.minimum(totals, schema.FIRST_MS, life.first_ms)
            fx.maximum(totals, schema.LAST_MS, life.last_ms)
    for t, buckets in targets:
        fanned = []
        for key in buckets:
            if writers[key] > FANOUT_MAX_WRITERS:
                fx.add_all(key, t.adds)
            else:
                fanned.append(key)
            for fld, value in t.maxes.items():
                fx.maximum(key, fld, value)
        if fanned:
            fx.add_to_all(fanned, t.adds)


def _merge(dst: MinuteTally, t: MinuteTally) -> None:
    """Add ``t``'s expanded fields into ``dst``: counts, per-type counts, maxima, time bounds."""
    add_counts(dst.adds, t.adds)
    add_counts(dst.types, t.types)
    maxes = dst.maxes
    for fld, value in t.maxes.items():
        if maxes.get(fld, -1) < value:
            maxes[fld] = value
    dst.first_ms = min(dst.first_ms, t.first_ms)
    dst.last_ms = max(dst.last_ms, t.last_ms)
