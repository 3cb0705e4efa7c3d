"""The ``jobpulse`` command: serve (all in one), aggregate, api, hammerwork-bridge and helpers."""

from __future__ import annotations

import argparse
import getpass
import importlib.util
import ipaddress
import logging
import secrets
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

import redis

from aggregator.connection import ConfigError, RedisTarget, wait_until_ready
from aggregator.settings import Settings

log = logging.getLogger("jobpulse")
# the commands that need the `server` extra, and the modules it installs (import names)
SERVER_COMMANDS = frozenset({"serve", "api", "hammerwork-bridge", "top", "hash-password", "new-api-key"})
SERVER_MODULES = ("fastapi", "uvicorn", "fakeredis", "prometheus_client", "rich", "bcrypt", "websockets")
# uvicorn's own proxy_headers (on by default, trusting 127.0.0.1) are off: forwarded addresses are believed
# only from JOBPULSE_TRUSTED_PROXIES, applied by the app itself (api/main.py).
# On SIGTERM/SIGINT the API finishes requests for this long, then closes live streams (they never end by themselves).
SHUTDOWN_GRACE_S = 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobpulse", description="Job queue statistics from Redis streams.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="aggregator + API in one process (embedded store without a Redis URL)")
    serve.add_argument("--demo", action="store_true", help="also run a built-in load generator")
    serve.add_argument("--host", help="API bind address (default JOBPULSE_API_HOST)")
    serve.add_argument("--port", type=int, help="API port (default JOBPULSE_API_PORT)")
    serve.add_argument("--insecure", action="store_true", help="allow a non-loopback address without auth")
    agg = sub.add_parser("aggregate", help="run the aggregator against JOBPULSE_REDIS_URL")
    agg.add_argument("--drain", action="store_true", help="exit once every stream is consumed")
    api = sub.add_parser("api", help="run the API against JOBPULSE_REDIS_URL")
    api.add_argument("--host")
    api.add_argument("--port", type=int)
    api.add_argument("--insecure", action="store_true", help="allow a non-loopback address without auth")
    bridge = sub.add_parser("hammerwork-bridge", help="forward hammerwork webhook deliveries to the event streams")
    bridge.add_argument("--host", help="bind address (default JOBPULSE_API_HOST)")
    bridge.add_argument("--port", type=int, help="port (default JOBPULSE_BRIDGE_PORT)")
    bridge.add_argument("--insecure", action="store_true", help="allow a non-loopback address without a secret")
    sub.add_parser("acl", help="print minimal Redis ACL users for the emitter, aggregator and API")
    sub.add_parser("hash-password", help="read a password, print its bcrypt hash for JOBPULSE_BASIC_USERS")
    sub.add_parser("new-api-key", help="print a new random API key and its digest for JOBPULSE_API_KEYS")
    top = sub.add_parser("top", help="the overview and queues in the terminal, refreshed every second")
    top.add_argument("--url", help="the API's base URL (default http://JOBPULSE_API_HOST:JOBPULSE_API_PORT)")
    top.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    top.add_argument("--once", action="store_true", help="print one frame and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        _check_extra(args.command)
        settings = Settings()
        if args.command == "aggregate":
            return _aggregate(settings, args.drain)
        if args.command in ("hash-password", "new-api-key"):
            return _secrets(args.command)
        if args.command == "acl":
            from aggregator.acl import setuser_commands

            print("\n".join(setuser_commands(settings.key_prefix)))
            return 0
        if args.command == "hammerwork-bridge":
            return _bridge(settings, args.host, args.port, args.insecure)
        if args.command in ("api", "serve"):
            settings = _checked_exposure(settings, args.host, args.insecure)
        if args.command == "api":
            return _api(settings, args.host, args.port)
        if args.command == "top":
            from aggregator import top

            return top.run(args.url or f"http://{settings.api_host}:{settings.api_port}", args.interval, args.once)
        return _serve(settings, args.demo, args.host, args.port)
    except ConfigError as exc:
        print(f"jobpulse: {exc}", file=sys.stderr)
        return 2
    except redis.ConnectionError as exc:
        print(f"jobpulse: cannot reach Redis: {exc}", file=sys.stderr)
        return 1


def _check_extra(command: str) -> None:
    """Say which extra to install when a server command lacks its packages (a worker's light install)."""
    if command not in SERVER_COMMANDS:
        return
    missing = [name for name in SERVER_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"`jobpulse {command}` needs the server extra (missing: {', '.join(missing)}); "
                          "install it with: pip install 'jobpulse[server]'")


def _checked_exposure(settings: Settings, host: str | None, insecure: bool) -> Settings:
    """Refuse to serve off loopback without authentication, unless told to."""
    from api.auth import Credentials

    bind = host or settings.api_host
    if _loopback(bind) or Credentials.from_settings(settings).configured:
        return settings
    if not (insecure or settings.insecure):
        raise ConfigError(
            f"refusing to serve on {bind} without authentication: set JOBPULSE_API_KEYS or "
            "JOBPULSE_BASIC_USERS (see `jobpulse new-api-key`, `jobpulse hash-password`), or pass --insecure"
        )
    log.warning("serving on %s WITHOUT authentication (--insecure): anyone who reaches it reads the stats", bind)
    return settings


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _secrets(command: str) -> int:
    from api.auth import key_digest, password_hash

    if command == "new-api-key":
        key = secrets.token_urlsafe(32)
        print(f"API key (give to clients, header X-API-Key): {key}")
        print(f"JOBPULSE_API_KEYS entry (digest):            {key_digest(key)}")
        return 0
    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not password:
        raise ConfigError("empty password")
    print(password_hash(password))
    return 0


def _require_url(settings: Settings) -> RedisTarget:
    if not settings.redis_url:
        raise ConfigError("JOBPULSE_REDIS_URL is not set (only `jobpulse serve` has an embedded store)")
    return RedisTarget(settings.redis_url)


def _aggregate(settings: Settings, drain: bool) -> int:
    from aggregator.consumer import Aggregator

    _quiet_gc()
    target = _require_url(settings)
    signalled: list[int] = []  # a plain list, not an Event: see stop()
    aggregator: Aggregator | None = None

    def stop(signum: int, _: FrameType | None) -> None:
        signalled.append(signum)  # nothing else here: a handler that logs or locks can deadlock the code it interrupts
        if aggregator is not None:
            aggregator.stop()

    def connect() -> Aggregator:
        target.probe()
        client = target.sync()
        try:
            return Aggregator(settings, client)
        except BaseException:
            client.close()
            raise

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    # A container or unit may start before its Redis (or before its cluster has all slots): wait, don't exit.
    aggregator = wait_until_ready(connect, target.describe(), lambda: bool(signalled))
    if aggregator is None:
        log.info("signal %d before Redis was ready: stopped", signalled[0])
        return 0
    if signalled:
        aggregator.stop()
    log.info("aggregator %s on %s, %d partitions", aggregator.owner_id, target.describe(), aggregator.partitions)
    progress = aggregator.run(drain=drain)
    log.info("stopped after %d entries in %d batches", progress.entries, progress.batches)
    return 0


def _quiet_gc() -> None:
    """Make Python's cycle collector rarely run in the aggregator process.

    Folding allocates a few objects per event and keeps up to a job cache of
    them, none in reference cycles; with the default thresholds the collector
    ran so often, re-walking the cache, that it took a quarter of the process's
    CPU (bench.ingest: 15.7 -> 11.7 µs of CPU per event, 55k -> 72k events/s).
    Start-up objects are frozen out of its walks; cycles are still collected.
    """
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _api(settings: Settings, host: str | None, port: int | None) -> int:
    import uvicorn

    from api.main import create_app

    target = _require_url(settings)
    app = create_app(settings, target)
    uvicorn.run(app, host=host or settings.api_host, port=port or settings.api_port, log_level="info",
                timeout_graceful_shutdown=SHUTDOWN_GRACE_S, proxy_headers=False)
    return 0


def _bridge(settings: Settings, host: str | None, port: int | None, insecure: bool) -> int:
    import uvicorn

    from aggregator.integrations.hammerwork import create_bridge

    bind = host or settings.api_host
    if not (_loopback(bind) or settings.hammerwork_secret):
        if not (insecure or settings.insecure):
            raise ConfigError(f"refusing to accept events on {bind} unsigned: set JOBPULSE_HAMMERWORK_SECRET "
                              "(the webhook's secret), or pass --insecure")
        log.warning("accepting UNSIGNED events on %s (--insecure): anyone who reaches it can write stats", bind)
    target = _require_url(settings)
    uvicorn.run(create_bridge(settings, target), host=bind, port=port or settings.bridge_port, log_level="info",
                timeout_graceful_shutdown=SHUTDOWN_GRACE_S, proxy_headers=False)
    return 0


def _exit_after_shutdown(signum: int, _: FrameType | None) -> None:
    """SIGTERM once uvicorn has shut down: leave through the ``finally`` blocks, exit 0."""
    raise SystemExit(0)


def _serve(settings: Settings, demo: bool, host: str | None, port: int | None) -> int:
    import uvicorn

    from aggregator.consumer import Aggregator
    from aggregator.demo import DemoLoad
    from aggregator.embedded import EmbeddedRedis
    from aggregator.emitter import Emitter
    from api.main import create_app

    embedded = None
    if settings.redis_url:
        target = RedisTarget(settings.redis_url)
        where = target.describe()
    else:
        embedded = EmbeddedRedis()
        target = embedded.start()
        where = embedded.describe()
    host, port = host or settings.api_host, port or settings.api_port
    aggregator = Aggregator(settings, target.sync())
    worker = threading.Thread(target=aggregator.run, name="jobpulse-aggregator", daemon=True)
    worker.start()
    load = None
    if demo:
        emitter = Emitter(settings, target, worker_id="demo-worker", queues=(), concurrency=32)
        load = DemoLoad(emitter).start()
    print(f"jobpulse: store = {where}", flush=True)
    print(f"jobpulse: API on http://{host}:{port}", flush=True)
    print(f"jobpulse: try   curl -s http://{host}:{port}/api/stats/overview | python3 -m json.tool", flush=True)
    if demo:
        print("jobpulse: demo load generator running", flush=True)
    # uvicorn shuts down gracefully on SIGTERM, then raises it again; left at its default, that
    # would end the process before the cleanup below and orphan the embedded redis-server
    signal.signal(signal.SIGTERM, _exit_after_shutdown)
    try:
        uvicorn.run(create_app(settings, target), host=host, port=port, log_level="warning",
                    timeout_graceful_shutdown=SHUTDOWN_GRACE_S, proxy_headers=False)
    finally:
        if load is not None:
            load.stop()
            load.emitter.close(timeout_s=2.0)
        aggregator.stop()
        worker.join(timeout=5.0)
        if embedded is not None:
            embedded.stop()
    return 0
