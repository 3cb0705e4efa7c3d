"""`jobpulse serve --demo` as a user runs it: no Redis URL, real numbers within 10 s; Ctrl-C or SIGTERM stops
it cleanly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import httpx
import pytest

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


@pytest.mark.parametrize(("sig", "whole_group"), [(signal.SIGINT, True), (signal.SIGTERM, False)],
                         ids=["ctrl-c-to-the-group", "sigterm-to-serve-alone"])
def test_a_stop_signal_stops_serve_cleanly_and_its_embedded_store_with_it(sig: int, whole_group: bool) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it, or SIGTERM to serve alone, as a
    service manager or `docker stop` sends it: exit 0, no warning, no store left."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPULSE_")}
    proc = subprocess.Popen([sys.executable, "-m", "aggregator", "serve", "--demo", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/stats/overview", timeout=2).json()["data"]["total_jobs"]:
                    break
            except (httpx.TransportError, KeyError, TypeError):
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "serve --demo did not come up"
            time.sleep(0.2)
        if whole_group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, out
    assert "WARNING" not in out and "Traceback" not in out, out
    store = re.search(r"embedded redis-server \(pid (\d+)\)", out)
    if store:  # the child was stopped, not left running
        with pytest.raises(ProcessLookupError):
            os.kill(int(store.group(1)), 0)
