"""/metrics: Prometheus exposition, read from the same precomputed keys."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.deps import StateDep, StoreDep
from api.metrics import collect, exposition

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep, store: StoreDep) -> Response:
    """Prometheus metrics: job counters, gauges and latency histograms by queue."""
    families = await collect(store, int(state.clock() * 1000))
    # the text of every queue's counters and histograms: rendered off the event loop
    return Response(await asyncio.to_thread(exposition, families), media_type=CONTENT_TYPE_LATEST)
