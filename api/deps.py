"""Annotated dependencies shared by the routers."""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import Depends, Query, Request

from aggregator.settings import Settings
from api.query import StatsQuery, build_query, parse_queues
from api.report import Reporter
from api.store import StatsStore

QUEUES_HELP = "Queue names, comma-separated and/or repeated; all queues when absent."


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


async def get_store(request: Request) -> StatsStore:
    """A store for this request (its Redis time is measured per request)."""
    state = request.app.state
    return StatsStore(state.redis, state.keys, await state.partitions())


async def get_reporter(request: Request, store: Annotated[StatsStore, Depends(get_store)]) -> Reporter:
    """The request's reporter."""
    return Reporter(store, request.app.state.settings, request.app.state.started_s)


def get_queues(queues: Annotated[list[str] | None, Query(description=QUEUES_HELP)] = None) -> list[str] | None:
    """Only the ``queues`` parameter."""
    return parse_queues(queues)


def get_query(
    # typed str and checked by build_query, so a bad value gets the envelope's 422; the json_schema_extra
    # still tells clients (and schemathesis) the expected format
    start: Annotated[str | None, Query(description="Range start, RFC 3339; default end − 24 h.",
                                       json_schema_extra={"format": "date-time"})] = None,
    end: Annotated[str | None, Query(description="Range end, RFC 3339; default now.",
                                     json_schema_extra={"format": "date-time"})] = None,
    queues: Annotated[list[str] | None, Query(description=QUEUES_HELP)] = None,
    granularity: Annotated[str | None, Query(description="minute, hour (default), day or week.",
                                             json_schema_extra={"enum": ["minute", "hour", "day", "week"]})] = None,
) -> StatsQuery:
    """The full StatsQuery."""
    return build_query(start, end, queues, granularity, int(time.time()))


SettingsDep = Annotated[Settings, Depends(get_settings)]
ReporterDep = Annotated[Reporter, Depends(get_reporter)]
QueuesDep = Annotated[list[str] | None, Depends(get_queues)]
QueryDep = Annotated[StatsQuery, Depends(get_query)]
