"""`jobpulse aggregate` waits for a Redis (or Redis Cluster) that is not ready yet, instead of exiting."""

from __future__ import annotations

import logging
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from aggregator.connection import wait_until_ready
from aggregator.keys import Keys
from tests.redis_cluster import _node_port, _wait, available
from tests.redis_process import RedisProcess


def _failing(*errors: Exception) -> tuple[list[int], object]:
    calls: list[int] = []

    def connect() -> str:
        calls.append(1)
        if len(calls) <= len(errors):
            raise errors[len(calls) - 1]
        return "connected"

    return calls, connect


def test_waits_through_not_ready_errors_then_returns_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    calls, connect = _failing(
        redis.ConnectionError("Error 111 connecting to redis-1:6379. Connection refused."),
        redis.exceptions.RedisClusterException("All slots are not covered after query all startup_nodes."),
        redis.exceptions.ClusterDownError("CLUSTERDOWN Hash slot not served"),
    )
    with caplog.at_level(logging.INFO, logger="jobpulse"):
        got = wait_until_ready(connect, "redis-1:6379", lambda: False, first_backoff_s=0.05)  # type: ignore[arg-type]
    assert got == "connected" and len(calls) == 4
    waits = [r.getMessage() for r in caplog.records if "not ready" in r.getMessage()]
    assert [w.split("(")[1].split(":")[0] for w in waits] == [
        "ConnectionError", "RedisClusterException", "ClusterDownError"]
    assert "All slots are not covered" in waits[1] and "retrying in 0.1 s" in waits[1]  # backoff doubles
    assert any("is ready after" in r.getMessage() for r in caplog.records)


def test_a_refused_password_is_not_waited_on() -> None:
    calls, connect = _failing(redis.AuthenticationError("invalid username-password pair"))
    with pytest.raises(redis.AuthenticationError):
        wait_until_ready(connect, "redis", lambda: False, first_backoff_s=0.05)  # type: ignore[arg-type]
    assert len(calls) == 1


def test_a_stop_request_ends_the_wait() -> None:
    calls, connect = _failing(*[redis.ConnectionError("refused")] * 100)
    assert wait_until_ready(connect, "redis", lambda: True, first_backoff_s=10.0) is None  # type: ignore[arg-type]
    assert len(calls) == 1


class _Aggregate:
    """``jobpulse aggregate`` as a child process, its log read line by line."""

    def __init__(self, url: str) -> None:
        self.prefix = "tw" + os.urandom(5).hex()
        env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPULSE_")}
        env.update(JOBPULSE_REDIS_URL=url, JOBPULSE_KEY_PREFIX=self.prefix, JOBPULSE_PARTITIONS="4",
                   JOBPULSE_LEASE_TTL_MS="1000")
        self.proc = subprocess.Popen([sys.executable, "-m", "aggregator", "aggregate"], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.put(line)

    def wait_for(self, text: str, timeout_s: float = 60.0) -> str:
        """The first log line (from now on) containing ``text``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.proc.poll() is None, f"exited {self.proc.returncode}: {''.join(self.seen)[-2000:]}"
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} in: {''.join(self.seen)[-2000:]}")

    def rest(self) -> list[str]:
        """The log lines not read yet (once the process has exited)."""
        self.proc.wait(timeout=30)
        self.reader.join(timeout=10)  # it reads the pipe to its end
        lines = []
        while not self.lines.empty():
            lines.append(self.lines.get())
        return lines

    def stop(self) -> int:
        """SIGTERM; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def test_aggregate_waits_for_a_redis_that_starts_later(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path)  # its port is chosen; nothing listens there yet
    agg = _Aggregate(server.url)
    try:
        assert "ConnectionError" in agg.wait_for("is not ready")
        agg.wait_for("is not ready")  # still waiting, not exited
        server.start()
        agg.wait_for("is ready after")
        assert "4 partitions" in agg.wait_for("aggregator ")
        assert agg.stop() == 0
        assert redis.Redis.from_url(server.url).hget(Keys(agg.prefix).meta, "partitions") == b"4"
    finally:
        agg.stop()
        server.stop()


def test_sigterm_while_waiting_stops_the_aggregator(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path)  # never started
    agg = _Aggregate(server.url)
    try:
        agg.wait_for("is not ready")
        assert agg.stop() == 0
        assert any("before Redis was ready" in line for line in agg.rest())
    finally:
        agg.stop()


@pytest.fixture
def unjoined_nodes() -> Iterator[list[int]]:
    """Three cluster-enabled redis-servers, not yet joined into a cluster (no slot assigned)."""
    if not available():
        if os.environ.get("CI"):
            pytest.fail("CI needs redis-server and redis-cli")
        pytest.skip("redis-server / redis-cli not installed")
    ports = [_node_port() for _ in range(3)]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="jp-unjoined-") as tmp:
        try:
            for port in ports:
                (Path(tmp) / str(port)).mkdir()
                procs.append(subprocess.Popen(
                    ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no",
                     "--dir", str(Path(tmp) / str(port))],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            for port in ports:
                _wait(lambda port=port: redis.Redis(port=port).ping(), f"node {port} did not start")
            yield ports
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=10)


def test_aggregate_waits_until_the_cluster_covers_every_slot(unjoined_nodes: list[int]) -> None:
    agg = _Aggregate(f"redis+cluster://127.0.0.1:{unjoined_nodes[0]}")
    try:
        waits = [agg.wait_for("is not ready") for _ in range(2)]  # (the nodes answer: no ConnectionError)
        assert all("ClusterDownError: cluster_state:fail, 0 of 16384 slots assigned" in w for w in waits), waits
        subprocess.run(["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in unjoined_nodes),
                        "--cluster-yes"], check=True, capture_output=True, timeout=60)
        agg.wait_for("is ready after")
        assert "redis+cluster://127.0.0.1" in agg.wait_for("aggregator ")
        assert agg.stop() == 0
    finally:
        agg.stop()
