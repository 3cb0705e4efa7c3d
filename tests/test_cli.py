"""`jobpulse serve --demo` as a user runs it: no Redis URL, real numbers within 10 s."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx

from aggregator.embedded import free_port


def test_serve_demo_shows_completed_and_failed_jobs_within_10_s() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPULSE_")}
    proc = subprocess.Popen([sys.executable, "-m", "aggregator", "serve", "--demo", "--port", str(port)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    started = time.monotonic()
    data = None
    try:
        while time.monotonic() - started < 10:
            try:
                data = httpx.get(f"http://127.0.0.1:{port}/api/stats/overview", timeout=2).json()["data"]
                if data["completed_jobs"] > 0 and data["failed_jobs"] > 0:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        assert data is not None, "the API never answered"
        assert data["completed_jobs"] > 0 and data["failed_jobs"] > 0, data
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=15)
    assert b"store = embedded" in out
