"""The JSON report: builds the API's responses from the store's reads and the stats arithmetic."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime

from aggregator.keys import GRANULARITY_S
from aggregator.settings import Settings
from api import health as rules
from api import stats
from api.construct import built
from api.limits import check_reads
from api.models import (
    DetailedStats,
    ErrorPattern,
    HourlyTrend,
    Latency,
    PerformanceMetrics,
    QueueStats,
    SystemHealth,
    SystemOverview,
)
from api.query import StatsQuery, bucket_starts, stored_granularity
from api.stats import Tally, merged
from api.store import PartitionStatus, QueueSnapshot, StatsStore, Worker
from api.window import BucketRange, Window, bucket_range, point_span_s, rate_window, retained

MAX_ERROR_PATTERNS = 100
# Responses with more queues or trend points than these are built (and serialised) in a worker thread.
# Below them the work (30-40 us per queue, with or without a live rate window) is done inline:
# handing it to a thread costs more than it saves (the event loop and the thread take turns at the
# GIL; detailed at 100 queues: p99 24 -> 16 ms), and it holds the event loop for at most ~6 ms.
OFFLOAD_QUEUES = 150
OFFLOAD_POINTS = 200


def utc(ts_s: float) -> datetime:
    """An epoch time as an aware UTC datetime."""
    return datetime.fromtimestamp(ts_s, UTC)


def latency(bins: dict[int, int]) -> Latency:
    """Sketch percentiles as a response model."""
    p = stats.percentiles(bins)
    return built(Latency, p50=p["p50"], p95=p["p95"], p99=p["p99"])


def retention(settings: Settings) -> dict[str, int]:
    """How long each bucket size is kept."""
    return {"m": settings.minute_retention_s, "h": settings.hour_retention_s, "d": settings.day_retention_s}


@dataclass
class Now:
    """The system now, over all queues or the named ones: what the overview is made of."""

    counts: Tally  # lifetime event counts
    pending: int
    running: int
    oldest_pending_ms: int | None
    total_queues: int
    first_ms: int | None  # first data the store holds
    window_tally: Tally
    partitions: list[PartitionStatus]
    workers: list[Worker]
    watched: list[rules.QueueGauge]  # the queues a per-queue health rule can fire on


class Reporter:
    """One request's view of the stats: reads once, answers every part."""

    def __init__(self, store: StatsStore, settings: Settings, started_s: float, now_s: float) -> None:
        self.store = store
        self.settings = settings
        self.started_s = started_s
        self.now_s = now_s
        self.now_ms = int(now_s * 1000)
        self._ranges_of: tuple[StatsQuery, tuple[list[int], list[BucketRange]]] | None = None

    def window(self, query: StatsQuery | None) -> Window:
        """The rate window of a request (the range's, if it gives one)."""
        return rate_window(self.now_s, self.settings.rate_window_s, query, retention(self.settings))

    async def _now(self, wanted: list[str] | None, window: BucketRange) -> Now:
        """Totals, gauges, status and the window's tally: a fixed number of keys per partition for all
        queues; the named queues' own keys otherwise."""
        if wanted is None:
            views = await self.store.partition_views(window, self.settings.backlog_warning)
            counts = Tally()
            for v in views:
                stats.add_counts(counts, v.counts)
            workers = [w for v in views for w in v.workers]
            watched = [rules.QueueGauge(q, n) for v in views for q, n in v.backlog]
            quiet = sorted(rules.quiet_queues(workers, self.now_ms) - {g.name for g in watched})
            if quiet:
                watched += [rules.QueueGauge(q, n) for q, n in (await self.store.queues_pending(quiet)).items() if n]
            return Now(
                counts=counts,
                pending=sum(v.pending for v in views),
                running=sum(v.running for v in views),
                oldest_pending_ms=min((v.oldest_pending_ms for v in views if v.oldest_pending_ms is not None),
                                      default=None),
                total_queues=sum(v.queues_seen for v in views),
                first_ms=min((v.first_ms for v in views if v.first_ms is not None), default=None),
                window_tally=merged(v.window for v in views),
                partitions=[v.status for v in views],
                workers=workers,
                watched=watched,
            )
        views, snaps = await asyncio.gather(
            self.store.partition_views(BucketRange("m", [], []), self.settings.backlog_warning),
            self.store.snapshots(wanted, window, fields="counts"),
        )
        return Now(
            counts=merged(s.totals for s in snaps),
            pending=sum(s.pending for s in snaps),
            running=sum(s.running for s in snaps),
            oldest_pending_ms=min((s.oldest_pending_ms for s in snaps if s.oldest_pending_ms is not None),
                                  default=None),
            total_queues=sum(1 for s in snaps if s.seen),
            first_ms=min((v.first_ms for v in views if v.first_ms is not None), default=None),
            window_tally=merged(s.window for s in snaps),
            partitions=[v.status for v in views],
            workers=[w for v in views for w in v.workers],
            watched=[rules.QueueGauge(s.name, s.pending) for s in snaps if s.pending],
        )

    async def overview(self, wanted: list[str] | None, query: StatsQuery | None = None) -> SystemOverview:
        """SystemOverview over all queues or the given ones."""
        window = self.window(query)
        now = await self._now(wanted, window.buckets)
        return self._overview(now, window.clamped(now.first_ms))

    def _overview(self, now: Now, window: Window) -> SystemOverview:
        t, w = now.counts, now.window_tally
        applied = max((p.applied_ms for p in now.partitions if p.applied_ms), default=None)
        throughput, error_rate = stats.per_minute(w.outcomes, window.span_s), stats.error_rate(w)
        avg_processing_ms = stats.avg_processing_ms(w)
        # built without re-validation: the most polled route, and every field is typed here
        return built(
            SystemOverview,
            total_queues=now.total_queues,
            total_jobs=t.count("enqueued"),
            pending_jobs=now.pending,
            running_jobs=now.running,
            completed_jobs=t.count("completed"),
            failed_jobs=t.count("failed", "timed_out"),
            dead_jobs=t.count("dead"),
            overall_throughput=throughput,
            overall_error_rate=error_rate,
            avg_processing_time_ms=avg_processing_ms,
            system_health=self._health(now),
            uptime_seconds=max(0, int(self.now_s - self.started_s)),
            last_updated=utc(applied / 1000 if applied else self.now_s),
            enqueued_jobs=t.count("enqueued"),
            retried_jobs=t.count("retried"),
            timed_out_jobs=t.count("timed_out"),
            cancelled_jobs=t.count("cancelled"),
            oldest_pending_age_seconds=self._age_s(now.oldest_pending_ms),
            processing_time_ms=latency(w.processing),
            wait_time_ms=latency(w.wait),
            window_seconds=window.span_s,
            aggregator_lag_seconds=max((p.lag_s for p in now.partitions), default=0.0),
            lost_events=sum(p.lost for p in now.partitions),
            dead_letters=sum(p.dead_letters for p in now.partitions),
            dropped_by_emitters=sum(w.dropped for w in now.workers),
            active_workers=sum(1 for w in now.workers if rules.is_active(w, self.now_ms)),
            dead_letter_stream_length=sum(p.deadletter_length for p in now.partitions),
            error_rate=error_rate,
            throughput=throughput,
            avg_processing_time=avg_processing_ms,
        )

    def _health(self, now: Now) -> SystemHealth:
        inputs = rules.HealthInputs(
            database_healthy=True,
            error_rate=stats.error_rate(now.window_tally),
            avg_processing_ms=stats.avg_processing_ms(now.window_tally),
            queues=now.watched,
            partitions=now.partitions,
            workers=now.workers,
            now_ms=self.now_ms,
        )
        return rules.evaluate(inputs, self.settings, utc(self.now_s))

    def _age_s(self, since_ms: int | None) -> int | None:
        return None if since_ms is None else max(0, int(self.now_s - since_ms / 1000))

    async def health(self, wanted: list[str] | None) -> SystemHealth:
        """SystemHealth over all queues or the given ones."""
        return (await self.overview(wanted)).system_health

    def queue_stats(self, snap: QueueSnapshot, window: Window) -> QueueStats:
        """QueueStats of one snapshot."""
        t, w = snap.totals, snap.window
        n = t.counts.get  # this runs per queue of a response: the lifetime counts looked up directly
        # built without validation (one per queue; the fields are typed here), serialised as any model
        return built(
            QueueStats,
            name=snap.name,
            pending=snap.pending,
            running=snap.running,
            completed_total=n("completed", 0),
            failed_total=n("failed", 0) + n("timed_out", 0),
            dead_total=n("dead", 0),
            throughput_per_minute=stats.per_minute(w.outcomes, window.span_s),
            avg_processing_time_ms=stats.avg_processing_ms(w),
            error_rate=stats.error_rate(w),
            oldest_pending_age_seconds=self._age_s(snap.oldest_pending_ms),
            priority_distribution=stats.priority_distribution(t.priorities),
            enqueued_total=n("enqueued", 0),
            retried_total=n("retried", 0),
            timed_out_total=n("timed_out", 0),
            cancelled_total=n("cancelled", 0),
            processing_time_ms=latency(w.processing),
            wait_time_ms=latency(w.wait),
            job_types=t.job_types,
        )

    def _trend_ranges(self, query: StatsQuery) -> tuple[list[int], list[BucketRange]]:
        """The outer buckets of a trend and the stored buckets (still kept) each is summed from."""
        if self._ranges_of is not None and self._ranges_of[0] is query:  # checked, then read: worked out once
            return self._ranges_of[1]
        outer = query.bucket_starts()
        stored = stored_granularity(query.step_s)
        keep = retention(self.settings)
        ranges = [bucket_range(stored, retained(stored, bucket_starts(b, b + query.step_s, GRANULARITY_S[stored]),
                                                self.now_s, keep), self.now_s) for b in outer]
        self._ranges_of = (query, (outer, ranges))
        return outer, ranges

    def trend_reads(self, query: StatsQuery) -> int:
        """Hashes a trends request reads."""
        sources = len(query.queues) if query.queues is not None else self.store.partitions
        return sources * sum(r.reads for r in self._trend_ranges(query)[1]) + self.store.partitions

    async def trends(self, query: StatsQuery) -> list[HourlyTrend]:
        """One HourlyTrend per bucket of the range; empty buckets are zeros; the bucket holding now counts
        only its elapsed part."""
        outer, ranges = self._trend_ranges(query)
        sums, first_ms = await self.store.range_sums(ranges, query.queues, self.now_s)

        def build() -> list[HourlyTrend]:
            return [
                built(
                    HourlyTrend,
                    hour=utc(start),
                    completed=t.count("completed"),
                    failed=t.failures,
                    throughput=stats.per_minute(
                        t.outcomes, point_span_s(start, start + query.step_s, self.now_s, first_ms)),
                    avg_processing_time_ms=stats.avg_processing_ms(t),
                    error_rate=stats.error_rate(t),
                    enqueued=t.count("enqueued"),
                    processing_time_ms=latency(t.processing),
                )
                for start, t in zip(outer, sums, strict=True)
            ]

        return await asyncio.to_thread(build) if len(outer) > OFFLOAD_POINTS else build()

    def _error_hours(self, query: StatsQuery) -> list[int]:
        hours = bucket_starts(query.start_s, query.end_s, 3600)
        # error hashes expire with the hour buckets: reading further back finds nothing
        return [h for h in hours if h + 3600 + self.settings.hour_retention_s + 3600 > self.now_s]

    async def error_patterns(self, query: StatsQuery) -> list[ErrorPattern]:
        """Error signatures in the hours overlapping the range, most frequent first."""
        sigs = await self.store.error_signatures(self._error_hours(query), query.queues)
        total = sum(s.count for s in sigs)
        sigs.sort(key=lambda s: (-s.count, s.sig))
        return [
            ErrorPattern(
                error_type=s.error_type,
                count=s.count,
                percentage=100.0 * s.count / total if total else 0.0,
                sample_message=s.sample,
                first_seen=utc(s.first_ms / 1000),
                last_seen=utc(s.last_ms / 1000),
                affected_queues=sorted(s.queues),
            )
            for s in sigs[:MAX_ERROR_PATTERNS]
        ]

    def check_trends(self, query: StatsQuery) -> None:
        """Refuse a trends request above the cost bound (422)."""
        check_reads(self.trend_reads(query), "queues" if query.queues else "start",
                    "name fewer queues, narrow start/end or use a coarser granularity")

    async def detailed(self, query: StatsQuery) -> DetailedStats:
        """Overview, per-queue stats, trends, error patterns and performance."""
        names = query.queues if query.queues is not None else await self.store.queue_names()
        window = self.window(query)
        parts = self.store.partitions
        reads = (self.trend_reads(query) + len(names) * (3 + window.buckets.reads)
                 + len(self._error_hours(query)) * parts)
        check_reads(reads, "queues" if query.queues else "start",
                    "name fewer queues (queues=), narrow start/end or use a coarser granularity")
        now, snaps, trends, patterns, (memory_mb, cpu_pct) = await asyncio.gather(
            self._now(query.queues, window.buckets),
            self.store.snapshots(names, window.buckets),
            self.trends(query),
            self.error_patterns(query),
            self.store.aggregator_usage(),
        )
        window = window.clamped(now.first_ms)
        redis_ms = self.store.redis_time_s * 1000

        def build() -> DetailedStats:
            overview = self._overview(now, window)
            active = [w for w in now.workers if rules.is_active(w, self.now_ms)]
            capacity = sum(w.concurrency for w in active)
            perf = PerformanceMetrics(
                database_response_time_ms=redis_ms,
                average_queue_depth=overview.pending_jobs / len(snaps) if snaps else 0.0,
                jobs_per_second=now.window_tally.outcomes / window.span_s,
                memory_usage_mb=memory_mb,
                cpu_usage_percent=cpu_pct,
                active_workers=len(active),
                worker_utilization=sum(w.busy for w in active) / capacity if capacity else 0.0,
            )
            return DetailedStats(
                overview=overview,
                queue_stats=[self.queue_stats(s, window) for s in snaps],
                hourly_trends=trends,
                error_patterns=patterns,
                performance_metrics=perf,
            )

        # one model per queue: with many queues, built off the event loop
        return await asyncio.to_thread(build) if len(snaps) > OFFLOAD_QUEUES else build()
