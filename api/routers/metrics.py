"""/metrics: Prometheus exposition, read from the same precomputed keys."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.deps import ReporterDep
from api.metrics import exposition

router = APIRouter(tags=["metrics"])


@router.get("/metrics", response_class=Response)
async def metrics(reporter: ReporterDep) -> Response:
    """Prometheus metrics: job counters, gauges and latency histograms by queue."""
    return Response(exposition(await reporter.metrics()), media_type=CONTENT_TYPE_LATEST)
