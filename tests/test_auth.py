"""Access control: API keys, HTTP Basic with bcrypt, lockout, open probes, refusing to expose without auth."""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import time

import httpx
import pytest
from fastapi.testclient import TestClient
from starlette.types import ASGIApp, Receive, Scope, Send

from aggregator.embedded import free_port
from aggregator.settings import Settings
from api.auth import Lockout, key_digest, password_hash
from api.main import create_app

KEY, USER, PASSWORD = "k3y-for-tests-0123456789", "ops", "correct horse battery staple"


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def secured() -> Settings:
    return Settings(api_keys=key_digest(KEY), basic_users=f"{USER}:{password_hash(PASSWORD)}", auth_max_failures=5)


def _client(settings: Settings, redis_url: str, host: str = "10.0.0.1") -> TestClient:
    return TestClient(create_app(settings.model_copy(update={"redis_url": redis_url, "key_prefix": "auth"})),
                      client=(host, 40000))


def test_everything_but_the_probes_needs_credentials(secured: Settings, redis_url: str) -> None:
    with _client(secured, redis_url) as api:
        for path in ("/api/stats/overview", "/api/stats/detailed", "/metrics", "/", "/static/app.js",
                     "/api/stats/stream", "/openapi.json", "/api/queues", "/api/jobs", "/api/jobs/x",
                     "/api/stats/throughput", "/api/archive/stats"):
            response = api.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == 'Basic realm="jobpulse"'
            assert response.json()["success"] is False and "authentication required" in response.json()["error"]
        assert api.get("/health").status_code == 200 and api.get("/ready").status_code == 200


def test_api_key_and_basic_both_work(secured: Settings, redis_url: str) -> None:
    with _client(secured, redis_url) as api:
        assert api.get("/api/stats/overview", headers={"X-API-Key": KEY}).json()["success"] is True
        assert api.get("/api/stats/overview", headers=_basic(USER, PASSWORD)).json()["success"] is True
        assert api.get("/metrics", headers=_basic(USER, PASSWORD)).status_code == 200
        assert api.get("/api/stats/overview", headers={"X-API-Key": KEY + "x"}).status_code == 401
        assert api.get("/api/stats/overview", headers=_basic(USER, "wrong")).status_code == 401
        assert api.get("/api/stats/overview", headers=_basic("nobody", PASSWORD)).status_code == 401
        assert api.get("/api/stats/overview", headers={"Authorization": "Basic !!notbase64"}).status_code == 401


def test_five_failures_lock_the_client_out(secured: Settings, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    with _client(secured, redis_url, host="10.0.0.66") as attacker, _client(secured, redis_url) as other:
        for i in range(5):
            response = attacker.get("/api/stats/overview", headers=_basic(USER, f"guess-{i}"))
            assert response.status_code == 401 and f"guess-{i}" not in response.text
        locked = attacker.get("/api/stats/overview", headers=_basic(USER, PASSWORD))  # even the right password
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 800
        assert "too many failed logins" in locked.json()["error"]
        assert attacker.get("/health").status_code == 200  # probes stay open
        assert other.get("/api/stats/overview", headers=_basic(USER, PASSWORD)).status_code == 200
    assert "guess-" not in caplog.text and PASSWORD not in caplog.text  # no secret is logged


def test_lockout_expires_and_success_clears_failures() -> None:
    lockout = Lockout(limit=3, period_s=900)
    lockout.failed("c", 0.0)
    lockout.failed("c", 1.0)
    lockout.succeeded("c")  # a success in between: the count starts over
    lockout.failed("c", 2.0)
    lockout.failed("c", 3.0)
    assert lockout.retry_after_s("c", 3.0) == 0
    lockout.failed("c", 4.0)
    assert lockout.retry_after_s("c", 5.0) == 899
    assert lockout.retry_after_s("c", 904.0) == 0  # 15 minutes later
    lockout.failed("d", 0.0)
    lockout.failed("d", 1000.0)  # failures older than the period do not add up
    lockout.failed("d", 1001.0)
    assert lockout.retry_after_s("d", 1001.0) == 0


def test_no_auth_configured_means_open_api(redis_url: str) -> None:
    with TestClient(create_app(Settings(redis_url=redis_url, key_prefix="auth-open"))) as api:
        assert api.get("/api/stats/overview").status_code == 200


def _api_process(*args: str, **env: str) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPULSE_")}
    full_env.update(JOBPULSE_REDIS_URL="redis://127.0.0.1:6379/0", **env)
    return subprocess.Popen([sys.executable, "-m", "aggregator", "api", *args], env=full_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_refuses_a_public_address_without_auth() -> None:
    proc = _api_process("--host", "0.0.0.0", "--port", str(free_port()))
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "refusing to serve on 0.0.0.0 without authentication" in out


@pytest.mark.slow
def test_insecure_overrides_with_a_warning_and_auth_needs_no_override() -> None:
    for args, env in ((["--insecure"], {}), ([], {"JOBPULSE_API_KEYS": key_digest(KEY)})):
        port = free_port()
        proc = _api_process("--host", "0.0.0.0", "--port", str(port), *args, **env)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
                    break
                except httpx.TransportError:
                    assert proc.poll() is None and time.monotonic() < deadline, "the API did not start"
                    time.sleep(0.1)
        finally:
            proc.terminate()
            out, _ = proc.communicate(timeout=20)
        assert ("WITHOUT authentication" in out) == bool(args), out


def _request(api: TestClient, peer: str, forwarded_for: str, password: str) -> int:
    """Status of a request arriving from ``peer`` (the TCP peer) with an X-Forwarded-For header."""
    headers = {**_basic(USER, password), "X-Forwarded-For": forwarded_for, "X-Test-Peer": peer}
    return api.get("/api/stats/overview", headers=headers).status_code


def _peer_from_header(app: ASGIApp) -> ASGIApp:
    """The app, seeing as TCP peer the address in X-Test-Peer (one app, one lockout, several peers)."""

    async def shim(scope: Scope, receive: Receive, send: Send) -> None:
        peer = dict(scope.get("headers", [])).get(b"x-test-peer")
        if scope["type"] == "http" and peer:
            scope["client"] = (peer.decode(), 40000)
        await app(scope, receive, send)

    return shim


@pytest.mark.parametrize("trusted", ["", "10.0.0.5", "10.0.0.0/24"])
def test_the_lockout_sees_the_client_behind_a_trusted_proxy_only(secured: Settings, redis_url: str,
                                                                 trusted: str) -> None:
    settings = secured.model_copy(update={"trusted_proxies": trusted, "redis_url": redis_url, "key_prefix": "auth"})
    proxy, stranger = "10.0.0.5", "10.9.9.9"
    with TestClient(_peer_from_header(create_app(settings))) as api:
        for i in range(5):
            assert _request(api, proxy, "203.0.113.7", f"guess-{i}") == 401  # one client's typos, via the proxy
        # another client through the same proxy: locked out with it unless the proxy is trusted
        assert _request(api, proxy, "198.51.100.2", PASSWORD) == (200 if trusted else 429)
        assert _request(api, proxy, "203.0.113.7", PASSWORD) == 429
        # a peer that is not a trusted proxy cannot pass for another address: its failures are its own
        for i in range(5):
            assert _request(api, stranger, "198.51.100.9", f"guess-{i}") == 401
        assert _request(api, stranger, "192.0.2.1", PASSWORD) == 429
        assert _request(api, proxy, "198.51.100.9", PASSWORD) == (200 if trusted else 429)
