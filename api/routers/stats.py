"""/api/stats: hammerwork-web's statistics routes, every number real."""

from __future__ import annotations

import redis
from fastapi import APIRouter
from fastapi.responses import Response

from api.deps import QueryDep, QueuesDep, ReporterDep
from api.envelope import BAD_PARAMETER, error_doc, ok, redis_problem
from api.health import unreachable
from api.models import ApiResponse, DetailedStats, HourlyTrend, SystemHealth, SystemOverview
from api.report import utc

router = APIRouter(prefix="/api/stats", tags=["stats"],
                   responses={422: BAD_PARAMETER, 503: error_doc("Redis is unreachable."),
                              504: error_doc("Redis did not answer in time.")})


@router.get("/overview", response_model=ApiResponse[SystemOverview])
async def overview(reporter: ReporterDep, queues: QueuesDep) -> Response:
    """System overview: totals, gauges, windowed rates and health."""
    return ok(await reporter.overview(queues))


@router.get("/detailed", response_model=ApiResponse[DetailedStats])
async def detailed(reporter: ReporterDep, query: QueryDep) -> Response:
    """Overview plus per-queue stats, trends, error patterns and performance."""
    return ok(await reporter.detailed(query))


@router.get("/trends", response_model=ApiResponse[list[HourlyTrend]])
async def trends(reporter: ReporterDep, query: QueryDep) -> Response:
    """One trend point per bucket of the range at the requested granularity."""
    reporter.check_trends(query)
    return ok(await reporter.trends(query))


@router.get("/health", response_model=ApiResponse[SystemHealth])
async def health(reporter: ReporterDep, queues: QueuesDep) -> Response:
    """Health status and alerts; Redis down (or too slow) is reported here, not raised."""
    try:
        return ok(await reporter.health(queues))
    except (redis.RedisError, OSError) as exc:
        return ok(unreachable(utc(reporter.now_s), redis_problem(exc)))
