"""Annotated dependencies shared by the routers: the app's typed state and each request's parts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from aggregator.settings import Settings
from api.hammerwork import DEFAULT_LIMIT, MAX_LIMIT
from api.query import StatsQuery, build_query, parse_queues
from api.report import Reporter
from api.state import AppState
from api.store import StatsStore

QUEUES_HELP = "Queue names, comma-separated and/or repeated (at most 1000); all queues when absent."


# Every dependency is async: FastAPI runs a plain ``def`` dependency in a worker thread, which costs
# more than the overview's whole Redis read.


async def get_state(request: Request) -> AppState:
    """The app's state (set by create_app)."""
    state: AppState = request.app.state.jobpulse
    return state


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    """The settings the app was built with."""
    return state.settings


async def new_store(state: AppState) -> StatsStore:
    """A store for one request (its Redis time is measured per request)."""
    assert state.partitions is not None
    return StatsStore(state.client(), state.keys, await state.partitions())


async def get_store(state: StateDep) -> StatsStore:
    """The request's store."""
    return await new_store(state)


async def get_reporter(request: Request) -> Reporter:
    """The request's reporter and store, with the time of the request (one dependency, not a chain: each
    level costs the overview measurably)."""
    state = await get_state(request)
    return Reporter(await new_store(state), state.settings, state.started_s, state.clock())


async def get_queues(queues: Annotated[list[str] | None, Query(description=QUEUES_HELP)] = None) -> list[str] | None:
    """Only the ``queues`` parameter."""
    return parse_queues(queues)


async def get_query(
    request: Request,
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
    # the state reached through the request, not a sub-dependency: each level costs every request
    return build_query(start, end, queues, granularity, int((await get_state(request)).clock()))


@dataclass(frozen=True)
class Paging:
    """hammerwork-web's pagination parameters, checked."""

    page: int
    limit: int
    offset: int | None


async def get_paging(
    page: Annotated[int, Query(ge=1, le=1_000_000, description="Page, from 1.")] = 1,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page (hammerwork-web: default 50, "
                                                                 "at most 1000).")] = DEFAULT_LIMIT,
    offset: Annotated[int | None, Query(ge=0, le=100_000_000,
                                        description="Items to skip; default (page − 1) × limit.")] = None,
) -> Paging:
    """The ``page``, ``limit`` and ``offset`` parameters."""
    return Paging(page, limit, offset)


SettingsDep = Annotated[Settings, Depends(get_settings)]
StoreDep = Annotated[StatsStore, Depends(get_store)]
ReporterDep = Annotated[Reporter, Depends(get_reporter)]
QueuesDep = Annotated[list[str] | None, Depends(get_queues)]
QueryDep = Annotated[StatsQuery, Depends(get_query)]
PagingDep = Annotated[Paging, Depends(get_paging)]
