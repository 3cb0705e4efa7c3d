"""The embedded store of ``jobpulse serve`` when no Redis URL is set: a
``redis-server`` child on a free loopback port, else in-process fakeredis."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time

import redis

from aggregator.connection import RedisTarget


class EmbeddedRedis:
    """Starts and stops the embedded store."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.target: RedisTarget | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> RedisTarget:
        """A target for the embedded store (a redis-server child when possible)."""
        binary = shutil.which("redis-server")
        if binary:
            port = free_port()
            self._dir = tempfile.TemporaryDirectory(prefix="jobpulse-redis-")
            self.process = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", self._dir.name, "--logfile", ""],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # its own session: a Ctrl-C in the terminal reaches only jobpulse, which stops the
                # aggregator (releasing its leases) and the demo emitter first, then this store
                start_new_session=True,
            )
            url = f"redis://127.0.0.1:{port}/0"
            wait_ready(url, self.process)
            self.target = RedisTarget(url=url)
        else:
            import fakeredis

            self.target = RedisTarget(fake_server=fakeredis.FakeServer())
        return self.target

    def describe(self) -> str:
        """What was started, for the start-up banner."""
        if self.process is not None and self.target is not None:
            return f"embedded redis-server (pid {self.process.pid}) at {self.target.url}"
        return "embedded in-process fakeredis (no redis-server on PATH; data lives in this process)"

    def stop(self) -> None:
        """Stop the child process, if any (last: everything that writes to it has stopped)."""
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
            self.process = None
        if self._dir is not None:
            self._dir.cleanup()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Wait until the redis-server ``process`` answers at ``url``; RuntimeError if it exits or stays silent."""
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {process.returncode}")
        try:
            client.ping()
            return
        except redis.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server did not answer at {url} within {timeout_s} s")
