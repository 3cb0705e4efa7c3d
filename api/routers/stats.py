"""/api/stats: hammerwork-web's statistics routes, every number real."""

from __future__ import annotations

import asyncio
from typing import Annotated

import redis
from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from api.deps import QUEUES_HELP, QueryDep, QueuesDep, ReporterDep, get_reporter
from api.envelope import BAD_PARAMETER, error_doc, ok, redis_problem
from api.hammerwork_models import Throughput, ThroughputPoint
from api.health import unreachable
from api.models import ApiResponse, DetailedStats, HourlyTrend, SystemHealth, SystemOverview
from api.query import BadParameter, StatsQuery, parse_queues
from api.report import OFFLOAD_POINTS, OFFLOAD_QUEUES, utc

router = APIRouter(prefix="/api/stats", tags=["stats"],
                   responses={422: BAD_PARAMETER, 503: error_doc("Redis is unreachable."),
                              504: error_doc("Redis did not answer in time.")})


@router.get("/overview", response_model=ApiResponse[SystemOverview])
async def overview(request: Request,
                   queues: Annotated[list[str] | None, Query(description=QUEUES_HELP)] = None) -> Response:
    """System overview: totals, gauges, windowed rates and health."""
    # the reporter made and the queues parsed here, not by dependencies: this is the route polled most,
    # and each dependency costs it measurably (the OpenAPI schema is the same)
    reporter = await get_reporter(request)
    return ok(await reporter.overview(parse_queues(queues)))


@router.get("/detailed", response_model=ApiResponse[DetailedStats])
async def detailed(request: Request, query: QueryDep) -> Response:
    """Overview plus per-queue stats, trends, error patterns and performance."""
    result = await (await get_reporter(request)).detailed(query)
    # serialising one entry per queue: off the event loop when there are many
    return await asyncio.to_thread(ok, result) if len(result.queue_stats) > OFFLOAD_QUEUES else ok(result)


@router.get("/trends", response_model=ApiResponse[list[HourlyTrend]])
async def trends(request: Request, query: QueryDep) -> Response:
    """One trend point per bucket of the range at the requested granularity."""
    reporter = await get_reporter(request)  # made here, not by a dependency (see overview)
    reporter.check_trends(query)
    points = await reporter.trends(query)
    return await asyncio.to_thread(ok, points) if len(points) > OFFLOAD_POINTS else ok(points)


@router.get("/health", response_model=ApiResponse[SystemHealth])
async def health(reporter: ReporterDep, queues: QueuesDep) -> Response:
    """Health status and alerts; Redis down (or too slow) is reported here, not raised."""
    try:
        return ok(await reporter.health(queues))
    except (redis.RedisError, OSError) as exc:
        return ok(unreachable(utc(reporter.now_s), redis_problem(exc)))


# the periods hammerwork-web's dashboard asks for -> (span, granularity)
PERIODS = {"1h": (3600, "minute"), "24h": (86_400, "hour"), "7d": (7 * 86_400, "hour")}


@router.get("/throughput", response_model=ApiResponse[Throughput])
async def throughput(reporter: ReporterDep, period: Annotated[str, Query(
        description="1h (minute points), 24h or 7d (hour points).", json_schema_extra={"enum": list(PERIODS)})] = "24h",
        queues: Annotated[list[str] | None, Query(description=QUEUES_HELP)] = None) -> Response:
    """The throughput chart: outcomes per minute in each bucket of the period up to now (as /trends)."""
    if period not in PERIODS:
        raise BadParameter("period", f"{period!r} is not one of {', '.join(PERIODS)}")
    span_s, granularity = PERIODS[period]
    end_s = int(reporter.now_s)
    query = StatsQuery(end_s - span_s, end_s, parse_queues(queues), granularity, explicit_range=True)
    reporter.check_trends(query)
    points = [ThroughputPoint(timestamp=t.hour, value=t.throughput) for t in await reporter.trends(query)]
    return ok(Throughput(period=period, granularity=granularity, datapoints=points))
