"""What every integration shares: one emitter per process (a forked child gets
its own, since the sender thread does not survive a fork), the start times of
running jobs, and the events that end an attempt.

One attempt ends in exactly one outcome event (completed, failed, timed_out or
dead), followed by ``retried`` when the queue will run the job again, so the
error rate counts each attempt once. A failure the queue will not retry is
``dead``; a timeout stays ``timed_out`` whether or not it is retried. Every
integration describes a failure alike (:func:`describe_error`): the original
exception's class name and message, so ``raise ValueError("boom")`` makes one
error pattern whichever queue library ran the job.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any, ParamSpec

from aggregator.emitter import Emitter
from aggregator.settings import Settings

log = logging.getLogger("jobpulse.integrations")

_MAX_TRACKED = 100_000  # running jobs whose start time is remembered
# "ValueError: boom" or "rq.timeouts.JobTimeoutException: ...": the last line of a formatted traceback
_TYPED_LINE = re.compile(r"(?:[A-Za-z_]\w*\.)*([A-Z]\w*)(?::[ \t]*(.*))?", re.DOTALL)
P = ParamSpec("P")


class ProcessEmitter:
    """An :class:`Emitter` made on first use in each process, from settings given
    once (or ``JOBPULSE_*`` read on that first use)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings
        self.worker_id: str | None = None
        self.concurrency = 0  # 0 until this process runs jobs: a publisher is not a worker
        self._emitter: Emitter | None = None
        self._pid = 0
        self._lock = threading.Lock()
        # a fork while another thread holds the lock would leave the child's copy locked for ever
        os.register_at_fork(after_in_child=self._after_fork)
        # only this process's own emitter is closed at exit: a forked child must not flush (or spool)
        # the copy of its parent's buffer, which the parent sends itself
        atexit.register(self._close_own, 2.0)

    def _after_fork(self) -> None:
        self._lock = threading.Lock()

    def _close_own(self, timeout_s: float) -> None:
        em = self._emitter
        if em is not None and self._pid == os.getpid():
            em.close(timeout_s)

    def configure(self, settings: Settings | None) -> None:
        """Use these settings from now on (None: read ``JOBPULSE_*`` on first use)."""
        with self._lock:
            self._close_own(2.0)
            self.settings = settings
            self._emitter = None

    def as_worker(self, worker_id: str | None, concurrency: int) -> None:
        """This process runs jobs: heartbeat under ``worker_id`` with ``concurrency`` slots."""
        self.worker_id, self.concurrency = worker_id, max(1, concurrency)
        em = self._emitter
        if em is not None and self._pid == os.getpid():
            if worker_id:
                em.buffer.worker_id = worker_id
            em.buffer.concurrency = self.concurrency

    def get(self) -> Emitter:
        """This process's emitter."""
        em = self._emitter
        if em is not None and self._pid == os.getpid():
            return em
        with self._lock:
            if self._emitter is None or self._pid != os.getpid():
                settings = self.settings if self.settings is not None else Settings()
                self._emitter = Emitter(settings, worker_id=self.worker_id, concurrency=self.concurrency)
                self._pid = os.getpid()
            return self._emitter

    def flush(self, timeout_s: float = 2.0) -> None:
        """Send what this process has buffered (a forked child about to ``os._exit``);
        returns at once while Redis is down, so a job never waits out an outage."""
        em = self._emitter
        if em is not None and self._pid == os.getpid():
            em.flush(timeout_s, unless_down=True)


def never_raises(fn: Callable[P, None]) -> Callable[P, None]:
    """Wrap a hook so that nothing in jobpulse can change the outcome of the job it reports on."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            log.exception("jobpulse: %s failed; the job is unaffected", fn.__name__)

    return wrapper


class StartTimes:
    """When each running job started (monotonic), to measure its processing time."""

    def __init__(self) -> None:
        self._started: dict[str, float] = {}

    def start(self, job_id: str) -> None:
        """Remember that ``job_id`` starts now."""
        if len(self._started) >= _MAX_TRACKED:  # jobs whose end we never saw: forget the oldest
            self._started.pop(next(iter(self._started)))
        self._started[job_id] = time.monotonic()

    def stop_ms(self, job_id: str) -> int | None:
        """Milliseconds since ``job_id`` started, or None if its start was not seen here."""
        started = self._started.pop(job_id, None)
        return None if started is None else round((time.monotonic() - started) * 1000)


def describe_error(error: BaseException | str) -> tuple[str, str | None]:
    """(message, error_type) of a failure, the same in every integration: the exception's class
    name without its module path and its own message; a traceback's last line gives the same."""
    if isinstance(error, BaseException):
        name = type(error).__name__
        return str(error) or name, name
    match = _TYPED_LINE.fullmatch(error.strip())
    if match is None:  # a message of ours ("timed out after 5 s"): the aggregator classifies it
        return error, None
    return match[2] or match[1], match[1]


def attempt_ended(
    em: Emitter,
    job_id: str,
    queue: str,
    *,
    error: BaseException | str | None,
    processing_time_ms: int | None,
    job_type: str | None,
    timed_out: bool = False,
    retrying: bool = False,
    **fields: Any,
) -> None:
    """Emit the one outcome of an attempt, then ``retried`` if the job will run again."""
    common: dict[str, Any] = {"job_type": job_type, "processing_time_ms": processing_time_ms, **fields}
    if error is None:
        em.completed(job_id, queue, **common)
        return
    error, common["error_type"] = describe_error(error)
    if timed_out:
        em.timed_out(job_id, queue, error=error, **common)
    elif retrying:
        em.failed(job_id, queue, error=error, **common)
    else:
        em.dead(job_id, queue, error=error, **common)
    if retrying:
        em.retried(job_id, queue, job_type=job_type)


def since_ms(start_s: float | None) -> int | None:
    """Milliseconds from a wall-clock timestamp to now (never negative), or None."""
    return None if start_s is None else max(0, round((time.time() - start_s) * 1000))
