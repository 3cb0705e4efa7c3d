"""RQ: a Queue class for producers and a Worker class for workers.

Producers::

    from aggregator.integrations.rq import JobpulseQueue as Queue

Workers::

    rq worker -w aggregator.integrations.rq.JobpulseWorker

``enqueue`` emits ``enqueued``; the worker emits ``started`` (wait since
``enqueued_at``), then ``completed``; ``failed`` + ``retried`` when RQ retries
the job (``Retry`` given at enqueue, or a ``Retry`` returned); ``timed_out``
when the job exceeds its ``job_timeout``; ``dead`` otherwise. The queue is the
RQ queue, the job type the function name, the worker id the RQ worker name.
Jobs scheduled with ``enqueue_at``/``enqueue_in`` are counted when they start.
"""

from __future__ import annotations

import sys
from datetime import UTC
from typing import Any

from rq import Queue, Retry, Worker
from rq.job import Job

from aggregator.integrations.base import (
    ProcessEmitter,
    StartTimes,
    attempt_ended,
    describe_error,
    never_raises,
    since_ms,
)
from aggregator.settings import Settings

ATTEMPT_META = "jobpulse_attempt"
TIMEOUT_EXCEPTION = "JobTimeoutException"

emitter = ProcessEmitter()
_started = StartTimes()


def configure(settings: Settings | None) -> None:
    """Use these settings instead of ``JOBPULSE_*``."""
    emitter.configure(settings)


def _wait_ms(job: Job) -> int | None:
    enqueued = job.enqueued_at
    if enqueued is None:
        return None
    if enqueued.tzinfo is None:  # RQ stores naive UTC
        enqueued = enqueued.replace(tzinfo=UTC)
    return since_ms(enqueued.timestamp())


@never_raises
def _enqueued(job: Job) -> None:
    emitter.get().enqueued(job.id, job.origin, job_type=job.func_name)


class JobpulseQueue(Queue):
    """An RQ queue that reports each job it enqueues."""

    def enqueue_job(self, job: Job, *args: Any, **kwargs: Any) -> Job:
        """Enqueue as RQ does, then emit ``enqueued``."""
        job = super().enqueue_job(job, *args, **kwargs)
        _enqueued(job)
        return job


class JobpulseWorker(Worker):
    """An RQ worker that reports each job's start and outcome."""

    def prepare_job_execution(self, job: Job, *args: Any, **kwargs: Any) -> None:
        """RQ's bookkeeping, then ``started``."""
        super().prepare_job_execution(job, *args, **kwargs)
        self._jobpulse_started(job)

    @never_raises
    def _jobpulse_started(self, job: Job) -> None:
        emitter.as_worker(self.name, 1)
        attempt = int(job.meta.get(ATTEMPT_META, 0)) + 1
        job.meta[ATTEMPT_META] = attempt  # saved with the job when RQ retries it
        _started.start(job.id)
        emitter.get().started(job.id, job.origin, wait_time_ms=_wait_ms(job), attempt=attempt,
                              job_type=job.func_name)

    def perform_job(self, job: Job, *args: Any, **kwargs: Any) -> bool:
        """Run the job as RQ does; a forked work horse sends its events before it exits."""
        try:
            return bool(super().perform_job(job, *args, **kwargs))
        finally:
            if getattr(self, "_is_horse", False):  # the horse leaves through os._exit: no atexit
                emitter.flush()

    def handle_job_success(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        """RQ's bookkeeping, then ``completed``."""
        super().handle_job_success(job, queue, *args, **kwargs)
        self._jobpulse_ended(job, None, retrying=False)

    def handle_job_failure(self, job: Job, queue: Queue, *args: Any, **kwargs: Any) -> None:
        """RQ's bookkeeping (which may retry the job), then the attempt's outcome."""
        retrying = _will_retry(job, self)  # as RQ decides, before it changes the job
        super().handle_job_failure(job, queue, *args, **kwargs)
        self._jobpulse_failed(job, str(kwargs.get("exc_string") or ""), retrying=retrying)

    def handle_job_retry(self, job: Job, queue: Queue, retry: Retry, *args: Any, **kwargs: Any) -> None:
        """RQ's bookkeeping for a job that returned ``Retry``, then its outcome."""
        done = getattr(job, "number_of_retries", None) or 0
        exhausted = done >= retry.max
        super().handle_job_retry(job, queue, retry, *args, **kwargs)
        self._jobpulse_ended(job, "job returned Retry", retrying=not exhausted)

    @never_raises
    def _jobpulse_failed(self, job: Job, exc_string: str, *, retrying: bool) -> None:
        self._jobpulse_ended(job, _failure(exc_string), retrying=retrying, timed_out=TIMEOUT_EXCEPTION in exc_string)

    @never_raises
    def _jobpulse_ended(
        self, job: Job, error: BaseException | str | None, *, retrying: bool, timed_out: bool = False
    ) -> None:
        attempt_ended(
            emitter.get(), job.id, job.origin, error=error, processing_time_ms=_started.stop_ms(job.id),
            job_type=job.func_name, retrying=retrying, timed_out=timed_out,
        )


def _will_retry(job: Job, worker: Worker) -> bool:
    """RQ's own test for retrying a failed job (a job stopped on request never is)."""
    try:
        return bool(job.should_retry) and getattr(worker, "_stopped_job_id", None) != job.id
    except Exception:  # an RQ without these attributes: report the failure as final
        return False


def _failure(exc_string: str) -> BaseException | str:
    """The job's exception: RQ calls this inside its ``except``, where the exception itself is at
    hand (its whole message); else the traceback's last line (``ValueError: boom``)."""
    lines = [line for line in exc_string.strip().splitlines() if line.strip()]
    last = lines[-1].strip() if lines else "job failed"
    exc = sys.exc_info()[1]
    # the text RQ formatted may be another exception's (a failure callback that raised)
    return exc if exc is not None and describe_error(last)[1] == type(exc).__name__ else last
