"""/api/jobs: the jobs jobpulse still remembers (each job's record, listed through each queue's bounded
index of recent jobs), in hammerwork-web's shape; read-only."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from api import jobs_store
from api.deps import PagingDep, ReporterDep
from api.envelope import BAD_PARAMETER, NOT_FOUND, READ_ONLY_TEXT, error_doc, failure, ok, read_only
from api.hammerwork import JobFilter, job_info, page_of
from api.hammerwork_models import JobInfo, JobList
from api.limits import check_reads
from api.models import ApiResponse
from api.query import BadParameter

router = APIRouter(prefix="/api/jobs", tags=["jobs"],
                   responses={422: BAD_PARAMETER, 503: error_doc("Redis is unreachable."),
                              504: error_doc("Redis did not answer in time.")})
OFFLOAD_JOBS = 1000  # listings holding more jobs than this are built in a worker thread
_Text = Annotated[str | None, Query(max_length=200)]


@router.get("", response_model=ApiResponse[JobList])
async def list_jobs(
    reporter: ReporterDep,
    paging: PagingDep,
    status: Annotated[str | None, Query(description="pending, running, completed, failed (every failure), "
                                                    "timedout, retrying, dead, cancelled, archived; any case.")] = None,
    priority: Annotated[str | None, Query(description="background, low, normal, high or critical; any case.")] = None,
    queue: Annotated[str | None, Query(max_length=200, description="Only this queue.")] = None,
    created_after: Annotated[str | None, Query(description="RFC 3339; jobs enqueued at or after.",
                                               json_schema_extra={"format": "date-time"})] = None,
    created_before: Annotated[str | None, Query(description="RFC 3339; jobs enqueued before.",
                                                json_schema_extra={"format": "date-time"})] = None,
    search: Annotated[str | None, Query(max_length=200, description="Part of the job id or error message.")] = None,
    sort_by: _Text = None,
    sort_order: _Text = None,
) -> Response:
    """The jobs of each queue's index of recent jobs (the latest JOBPULSE_RECENT_JOBS_PER_QUEUE per queue) whose
    record is still kept (finished jobs: JOBPULSE_DEDUP_WINDOW_S), filtered."""
    wanted = JobFilter.parse(status, priority, created_after, created_before, search, sort_by, sort_order)
    store = reporter.store
    queues = [queue] if queue else await store.queue_names()
    check_reads(len(queues) * reporter.settings.recent_jobs_per_queue, "queue", "name one queue")
    views = await jobs_store.recent_jobs(store, queues)

    def build() -> JobList:
        jobs = wanted.order([j for j in map(job_info, views) if wanted.keep(j)])
        meta, start = page_of(len(jobs), paging.page, paging.limit, paging.offset)
        page = jobs[start : start + paging.limit]
        return JobList(items=page, jobs=page, pagination=meta)

    return ok(await asyncio.to_thread(build) if len(views) > OFFLOAD_JOBS else build())


@router.get("/{job_id}", response_model=ApiResponse[JobInfo], responses={404: NOT_FOUND})
async def get_job(reporter: ReporterDep, job_id: str) -> Response:
    """One job, while its record is kept (unfinished: JOBPULSE_JOB_TTL_S; finished: JOBPULSE_DEDUP_WINDOW_S)."""
    if len(job_id) > 200:
        raise BadParameter("job_id", "a job id is at most 200 characters")
    view = await jobs_store.read_job(reporter.store, job_id)
    if view is None:
        return failure(404, f"Job '{job_id}' not found")
    return ok(job_info(view))


@router.post("", status_code=405, response_model=ApiResponse[None],
              response_description=READ_ONLY_TEXT)
async def create_job() -> JSONResponse:
    """Refused (405): jobs are created through hammerwork."""
    return read_only("create jobs")


@router.post("/bulk", status_code=405, response_model=ApiResponse[None],
              response_description=READ_ONLY_TEXT)
async def bulk_action() -> JSONResponse:
    """Refused (405): bulk job actions are hammerwork's to do."""
    return read_only("act on jobs")


@router.post("/search", status_code=405, response_model=ApiResponse[None],
              response_description=READ_ONLY_TEXT)
async def search_jobs() -> JSONResponse:
    """Refused (405): search with GET /api/jobs?search=."""
    return read_only("search by POST (use GET /api/jobs?search=...)")


@router.post("/{job_id}/actions", status_code=405, response_model=ApiResponse[None],
              response_description=READ_ONLY_TEXT)
async def job_action(job_id: str) -> JSONResponse:
    """Refused (405): retrying, cancelling or deleting a job is hammerwork's to do."""
    return read_only("retry, cancel or delete jobs")


@router.post("/{job_id}/retry", status_code=405, response_model=ApiResponse[None],
              response_description=READ_ONLY_TEXT)
async def retry_job(job_id: str) -> JSONResponse:
    """Refused (405): retrying a job is hammerwork's to do."""
    return read_only("retry jobs")


@router.delete("/{job_id}", status_code=405, response_model=ApiResponse[None],
              response_description=READ_ONLY_TEXT)
async def delete_job(job_id: str) -> JSONResponse:
    """Refused (405): deleting a job is hammerwork's to do."""
    return read_only("delete jobs")
