"""Builds the API's responses from the store's reads and the stats arithmetic."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from prometheus_client.core import Metric

from aggregator.keys import GRANULARITY_S
from aggregator.settings import Settings
from api import health as rules
from api import stats
from api.metrics import families as metric_families
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

MAX_ERROR_PATTERNS = 100
MINUTE_RANGE_MAX_S = 6 * 3600
HOUR_RANGE_MAX_S = 30 * 86_400


def utc(ts_s: float) -> datetime:
    """An epoch time as an aware UTC datetime."""
    return datetime.fromtimestamp(ts_s, UTC)


def latency(bins: dict[int, int]) -> Latency:
    """Sketch percentiles as a response model."""
    return Latency(**stats.percentiles(bins))


@dataclass(frozen=True)
class Window:
    """The buckets the windowed rates are computed from."""

    gran: str
    starts: list[int]
    span_s: float


def rate_window(now_s: float, settings: Settings, query: StatsQuery | None) -> Window:
    """The last ``rate_window_s`` in minute buckets, or the query's range in a fitting bucket size."""
    if query is None or not query.explicit_range:
        # a fixed number of minute buckets, the newest one still filling
        start_s = int(now_s) - int(now_s) % 60 - (settings.rate_window_s // 60 - 1) * 60
        end_s, gran = int(now_s) + 1, "m"
    else:
        start_s, end_s = query.start_s, query.end_s
        length = end_s - start_s
        fresh = now_s - start_s <= settings.minute_retention_s
        gran = "m" if length <= MINUTE_RANGE_MAX_S and fresh else ("h" if length <= HOUR_RANGE_MAX_S else "d")
    step = GRANULARITY_S[gran]
    starts = bucket_starts(start_s, end_s, step)
    span = min(starts[-1] + step, now_s) - starts[0]
    return Window(gran, starts, max(span, 1.0))


class Reporter:
    """One request's view of the stats: reads once, answers every part."""

    def __init__(self, store: StatsStore, settings: Settings, started_s: float) -> None:
        self.store = store
        self.settings = settings
        self.started_s = started_s
        self.now_s = time.time()

    async def _queues(self, wanted: list[str] | None) -> list[str]:
        return wanted if wanted is not None else await self.store.queue_names()

    async def overview(self, wanted: list[str] | None, query: StatsQuery | None = None) -> SystemOverview:
        """SystemOverview over all queues or the given ones."""
        names = await self._queues(wanted)
        window = rate_window(self.now_s, self.settings, query)
        # independent reads, in flight together (each its own pipelined round trip)
        snaps, overall, workers, parts = await asyncio.gather(
            self.store.snapshots(names, "m", [], counts_only=True),
            self.store.series(window.gran, window.starts, wanted),
            self.store.workers(),
            self.store.partitions_status(),
        )
        return self._overview(snaps, merged(overall), window, workers, parts)

    def _overview(
        self,
        snaps: list[QueueSnapshot],
        window_tally: Tally,
        window: Window,
        workers: list[Worker],
        parts: list[PartitionStatus],
    ) -> SystemOverview:
        totals = merged(s.totals for s in snaps)
        oldest = min((s.oldest_pending_ms for s in snaps if s.oldest_pending_ms is not None), default=None)
        health = rules.evaluate(
            rules.HealthInputs(
                database_healthy=True,
                error_rate=stats.error_rate(window_tally),
                avg_processing_ms=stats.avg_processing_ms(window_tally),
                queues=snaps,
                partitions=parts,
                workers=workers,
                now_ms=int(self.now_s * 1000),
            ),
            self.settings,
            utc(self.now_s),
        )
        applied = max((p.applied_ms for p in parts if p.applied_ms), default=None)
        return SystemOverview(
            total_queues=len(snaps),
            total_jobs=totals.count("enqueued"),
            pending_jobs=sum(s.pending for s in snaps),
            running_jobs=sum(s.running for s in snaps),
            completed_jobs=totals.count("completed"),
            failed_jobs=totals.count("failed", "timed_out"),
            dead_jobs=totals.count("dead"),
            overall_throughput=stats.per_minute(window_tally.outcomes, window.span_s),
            overall_error_rate=stats.error_rate(window_tally),
            avg_processing_time_ms=stats.avg_processing_ms(window_tally),
            system_health=health,
            uptime_seconds=int(self.now_s - self.started_s),
            last_updated=utc(applied / 1000 if applied else self.now_s),
            enqueued_jobs=totals.count("enqueued"),
            retried_jobs=totals.count("retried"),
            timed_out_jobs=totals.count("timed_out"),
            cancelled_jobs=totals.count("cancelled"),
            oldest_pending_age_seconds=self._age_s(oldest),
            processing_time_ms=latency(window_tally.processing),
            wait_time_ms=latency(window_tally.wait),
            window_seconds=window.span_s,
            aggregator_lag_seconds=max((p.lag_s for p in parts), default=0.0),
            lost_events=sum(p.lost for p in parts),
            dead_letters=sum(p.dead_letters for p in parts),
            dropped_by_emitters=sum(w.dropped for w in workers),
            active_workers=sum(1 for w in workers if rules.is_active(w, int(self.now_s * 1000))),
            dead_letter_stream_length=sum(p.deadletter_length for p in parts),
        )

    def _age_s(self, since_ms: int | None) -> int | None:
        return None if since_ms is None else max(0, int(self.now_s - since_ms / 1000))

    async def metrics(self) -> list[Metric]:
        """Every Prometheus metric family of one scrape."""
        names = await self.store.queue_names()
        snaps, workers, parts = await asyncio.gather(
            self.store.snapshots(names, "m", []), self.store.workers(), self.store.partitions_status()
        )
        return metric_families(snaps, parts, workers, int(self.now_s * 1000))

    async def health(self, wanted: list[str] | None) -> SystemHealth:
        """SystemHealth over all queues or the given ones."""
        return (await self.overview(wanted)).system_health

    def queue_stats(self, snap: QueueSnapshot, window: Window) -> QueueStats:
        """QueueStats of one snapshot."""
        t, w = snap.totals, snap.window
        return QueueStats(
            name=snap.name,
            pending=snap.pending,
            running=snap.running,
            completed_total=t.count("completed"),
            failed_total=t.count("failed", "timed_out"),
            dead_total=t.count("dead"),
            throughput_per_minute=stats.per_minute(w.outcomes, window.span_s),
            avg_processing_time_ms=stats.avg_processing_ms(w),
            error_rate=stats.error_rate(w),
            oldest_pending_age_seconds=self._age_s(snap.oldest_pending_ms),
            priority_distribution=stats.priority_distribution(t.priorities),
            enqueued_total=t.count("enqueued"),
            retried_total=t.count("retried"),
            timed_out_total=t.count("timed_out"),
            cancelled_total=t.count("cancelled"),
            processing_time_ms=latency(w.processing),
            wait_time_ms=latency(w.wait),
            job_types=t.job_types,
        )

    async def trends(self, query: StatsQuery) -> list[HourlyTrend]:
        """One HourlyTrend per bucket of the query's range; empty buckets are zeros."""
        outer = query.bucket_starts()
        stored = stored_granularity(query.step_s)
        inner = [bucket_starts(b, b + query.step_s, GRANULARITY_S[stored]) for b in outer]
        flat = await self.store.series(stored, [s for group in inner for s in group], query.queues)
        out, i = [], 0
        for start, group in zip(outer, inner, strict=True):
            t = merged(flat[i : i + len(group)])
            i += len(group)
            out.append(
                HourlyTrend(
                    hour=utc(start),
                    completed=t.count("completed"),
                    failed=t.failures,
                    throughput=stats.per_minute(t.outcomes, query.step_s),
                    avg_processing_time_ms=stats.avg_processing_ms(t),
                    error_rate=stats.error_rate(t),
                    enqueued=t.count("enqueued"),
                    processing_time_ms=latency(t.processing),
                )
            )
        return out

    async def error_patterns(self, query: StatsQuery) -> list[ErrorPattern]:
        """Error signatures in the hours overlapping the range, most frequent first."""
        hours = bucket_starts(query.start_s, query.end_s, 3600)
        sigs = await self.store.error_signatures(hours, query.queues)
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

    async def detailed(self, query: StatsQuery) -> DetailedStats:
        """Overview, per-queue stats, trends, error patterns and performance."""
        names = await self._queues(query.queues)
        window = rate_window(self.now_s, self.settings, query)
        snaps, workers, parts, trends, patterns, (memory_mb, cpu_pct) = await asyncio.gather(
            self.store.snapshots(names, window.gran, window.starts),
            self.store.workers(),
            self.store.partitions_status(),
            self.trends(query),
            self.error_patterns(query),
            self.store.aggregator_usage(),
        )
        window_tally = merged(s.window for s in snaps)
        overview = self._overview(snaps, window_tally, window, workers, parts)
        active = [w for w in workers if rules.is_active(w, int(self.now_s * 1000))]
        capacity = sum(w.concurrency for w in active)
        perf = PerformanceMetrics(
            database_response_time_ms=self.store.redis_time_s * 1000,
            average_queue_depth=overview.pending_jobs / len(snaps) if snaps else 0.0,
            jobs_per_second=window_tally.outcomes / window.span_s,
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
