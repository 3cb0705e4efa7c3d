"""Builds the FastAPI app: read-only stats over the precomputed keys."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from aggregator.connection import RedisTarget, store_partitions_async
from aggregator.keys import Keys
from aggregator.settings import Settings
from api.auth import AuthMiddleware, Credentials
from api.envelope import install_error_handlers
from api.routers import dashboard, metrics, probes, stats, stream
from api.routers.dashboard import STATIC_DIR
from api.routers.stream import StreamSlots


class PartitionCount:
    """P as stored in the meta key (stored by this API if it is the first component to start);
    the setting while Redis cannot be read."""

    def __init__(self, client: redis.asyncio.Redis, keys: Keys, fallback: int) -> None:
        self.client, self.keys, self.fallback = client, keys, fallback
        self.known: int | None = None

    async def __call__(self) -> int:
        if self.known is None:
            try:
                self.known = await self._stored()
            except (redis.RedisError, OSError):
                return self.fallback
        return self.known if self.known is not None else self.fallback

    async def _stored(self) -> int | None:
        try:
            return await store_partitions_async(self.client, self.keys, self.fallback)
        except redis.exceptions.NoPermissionError:  # the read-only ACL user: read what another stored
            raw = await self.client.hget(self.keys.meta, "partitions")  # type: ignore[misc]  # redis-py 5 stubs
            return None if raw is None else int(raw)


def create_app(settings: Settings, target: RedisTarget | None = None) -> FastAPI:
    """The API app for one deployment."""
    target = target or RedisTarget(settings.redis_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = target.asyncio(socket_timeout=2.0, socket_connect_timeout=2.0)
        app.state.redis = client
        app.state.partitions = PartitionCount(client, app.state.keys, settings.partitions)
        yield
        await client.aclose()

    app = FastAPI(
        title="jobpulse",
        version="0.1.0",
        summary="Job queue statistics, hammerwork-web compatible, computed from precomputed Redis keys.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.keys = Keys(settings.key_prefix)
    app.state.started_s = time.time()
    app.state.streams = StreamSlots(settings.stream_max_clients)
    app.add_middleware(AuthMiddleware, credentials=Credentials.from_settings(settings), settings=settings)
    if settings.trusted_proxies:  # added last, so it runs first: the lockout sees the forwarded client
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    install_error_handlers(app)
    app.include_router(stats.router)
    app.include_router(stream.router)
    app.include_router(metrics.router)
    app.include_router(probes.router)
    app.include_router(dashboard.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
