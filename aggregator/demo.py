"""A load generator for ``jobpulse serve --demo``: simulated workers whose
jobs go through every lifecycle step, reported through the real emitter."""

from __future__ import annotations

import heapq
import itertools
import random
import threading
import time
from dataclasses import dataclass

from aggregator.emitter import Emitter

ERRORS = [
    ("ConnectionError", "connection refused by smtp.example.com:587"),
    ("TimeoutError", "upstream did not answer within 30 s (request 4711)"),
    ("ValueError", "invalid image header in upload 9f8e7d6c5b4a"),
    ("KeyError", "customer 'acme-42' not found"),
]


@dataclass(frozen=True)
class QueueProfile:
    """How one simulated queue behaves."""

    name: str
    jobs_per_s: float
    mean_ms: float
    fail_rate: float
    timeout_rate: float
    priorities: tuple[str, ...]
    job_type: str


PROFILES = [
    QueueProfile("email", 12, 120, 0.04, 0.0, ("normal", "high"), "SendEmail"),
    QueueProfile("image_processing", 4, 900, 0.08, 0.02, ("normal", "low", "background"), "ResizeImage"),
    QueueProfile("billing", 2, 300, 0.02, 0.01, ("critical", "high"), "ChargeCard"),
    QueueProfile("reports", 0.5, 2500, 0.15, 0.05, ("low", "background"), "BuildReport"),
    QueueProfile("webhooks", 8, 60, 0.12, 0.0, ("normal",), "DeliverWebhook"),
]
MAX_ATTEMPTS = 3
CANCEL_RATE = 0.01


class DemoLoad:
    """Runs the simulation in a thread until stopped."""

    def __init__(self, emitter: Emitter, speed: float = 1.0, seed: int | None = None) -> None:
        self.emitter = emitter
        self.speed = speed
        self.rng = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobpulse-demo", daemon=True)
        self._ids = itertools.count(1)

    def start(self) -> DemoLoad:
        """Begin emitting."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop emitting and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        agenda: list[tuple[float, int, str, str, QueueProfile, int, float]] = []
        seq = itertools.count()
        next_arrival = {q.name: time.time() for q in PROFILES}
        em, rng = self.emitter, self.rng
        while not self._stop.is_set():
            now = time.time()
            for q in PROFILES:
                while next_arrival[q.name] <= now:
                    job = f"{q.name}-{next(self._ids)}"
                    em.enqueued(job, q.name, priority=rng.choice(q.priorities), job_type=q.job_type,
                                timestamp_s=next_arrival[q.name])
                    wait_s = rng.expovariate(1 / 0.3)
                    heapq.heappush(agenda, (next_arrival[q.name] + wait_s, next(seq), "start", job, q, 1,
                                            next_arrival[q.name]))
                    next_arrival[q.name] += rng.expovariate(q.jobs_per_s * self.speed)
            while agenda and agenda[0][0] <= now:
                at, _, step, job, q, attempt, since = heapq.heappop(agenda)
                self._step(agenda, seq, at, step, job, q, attempt, since)
            self._stop.wait(0.05)

    def _step(self, agenda: list[tuple[float, int, str, str, QueueProfile, int, float]], seq: itertools.count[int],
              at: float, step: str, job: str, q: QueueProfile, attempt: int, since: float) -> None:
        em, rng = self.emitter, self.rng
        if step == "start":
            if attempt == 1 and rng.random() < CANCEL_RATE:
                em.cancelled(job, q.name, timestamp_s=at)
                return
            em.started(job, q.name, wait_time_ms=int((at - since) * 1000), attempt=attempt, job_type=q.job_type,
                       timestamp_s=at)
            took_s = rng.lognormvariate(0, 0.6) * q.mean_ms / 1000
            heapq.heappush(agenda, (at + took_s, next(seq), "finish", job, q, attempt, at))
            return
        took_ms = int((at - since) * 1000)
        roll = rng.random()
        if roll < q.timeout_rate:
            em.timed_out(job, q.name, processing_time_ms=took_ms, attempt=attempt, job_type=q.job_type,
                         error=f"job exceeded its {int(q.mean_ms * 4)} ms timeout", timestamp_s=at)
        elif roll < q.timeout_rate + q.fail_rate:
            error_type, message = rng.choice(ERRORS)
            em.failed(job, q.name, error=message, error_type=error_type, processing_time_ms=took_ms,
                      attempt=attempt, job_type=q.job_type, timestamp_s=at)
        else:
            em.completed(job, q.name, processing_time_ms=took_ms, attempt=attempt, job_type=q.job_type,
                         timestamp_s=at)
            return
        if attempt >= MAX_ATTEMPTS:
            em.dead(job, q.name, error="gave up after 3 attempts", timestamp_s=at + 0.001)
        else:
            em.retried(job, q.name, timestamp_s=at + 0.001)
            heapq.heappush(agenda, (at + 0.5 * 2**attempt, next(seq), "start", job, q, attempt + 1, at + 0.001))
