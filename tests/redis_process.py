"""A redis-server of the test's own (own port, own directory), which the test may stop and restart."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from aggregator.embedded import free_port


class RedisProcess:
    """redis-server with AOF ``appendfsync always``: a restart loses nothing it acknowledged."""

    def __init__(self, directory: Path, *extra: str) -> None:
        self.port = free_port()
        self.directory = directory
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis:// URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisProcess:
        """Start (or restart) the server and wait until it answers."""
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis(port=self.port).ping()
                return self
            except redis.ConnectionError:
                # a server with ACL users refuses the default user: that is an answer too
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)
            except redis.AuthenticationError:
                return self
            except redis.ResponseError:
                return self

    def kill(self) -> None:
        """SIGKILL: the hardest stop."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None
