"""/api/queues: hammerwork-web's queue routes, read-only; every number is /api/stats/detailed's."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from api import jobs_store
from api.deps import PagingDep, ReporterDep
from api.envelope import BAD_PARAMETER, NOT_FOUND, READ_ONLY_TEXT, error_doc, failure, ok, read_only
from api.hammerwork import page_of, queue_infos
from api.hammerwork_models import DetailedQueueStats, HourlyThroughput, QueueList, RecentError
from api.models import ApiResponse
from api.query import build_query
from api.report import utc
from api.stats import PRIORITIES

router = APIRouter(prefix="/api/queues", tags=["queues"],
                   responses={422: BAD_PARAMETER, 503: error_doc("Redis is unreachable."),
                              504: error_doc("Redis did not answer in time.")})
STATUS_KINDS = ("enqueued", "completed", "dead", "timed_out", "retried", "cancelled", "archived", "restored")


@router.get("", response_model=ApiResponse[QueueList])
async def list_queues(reporter: ReporterDep, paging: PagingDep) -> Response:
    """Every queue ever seen, sorted by name, a page at a time."""
    names = await reporter.store.queue_names()
    meta, start = page_of(len(names), paging.page, paging.limit, paging.offset)
    infos = [info for info, _ in await queue_infos(reporter, names[start : start + paging.limit])]
    return ok(QueueList(items=infos, queues=infos, pagination=meta))


@router.get("/{name}", response_model=ApiResponse[DetailedQueueStats], responses={404: NOT_FOUND})
async def get_queue(reporter: ReporterDep, name: str) -> Response:
    """One queue: its QueueInfo, priorities, statuses, last 24 hours and latest failures."""
    store = reporter.store
    if len(name) > 200 or not await store.client.sismember(store.keys.queues(store.partition(name)),
                                                           name):  # type: ignore[misc]  # redis-py 5 stubs
        return failure(404, f"Queue '{name}' not found")
    query = build_query(None, None, [name], None, int(reporter.now_s))
    ((info, snap),), trends, failures = await asyncio.gather(
        queue_infos(reporter, [name]), reporter.trends(query), jobs_store.recent_failures(store, name))
    totals = snap.totals
    statuses = {"pending": info.pending_count, "running": info.running_count, "failed": info.failed_count}
    statuses |= {kind: totals.count(kind) for kind in STATUS_KINDS}
    return ok(DetailedQueueStats(
        queue_info=info,
        priority_breakdown={p: totals.priorities.get(p, 0) for p in PRIORITIES},
        status_breakdown=statuses,
        hourly_throughput=[HourlyThroughput(hour=t.hour, completed=t.completed, failed=t.failed) for t in trends],
        recent_errors=[RecentError(job_id=f.job_id, error_message=f.message, occurred_at=utc(f.ts_ms / 1000),
                                   attempts=f.attempt, event_type=f.event_type) for f in failures],
    ))


@router.post("/{name}/actions", status_code=405, response_model=ApiResponse[None],
              response_description=READ_ONLY_TEXT)
async def queue_action(name: str) -> JSONResponse:
    """Refused (405): pausing, resuming or clearing a queue is hammerwork's to do."""
    return read_only(f"pause, resume or clear queue '{name}'")


@router.post("/{name}/clear", status_code=405, response_model=ApiResponse[None],
              response_description=READ_ONLY_TEXT)
async def clear_queue(name: str) -> JSONResponse:
    """Refused (405): clearing a queue is hammerwork's to do."""
    return read_only(f"clear queue '{name}'")
