"""Who may read the stats: API keys (a header) and HTTP Basic users with
bcrypt-hashed passwords, with a lockout of clients that keep failing.

Settings hold only digests: SHA-256 of each API key (keys are long random
strings, so a fast hash is enough) and bcrypt hashes of passwords. ``/health``
and ``/ready`` stay open for probes; with no key and no user configured,
nothing is checked (the CLI refuses that off loopback unless ``--insecure``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import time
from dataclasses import dataclass, field

import anyio.to_thread
import bcrypt
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from aggregator.connection import ConfigError
from aggregator.settings import Settings
from api.envelope import failure

log = logging.getLogger("jobpulse.auth")
OPEN_PATHS = frozenset({"/health", "/ready"})
_MAX_REMEMBERED = 1000


def key_digest(key: str) -> str:
    """What JOBPULSE_API_KEYS holds for an API key: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def password_hash(password: str) -> str:
    """What JOBPULSE_BASIC_USERS holds for a password: its bcrypt hash."""
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(12)).decode()


@dataclass
class Credentials:
    """The configured identities, parsed from the settings."""

    key_digests: list[str]
    users: dict[str, bytes]

    @classmethod
    def from_settings(cls, settings: Settings) -> Credentials:
        """Parse ``api_keys`` (comma-separated digests) and ``basic_users`` (``user:bcrypt``, comma-separated)."""
        digests = [d.strip().lower() for d in settings.api_keys.split(",") if d.strip()]
        users: dict[str, bytes] = {}
        for pair in filter(None, (p.strip() for p in settings.basic_users.split(","))):
            user, sep, hashed = pair.partition(":")
            if not sep or not hashed.startswith("$2"):
                raise ConfigError(f"JOBPULSE_BASIC_USERS: the entry for {user!r} is not user:<bcrypt hash> "
                                  "(make one with `jobpulse hash-password`)")
            users[user] = hashed.encode()
        return cls(digests, users)

    @property
    def configured(self) -> bool:
        """Whether any identity exists (else the API is open)."""
        return bool(self.key_digests or self.users)


@dataclass
class Lockout:
    """Failed attempts per client; ``limit`` of them lock the client out for ``period_s``."""

    limit: int
    period_s: float
    failures: dict[str, list[float]] = field(default_factory=dict)
    locked_until: dict[str, float] = field(default_factory=dict)

    def retry_after_s(self, client: str, now: float) -> float:
        """Seconds the client must still wait; 0 when it is not locked."""
        until = self.locked_until.get(client, 0.0)
        if until <= now:
            self.locked_until.pop(client, None)
            return 0.0
        return until - now

    def failed(self, client: str, now: float) -> None:
        """Count a failure; lock the client at the limit."""
        recent = [t for t in self.failures.get(client, []) if now - t < self.period_s] + [now]
        if len(recent) >= self.limit:
            self.locked_until[client] = now + self.period_s
            self.failures.pop(client, None)
            log.warning("client %s locked out for %.0f s after %d failed logins", client, self.period_s, len(recent))
        else:
            self.failures[client] = recent
        if len(self.failures) > 10 * _MAX_REMEMBERED:  # bound memory under a spray of clients
            self.failures.clear()

    def succeeded(self, client: str) -> None:
        """A success clears the client's failures."""
        self.failures.pop(client, None)


class AuthMiddleware:
    """Refuses every request but the probes without valid credentials (pure ASGI: streams pass through)."""

    def __init__(self, app: ASGIApp, credentials: Credentials, settings: Settings) -> None:
        self.app = app
        self.credentials = credentials
        self.header = settings.api_key_header.lower().encode()
        self.lockout = Lockout(settings.auth_max_failures, settings.auth_lockout_s)
        self._verified: dict[bytes, str] = {}  # sha256(user:password) -> user, so bcrypt runs once per login

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # a WebSocket upgrade (/ws) is checked like any request: its handshake carries the same headers
        if scope["type"] not in ("http", "websocket") or not self.credentials.configured or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        client = scope["client"][0] if scope.get("client") else "unknown"
        now = time.monotonic()
        wait_s = self.lockout.retry_after_s(client, now)
        if wait_s:
            response = _refusal(429, f"too many failed logins from {client}; retry in {wait_s:.0f} s",
                                {"Retry-After": str(int(wait_s) + 1)})
            await _refuse(response, scope, receive, send)
            return
        headers = dict(scope["headers"])
        key, basic = headers.get(self.header), headers.get(b"authorization", b"")
        if key is None and not basic.lower().startswith(b"basic "):
            await _refuse(_refusal(401, "authentication required: an API key header or HTTP Basic"), scope, receive,
                          send)
            return
        if (key is not None and self._key_ok(key)) or (basic and await self._basic_ok(basic)):
            self.lockout.succeeded(client)
            await self.app(scope, receive, send)
            return
        self.lockout.failed(client, now)
        log.warning("failed login from %s", client)
        await _refuse(_refusal(401, "invalid credentials"), scope, receive, send)

    def _key_ok(self, key: bytes) -> bool:
        digest = hashlib.sha256(key).hexdigest()
        return any(hmac.compare_digest(digest, d) for d in self.credentials.key_digests)

    async def _basic_ok(self, header: bytes) -> bool:
        try:
            user_b, _, password = base64.b64decode(header[6:].strip(), validate=True).partition(b":")
            user = user_b.decode()
        except (binascii.Error, UnicodeDecodeError):
            return False
        remembered = hashlib.sha256(user_b + b"\0" + password).digest()
        if self._verified.get(remembered) == user:
            return True
        hashed = self.credentials.users.get(user)
        if hashed is None:
            return False
        # bcrypt takes ~0.25 s on purpose: off the event loop
        if not await anyio.to_thread.run_sync(bcrypt.checkpw, password, hashed):
            return False
        if len(self._verified) >= _MAX_REMEMBERED:
            self._verified.clear()
        self._verified[remembered] = user
        return True


async def _refuse(response: JSONResponse, scope: Scope, receive: Receive, send: Send) -> None:
    """Send a refusal; a WebSocket handshake gets it as its HTTP answer where the server can send one
    (the denial-response extension), else is closed with 1008 (policy violation: the client sees 403)."""
    if scope["type"] == "websocket" and "websocket.http.response" not in scope.get("extensions", {}):
        await send({"type": "websocket.close", "code": 1008, "reason": "authentication required"})
        return
    await response(scope, receive, send)


def _refusal(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error envelope; 401 asks browsers for Basic credentials."""
    response = failure(status, message)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Basic realm="jobpulse"'
    response.headers.update(headers or {})
    return response
