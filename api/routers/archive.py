"""/api/archive: what jobpulse knows of hammerwork's archive, from the `archived` and `restored` events;
the archive itself (payloads, sizes, reasons, operations) is hammerwork's: null. Read-only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import JSONResponse, Response

from api import jobs_store
from api.deps import PagingDep, ReporterDep
from api.envelope import BAD_PARAMETER, READ_ONLY_TEXT, error_doc, ok, read_only
from api.hammerwork import page_of
from api.hammerwork_models import ArchivalStats, ArchivedJob, ArchivedJobList, ArchiveStats
from api.jobs_store import ArchiveCounts
from api.limits import check_reads
from api.models import ApiResponse
from api.report import utc

router = APIRouter(prefix="/api/archive", tags=["archive"],
                   responses={422: BAD_PARAMETER, 503: error_doc("Redis is unreachable."),
                              504: error_doc("Redis did not answer in time.")})
_Queue = Annotated[str | None, Query(max_length=200, description="Only this queue.")]


def _stats(c: ArchiveCounts) -> ArchivalStats:
    return ArchivalStats(
        jobs_archived=c.archived, jobs_purged=None, bytes_archived=None, bytes_purged=None, compression_ratio=None,
        operation_duration=None, last_run_at=utc(c.archived_ms / 1000) if c.archived_ms else None,
        jobs_restored=c.restored, last_restored_at=utc(c.restored_ms / 1000) if c.restored_ms else None)


@router.get("/stats", response_model=ApiResponse[ArchiveStats])
async def archive_stats(reporter: ReporterDep, queue: _Queue = None) -> Response:
    """Counts and latest times of `archived` and `restored` events, overall and per queue."""
    names = [queue] if queue else await reporter.store.queue_names()
    check_reads(len(names), "queue", "name one queue")
    per_queue = await jobs_store.archive_counts(reporter.store, names)
    overall = ArchiveCounts()
    for c in per_queue.values():
        overall.merge(c)
    by_queue = None if queue else {q: _stats(c) for q, c in per_queue.items() if c.archived or c.restored}
    return ok(ArchiveStats(stats=_stats(overall), by_queue=by_queue, recent_operations=None))


@router.get("/jobs", response_model=ApiResponse[ArchivedJobList])
async def archived_jobs(reporter: ReporterDep, paging: PagingDep, queue: _Queue = None,
                        reason: Annotated[str | None, Query(max_length=200, description=(
                            "Archival reason: not in the events, so no job matches one."))] = None) -> Response:
    """Jobs of the queues' indexes of recent jobs whose latest event is `archived` (while their record is
    kept), latest first."""
    store = reporter.store
    names = [queue] if queue else await store.queue_names()
    check_reads(len(names) * reporter.settings.recent_jobs_per_queue, "queue", "name one queue")
    views = [] if reason else await jobs_store.recent_jobs(store, names)
    jobs = sorted((v for v in views if v.event_type == "archived"), key=lambda v: (-v.ts_ms, v.job_id))
    meta, start = page_of(len(jobs), paging.page, paging.limit, paging.offset)
    items = [ArchivedJob(id=v.job_id, queue_name=v.queue, status="Archived",
                         created_at=utc(v.record.created_ms / 1000) if v.record.created_ms is not None else None,
                         archived_at=utc(v.ts_ms / 1000), archival_reason=None, original_payload_size=None,
                         payload_compressed=None, archived_by=None)
             for v in jobs[start : start + paging.limit]]
    return ok(ArchivedJobList(items=items, pagination=meta))


@router.post("/jobs", status_code=405, response_model=ApiResponse[None],
              response_description=READ_ONLY_TEXT)
async def archive_jobs() -> JSONResponse:
    """Refused (405): archiving is hammerwork's to do."""
    return read_only("archive jobs")


@router.post("/jobs/{job_id}/restore", status_code=405, response_model=ApiResponse[None],
              response_description=READ_ONLY_TEXT)
async def restore_job(job_id: str) -> JSONResponse:
    """Refused (405): restoring is hammerwork's to do."""
    return read_only("restore archived jobs")


@router.delete("/purge", status_code=405, response_model=ApiResponse[None],
              response_description=READ_ONLY_TEXT)
async def purge() -> JSONResponse:
    """Refused (405): purging is hammerwork's to do."""
    return read_only("purge archived jobs")
