"""Builds the FastAPI app: read-only stats over the precomputed keys."""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from aggregator.connection import RedisTarget
from aggregator.keys import Keys
from aggregator.settings import Settings
from api.accesslog import truncate_access_log
from api.auth import AuthMiddleware, Credentials
from api.envelope import install_error_handlers
from api.routers import archive, dashboard, jobs, metrics, probes, queues, stats, stream, system, ws
from api.routers.dashboard import STATIC_DIR
from api.state import AppState, PartitionCount, StreamSlots

# A reply later than this is a timeout (reported as such, never as Redis being down). Requests are
# bounded (api/limits.py) and their Redis work chunked, so a healthy Redis answers far sooner.
REDIS_TIMEOUT_S = 5.0
GIL_SWITCH_S = 0.001
# Young-generation collections after this many allocations (default 700): a detailed request
# allocates tens of thousands of short-lived containers, none in cycles.
GC_THRESHOLD = (50_000, 20, 100)


def quiet_gc() -> None:
    """Keep Python's cycle collector out of request latency (once per process).

    With the default settings a full collection walked every object the
    process had made at start-up (FastAPI, pydantic schemas) every few
    requests: detailed at 100 queues took 10 ms at p50 and 40-55 ms at p99,
    10 ms at p99 with the collector off. Start-up objects are frozen out of
    its walks; cycles are still collected.
    """
    if gc.get_freeze_count():  # already done in this process (an earlier app, or another component)
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


def create_app(settings: Settings, target: RedisTarget | None = None,
               clock: Callable[[], float] = time.time) -> FastAPI:
    """The API app for one deployment (``clock``: the time source, for tests)."""
    target = target or RedisTarget(settings.redis_url)
    state = AppState(settings=settings, keys=Keys(settings.key_prefix),
                     streams=StreamSlots(settings.stream_max_clients), clock=clock, started_s=clock())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = target.asyncio(socket_timeout=REDIS_TIMEOUT_S, socket_connect_timeout=REDIS_TIMEOUT_S)
        state.redis_client = client
        state.partitions = PartitionCount(client, state.keys, settings.partitions)
        truncate_access_log()
        quiet_gc()
        # Large responses are built in worker threads; a thread holding the GIL gives it back to the
        # event loop after this long (default 5 ms), so other requests are not held up behind it.
        sys.setswitchinterval(GIL_SWITCH_S)
        yield
        await client.aclose()

    app = FastAPI(
        title="jobpulse",
        version="0.1.0",
        summary="Job queue statistics, hammerwork-web compatible, computed from precomputed Redis keys.",
        lifespan=lifespan,
    )
    app.state.jobpulse = state
    app.add_middleware(AuthMiddleware, credentials=Credentials.from_settings(settings), settings=settings)
    if settings.trusted_proxies:  # added last, so it runs first: the lockout sees the forwarded client
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    install_error_handlers(app)
    app.include_router(stats.router)
    app.include_router(stream.router)
    # hammerwork-web's other routes, so its dashboard and API clients work (docs/hammerwork.md)
    app.include_router(queues.router)
    app.include_router(jobs.router)
    app.include_router(archive.router)
    app.include_router(system.router)
    app.include_router(ws.router)
    app.include_router(metrics.router)
    app.include_router(probes.router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
