"""/api/stats/stream: the overview pushed as Server-Sent Events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
import redis
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from api.deps import QueuesDep, StateDep, new_store
from api.envelope import BAD_PARAMETER, error_doc, failure, redis_problem
from api.report import Reporter

router = APIRouter(prefix="/api/stats", tags=["stats"])


def sse(event: str, data: bytes) -> bytes:
    """One Server-Sent Events message."""
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


@router.get("/stream", response_class=StreamingResponse,
            responses={422: BAD_PARAMETER, 503: error_doc("Too many live streams.")})
async def stream(request: Request, state: StateDep, queues: QueuesDep) -> Response:
    """Server-Sent Events: `overview` every second, `alerts` whenever they change."""
    settings, slots = state.settings, state.streams
    if not slots.take():
        return failure(503, f"too many live streams (limit {slots.limit}); try again later")

    async def events() -> AsyncIterator[bytes]:
        last_alerts: bytes | None = None
        try:
            yield b"retry: 2000\n\n"  # how long a browser waits before reconnecting
            while not await request.is_disconnected():
                reporter = Reporter(await new_store(state), settings, state.started_s, state.clock())
                try:
                    overview = await reporter.overview(queues)
                except (redis.RedisError, OSError) as exc:
                    yield sse("error", orjson.dumps({"error": redis_problem(exc)}))
                else:
                    yield sse("overview", overview.model_dump_json().encode())
                    alerts = orjson.dumps([a.model_dump(mode="json") for a in overview.system_health.alerts])
                    if alerts != last_alerts:
                        yield sse("alerts", alerts)
                        last_alerts = alerts
                await asyncio.sleep(settings.stream_interval_s)
        finally:
            slots.give_back()

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
