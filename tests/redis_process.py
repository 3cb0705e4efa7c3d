"""A redis-server of the test's own (own port, own directory), which the test may stop and restart."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis

from aggregator.embedded import free_port


class RedisProcess:
    """redis-server with AOF ``appendfsync always``: a restart loses nothing it acknowledged.

    With ``tls``, it listens only for TLS, with a self-signed certificate made for it."""

    def __init__(self, directory: Path, *extra: str, tls: bool = False) -> None:
        self.port = free_port()
        self.directory = directory
        self.extra = extra
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """redis:// (or rediss://, trusting this server's certificate) URL of this server."""
        if self.tls:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.directory / 'cert.pem'}"
        return f"redis://127.0.0.1:{self.port}/0"

    def url_for(self, user: str, password: str) -> str:
        """The URL with ACL credentials."""
        scheme, rest = self.url.split("://", 1)
        return f"{scheme}://{user}:{password}@{rest}"

    def _listen_args(self) -> list[str]:
        if not self.tls:
            return ["--port", str(self.port)]
        cert, key = self.directory / "cert.pem", self.directory / "key.pem"
        if not cert.exists():
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
                            "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
                            "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
        return ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(cert), "--tls-key-file",
                str(key), "--tls-ca-cert-file", str(cert), "--tls-auth-clients", "no"]

    def start(self) -> RedisProcess:
        """Start (or restart) the server and wait until it answers."""
        self.proc = subprocess.Popen(
            ["redis-server", *self._listen_args(), "--bind", "127.0.0.1", "--dir", str(self.directory),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "", *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return self
            except (redis.AuthenticationError, redis.ResponseError):
                return self  # a server with ACL users refuses the default user: that is an answer too
            except redis.ConnectionError:  # (AuthenticationError is one: caught above)
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.05)

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
