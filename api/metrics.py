"""The Prometheus exposition of the precomputed stats, a unit apart from the JSON report:
conventional names, base units (seconds), and only the ``queue`` label (never job or worker ids)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from aggregator.sketch import HISTOGRAM_BOUNDS_MS
from api.health import is_active
from api.stats import Tally
from api.store import PartitionStatus, QueueSnapshot, StatsStore, Worker
from api.window import BucketRange

# (metric suffix, event types counted, help)
COUNTERS = (
    ("enqueued", ("enqueued",), "Jobs put on the queue."),
    ("started", ("started",), "Job attempts started."),
    ("completed", ("completed",), "Jobs completed."),
    ("failed", ("failed",), "Job attempts that failed (not counting timeouts)."),
    ("timed_out", ("timed_out",), "Job attempts that timed out."),
    ("retried", ("retried",), "Jobs put back for another attempt."),
    ("dead", ("dead",), "Jobs that gave up."),
    ("cancelled", ("cancelled",), "Jobs cancelled."),
)


async def collect(store: StatsStore, now_ms: int) -> list[Metric]:
    """Read the store once and build every metric family of one scrape."""
    names = await store.queue_names()
    snaps, workers, parts = await asyncio.gather(
        store.snapshots(names, BucketRange("m", [], []), fields="all"), store.workers(), store.partitions_status()
    )
    # one family entry per queue and histogram bucket: built off the event loop
    return await asyncio.to_thread(families, snaps, parts, workers, now_ms)


def families(
    snaps: list[QueueSnapshot], parts: list[PartitionStatus], workers: list[Worker], now_ms: int
) -> list[Metric]:
    """Every metric of one scrape."""
    out: list[Metric] = []
    for suffix, kinds, doc in COUNTERS:
        counter = CounterMetricFamily(f"jobpulse_jobs_{suffix}", doc, labels=["queue"])
        for s in snaps:
            counter.add_metric([s.name], s.totals.count(*kinds))
        out.append(counter)
    pending = GaugeMetricFamily("jobpulse_jobs_pending", "Jobs waiting to start now.", labels=["queue"])
    running = GaugeMetricFamily("jobpulse_jobs_running", "Jobs running now.", labels=["queue"])
    for s in snaps:
        pending.add_metric([s.name], s.pending)
        running.add_metric([s.name], s.running)
    out += [pending, running]
    oldest = GaugeMetricFamily("jobpulse_oldest_pending_age_seconds", "Age of the oldest pending job (0: none).",
                               labels=["queue"])
    for s in snaps:
        oldest.add_metric([s.name], max(0.0, (now_ms - s.oldest_pending_ms) / 1000) if s.oldest_pending_ms else 0.0)
    out.append(oldest)
    out.append(_histogram("jobpulse_job_processing_seconds", "Processing time of finished attempts.", snaps,
                          lambda t: (t.processing_hist, t.pt_sum)))
    out.append(_histogram("jobpulse_job_wait_seconds", "Time from enqueue to start.", snaps,
                          lambda t: (t.wait_hist, t.wt_sum)))
    out.append(GaugeMetricFamily("jobpulse_active_workers", "Workers whose heartbeat is recent.",
                                 value=sum(1 for w in workers if is_active(w, now_ms))))
    out.append(CounterMetricFamily("jobpulse_emitter_dropped_events", "Events emitters dropped (buffer full).",
                                   value=sum(w.dropped for w in workers)))
    out.append(GaugeMetricFamily("jobpulse_aggregator_lag_seconds", "Newest stream entry minus last applied one.",
                                 value=max((p.lag_s for p in parts), default=0.0)))
    out.append(CounterMetricFamily("jobpulse_lost_events", "Events trimmed from a stream before they were read.",
                                   value=sum(p.lost for p in parts)))
    out.append(CounterMetricFamily("jobpulse_dead_letters", "Entries refused as malformed (dead-letter stream).",
                                   value=sum(p.dead_letters for p in parts)))
    out.append(GaugeMetricFamily("jobpulse_dead_letter_stream_entries", "Entries kept in the dead-letter streams.",
                                 value=sum(p.deadletter_length for p in parts)))
    return out


def _histogram(
    name: str, doc: str, snaps: list[QueueSnapshot], pick: Callable[[Tally], tuple[dict[int, int], int]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=["queue"])
    for s in snaps:
        counts, sum_ms = pick(s.totals)
        family.add_metric([s.name], _cumulative(counts), sum_value=sum_ms / 1000)
    return family


def _cumulative(counts: dict[int, int]) -> list[tuple[str, float]]:
    """Prometheus buckets (``le`` in seconds, cumulative counts) from per-bucket counts."""
    out, running = [], 0
    for i, bound_ms in enumerate(HISTOGRAM_BOUNDS_MS):
        running += counts.get(i, 0)
        out.append((f"{bound_ms / 1000:g}", float(running)))
    out.append(("+Inf", float(running + counts.get(len(HISTOGRAM_BOUNDS_MS), 0))))
    return out


class _Scrape:
    """The collector interface generate_latest() asks for, over families already read."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return self.metrics


def exposition(metrics: Iterable[Metric]) -> bytes:
    """The text exposition format of ``metrics``."""
    return generate_latest(_Scrape(metrics))

