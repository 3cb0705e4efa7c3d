"""A real Redis Cluster of redis-server processes on loopback, for tests and benchmarks."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis


def available() -> bool:
    """Whether redis-server and redis-cli are installed."""
    return bool(shutil.which("redis-server") and shutil.which("redis-cli"))


@contextmanager
def redis_cluster(masters: int = 3) -> Iterator[str]:
    """Start ``masters`` cluster-enabled redis-servers, join them, yield a ``redis+cluster://`` URL."""
    ports = [_node_port() for _ in range(masters)]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="jp-cluster-") as tmp:
        try:
            for port in ports:
                node_dir = Path(tmp) / str(port)
                node_dir.mkdir()
                procs.append(subprocess.Popen(
                    ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf", "--save", "", "--appendonly", "no",
                     "--dir", str(node_dir)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ))
            for port in ports:
                _wait(lambda port=port: redis.Redis(port=port).ping(), f"node {port} did not start")
            subprocess.run(
                ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports), "--cluster-yes"],
                check=True, capture_output=True, timeout=60,
            )
            for port in ports:
                _wait(lambda port=port: _cluster_state(port) == "ok", "the cluster did not become ready")
            yield f"redis+cluster://127.0.0.1:{ports[0]}"
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=10)


def _cluster_state(port: int) -> str:
    info: dict[str, str] = redis.Redis(port=port).execute_command("CLUSTER INFO")  # type: ignore[no-untyped-call]
    return info["cluster_state"]


def _node_port() -> int:
    """A free port whose cluster bus port (+10000) is valid and free too."""
    while True:
        port = random.randint(20_000, 50_000)
        if _free(port) and _free(port + 10_000):
            return port


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _wait(ready: object, message: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if ready():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise RuntimeError(message)
