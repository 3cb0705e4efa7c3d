"""A Celery app as a user writes one, plus the two jobpulse lines; the tests run a real worker of it."""

from __future__ import annotations

import os
import time

from celery import Celery, Task

from aggregator.integrations.celery import install

app = Celery("jp_test", broker=os.environ["JP_TEST_BROKER"], backend=os.environ["JP_TEST_BACKEND"])
app.conf.update(task_default_queue=os.environ["JP_TEST_QUEUE"], worker_hijack_root_logger=False,
                broker_connection_retry_on_startup=True, result_expires=600)
install(app)


@app.task
def ok(x: int) -> int:
    """Succeeds."""
    return x * 2


@app.task
def boom(n: int) -> None:
    """Fails; not retried."""
    raise ValueError(f"boom {n}")


@app.task(bind=True, max_retries=3)
def flaky(self: Task) -> str:
    """Fails twice, retried each time, then succeeds."""
    if self.request.retries < 2:
        raise self.retry(exc=ConnectionError("upstream refused"), countdown=0)
    return "done"


@app.task(bind=True, max_retries=1)
def hopeless(self: Task) -> None:
    """Fails, retried once, fails for good."""
    raise self.retry(exc=KeyError("missing"), countdown=0)


@app.task(soft_time_limit=0.5)
def slow() -> None:
    """Runs past its soft time limit."""
    time.sleep(5)
