"""Stats arithmetic on bucket contents: pure functions, no I/O.

A bucket hash (see :mod:`fold`) holds ``n:<event_type>`` counts,
``p:<priority>`` counts, processing/wait sums, counts and maxima and the
``ps:``/``ws:`` sketch bins. A queue's totals hash holds the counts, the
sums and ``ph:``/``wh:`` counts per Prometheus histogram bucket (exact, for
``/metrics``) and ``t:<event_type>:<job_type>`` counts. :class:`Tally` is
the parsed, mergeable form of either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aggregator import schema, sketch

OUTCOMES = ("completed", "failed", "timed_out", "dead")
FAILURES = ("failed", "timed_out", "dead")
PRIORITIES = ("background", "low", "normal", "high", "critical")


# field prefix -> the Tally dict of per-bin counts it adds into
_BIN_FIELDS = {"ps": "processing", "ws": "wait", "ph": "processing_hist", "wh": "wait_hist"}


# Fields that add into one of a Tally's dicts, in the order add_flat lists them: (prefix, key is a bin number)
_DICT_FIELDS = ((schema.COUNT, False), (schema.PRIORITY, False), (schema.PT_SKETCH, True), (schema.WT_SKETCH, True),
                (schema.PT_HIST, True), (schema.WT_HIST, True))
_SUM, _MAX, _IGNORED = -1, -2, -3  # the other kinds of field: a sum, a maximum, one a Tally does not hold
# stored field name -> (index in _DICT_FIELDS or another kind, key or attribute name). Bounded: field
# names are a small vocabulary (event types, priorities, sketch and histogram bins, sums); the job type
# fields (t:) are not remembered
_SPECS: dict[bytes, tuple[int, Any]] = {}
_MAX_SPECS = 100_000


def _spec(raw: bytes) -> tuple[int, Any] | None:
    """What a stored field adds into in a Tally (remembered for the next time it is read); None: a job
    type field, for _add_field."""
    name = raw.decode()
    if name.startswith(schema.JOB_TYPE):
        return None
    spec: tuple[int, Any] = (_IGNORED, name)
    for i, (prefix, is_bin) in enumerate(_DICT_FIELDS):
        if name.startswith(prefix):
            rest = name[len(prefix):]
            spec = (i, int(rest) if is_bin else rest)
            break
    else:
        if name in schema.SUM_FIELDS:
            spec = (_SUM, name)
        elif name in schema.MAX_FIELDS:
            spec = (_MAX, name)
    if len(_SPECS) < _MAX_SPECS:
        _SPECS[raw] = spec
    return spec


@dataclass
class Tally:
    """Counts, sums and sketches of one or more merged buckets."""

    counts: dict[str, int] = field(default_factory=dict)
    priorities: dict[str, int] = field(default_factory=dict)
    pt_sum: int = 0
    pt_n: int = 0
    pt_max: int = 0
    wt_sum: int = 0
    wt_n: int = 0
    wt_max: int = 0
    processing: dict[int, int] = field(default_factory=dict)
    wait: dict[int, int] = field(default_factory=dict)
    processing_hist: dict[int, int] = field(default_factory=dict)  # totals only: HISTOGRAM_BOUNDS_MS index -> n
    wait_hist: dict[int, int] = field(default_factory=dict)
    job_types: dict[str, dict[str, int]] = field(default_factory=dict)  # totals only: job type -> event type -> n

    @classmethod
    def from_hash(cls, raw: Mapping[bytes, bytes | int]) -> Tally:
        """Parse one bucket (or totals) hash as returned by HGETALL (or a read script's sum)."""
        return cls().add_flat(list(raw.items()))

    def add_flat(self, pairs: Iterable[tuple[bytes, bytes | int]]) -> Tally:
        """Add the fields of a hash (as ``(field, value)`` pairs) into this tally (in place); return it."""
        # this loop runs per stored field of every hash a request reads: each field name is parsed once
        # per process (_SPECS), then costs one lookup
        dicts: tuple[dict[Any, int], ...] = (self.counts, self.priorities, self.processing, self.wait,
                                             self.processing_hist, self.wait_hist)
        specs = _SPECS
        for kb, vb in pairs:
            spec = specs.get(kb) or _spec(kb)
            if spec is None:
                self._add_field(kb.decode(), int(vb))
                continue
            kind, key = spec
            if kind >= 0:
                d = dicts[kind]
                d[key] = d.get(key, 0) + int(vb)
            elif kind == _SUM:
                setattr(self, key, getattr(self, key) + int(vb))
            elif kind == _MAX:
                setattr(self, key, max(getattr(self, key), int(vb)))
        return self

    @classmethod
    def from_fields(cls, raw: Mapping[str, str]) -> Tally:
        """Parse one bucket (or totals) hash already decoded to text."""
        t = cls()
        for k, v in raw.items():
            t._add_field(k, int(v))
        return t

    def _add_field(self, name: str, value: int) -> None:
        kind, _, rest = name.partition(":")
        if kind == "n":
            self.counts[rest] = self.counts.get(rest, 0) + value
        elif kind == "p":
            self.priorities[rest] = self.priorities.get(rest, 0) + value
        elif kind == "t":
            event_type, _, job_type = rest.partition(":")  # event types hold no colon; job types may
            per_type = self.job_types.setdefault(job_type, {})
            per_type[event_type] = per_type.get(event_type, 0) + value
        elif kind in _BIN_FIELDS:
            bins: dict[int, int] = getattr(self, _BIN_FIELDS[kind])
            i = int(rest)
            bins[i] = bins.get(i, 0) + value
        elif name in ("pt_sum", "pt_n", "wt_sum", "wt_n"):
            setattr(self, name, getattr(self, name) + value)
        elif name in ("pt_max", "wt_max"):
            setattr(self, name, max(getattr(self, name), value))

    def merge(self, other: Tally) -> Tally:
        """Add ``other`` into this tally (in place) and return it."""
        _add_into(self.counts, other.counts)
        _add_into(self.priorities, other.priorities)
        _add_into(self.processing, other.processing)
        _add_into(self.wait, other.wait)
        _add_into(self.processing_hist, other.processing_hist)
        _add_into(self.wait_hist, other.wait_hist)
        for job_type, per_type in other.job_types.items():
            _add_into(self.job_types.setdefault(job_type, {}), per_type)
        self.pt_sum += other.pt_sum
        self.pt_n += other.pt_n
        self.wt_sum += other.wt_sum
        self.wt_n += other.wt_n
        self.pt_max = max(self.pt_max, other.pt_max)
        self.wt_max = max(self.wt_max, other.wt_max)
        return self

    def count(self, *kinds: str) -> int:
        """Sum of the counts of the given event types."""
        get, n = self.counts.get, 0
        for k in kinds:  # not sum(<generator>): called ~10 times per queue of a response
            n += get(k, 0)
        return n

    @property
    def outcomes(self) -> int:
        """completed + failed + timed_out + dead."""
        return self.count(*OUTCOMES)

    @property
    def failures(self) -> int:
        """failed + timed_out + dead."""
        return self.count(*FAILURES)


def _add_into(dst: dict[Any, int], src: Mapping[Any, int]) -> None:
    for k, v in src.items():
        dst[k] = dst.get(k, 0) + v


def add_counts(t: Tally, counts: Mapping[str, int]) -> Tally:
    """Add event counts per type into ``t`` (in place) and return it."""
    _add_into(t.counts, counts)
    return t


def merged(tallies: Iterable[Tally]) -> Tally:
    """One tally holding the sum of several."""
    out = Tally()
    for t in tallies:
        out.merge(t)
    return out


def error_rate(t: Tally) -> float:
    """failures ÷ outcomes, 0 when there are none."""
    return t.failures / t.outcomes if t.outcomes else 0.0


def avg_processing_ms(t: Tally) -> float:
    """Mean processing time of the outcomes that carried one, 0 when none did."""
    return t.pt_sum / t.pt_n if t.pt_n else 0.0


def avg_wait_ms(t: Tally) -> float | None:
    """Mean enqueue-to-start wait, None when no start carried one."""
    return t.wt_sum / t.wt_n if t.wt_n else None


def per_minute(count: int, span_s: float) -> float:
    """A count over ``span_s`` seconds as a rate per minute."""
    return count * 60.0 / span_s if span_s > 0 else 0.0


_QUANTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))


def percentiles(bins: Mapping[int, int]) -> dict[str, float | None]:
    """p50, p95 and p99 of a sketch (None when it is empty): ``sketch.quantile`` of each, from one
    pass over the bins sorted once (this runs twice per queue of a detailed response)."""
    total = sum(bins.values())
    if total <= 0:
        return {"p50": None, "p95": None, "p99": None}
    out: dict[str, float | None] = {}
    todo = [(name, q * (total - 1)) for name, q in _QUANTILES]  # (name, rank), ranks ascending
    seen = 0
    for index in sorted(bins):
        seen += bins[index]
        while todo and seen > todo[0][1]:
            out[todo.pop(0)[0]] = sketch.bin_value(index)
        if not todo:
            return out
    for name, _ in todo:  # rounding guard, as sketch.quantile
        out[name] = sketch.bin_value(max(bins))
    return out


def priority_distribution(priorities: Mapping[str, int]) -> dict[str, float]:
    """Percent of enqueued jobs per priority (sums to 100; empty when none)."""
    total = sum(priorities.values())
    if not total:
        return {}
    return {name: 100.0 * n / total for name, n in sorted(priorities.items()) if n}
