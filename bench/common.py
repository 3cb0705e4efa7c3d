"""What every benchmark shares: a throw-away key prefix on the test Redis,
child processes of jobpulse, percentiles, and the JSON + summary output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline

from aggregator.embedded import free_port
from aggregator.keys import Keys


@dataclass
class Namespace:
    """A Redis URL and a key prefix nothing else uses; deleted on exit."""

    url: str
    prefix: str
    client: redis.Redis
    keys: Keys

    def env(self, **extra: str | int) -> dict[str, str]:
        """Environment for a jobpulse child process in this namespace."""
        env = dict(os.environ, JOBPULSE_REDIS_URL=self.url, JOBPULSE_KEY_PREFIX=self.prefix)
        env.update({f"JOBPULSE_{k.upper()}": str(v) for k, v in extra.items()})
        return env


@contextmanager
def namespace(partitions: int = 4) -> Iterator[Namespace]:
    """A fresh prefix on JOBPULSE_TEST_REDIS_URL (default local DB 0), with P stored."""
    url = os.environ.get("JOBPULSE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = "bench" + uuid.uuid4().hex[:8]
    client = redis.Redis.from_url(url)
    ns = Namespace(url, prefix, client, Keys(prefix))
    client.hset(ns.keys.meta, mapping={"partitions": partitions, "version": "1"})
    try:
        yield ns
    finally:
        for pattern in (f"{prefix}:*", f"{{{prefix}:*"):
            batch = list(client.scan_iter(match=pattern, count=5000))
            for i in range(0, len(batch), 5000):
                client.delete(*batch[i : i + 5000])


def jobpulse(args: Sequence[str], env: dict[str, str], cpu: int | None = None) -> subprocess.Popen[bytes]:
    """Start ``python -m aggregator <args>`` as a child process (with ``cpu``, pinned to that CPU,
    as ``taskset -c <cpu>`` would)."""
    proc = subprocess.Popen([sys.executable, "-m", "aggregator", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if cpu is not None:  # (before the child has started its threads: they inherit it)
        os.sched_setaffinity(proc.pid, {cpu})
    return proc


@contextmanager
def api_process(ns: Namespace) -> Iterator[str]:
    """A ``jobpulse api`` child on a free port; yields its base URL."""
    port = free_port()
    proc = jobpulse(["api", "--port", str(port)], ns.env())
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(base + "/ready", timeout=1).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                    raise RuntimeError("the API did not start: " + err) from None
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def xadd(pipe: Pipeline, stream: str, body: bytes, maxlen: int | None = None) -> None:
    """Queue ``XADD stream [MAXLEN ~ n] * event body`` (spelled out: xadd() costs ~2 µs per call)."""
    trim = ["MAXLEN", "~", maxlen] if maxlen else []
    pipe.execute_command("XADD", stream, *trim, "*", "event", body)  # type: ignore[no-untyped-call]


def redis_cpu_s(client: redis.Redis) -> float:
    """CPU seconds (user + sys) the Redis server has used so far, from INFO cpu."""
    info: dict[str, Any] = client.info("cpu")  # type: ignore[assignment]
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def redis_server(client: redis.Redis) -> dict[str, Any]:
    """The Redis version, and its hash encoding threshold (it moves the apply's cost; see
    docs/operations.md), None where CONFIG GET is refused."""
    info: dict[str, Any] = client.info("server")  # type: ignore[assignment]
    try:
        config: dict[str, Any] = client.config_get("hash-max-listpack-entries")  # type: ignore[assignment]
        entries: int | None = int(config["hash-max-listpack-entries"])
    except (redis.ResponseError, KeyError):
        entries = None
    return {"version": info.get("redis_version"), "hash_max_listpack_entries": entries}


def command_calls(client: redis.Redis) -> dict[str, tuple[int, float]]:
    """Per-command (calls, total µs) from INFO commandstats."""
    info: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
    return {name.removeprefix("cmdstat_"): (int(v["calls"]), float(v["usec"])) for name, v in info.items()}


def command_delta(before: dict[str, tuple[int, float]], after: dict[str, tuple[int, float]],
                  per: int) -> dict[str, dict[str, float]]:
    """Calls and µs per ``per`` events of each command between two INFO commandstats readings."""
    out = {}
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0.0))
        if calls > c0:
            out[name] = {"calls_per_event": round((calls - c0) / per, 3), "us_per_event": round((usec - u0) / per, 3)}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["us_per_event"]))


def consumed(ns: Namespace, partitions: int) -> int:
    """Entries the aggregator has applied so far, from the watermarks."""
    pipe = ns.client.pipeline(transaction=False)
    for p in range(partitions):
        pipe.hget(ns.keys.watermark(p), "consumed")
    return sum(int(v or 0) for v in pipe.execute())


def rss_mb(pid: int) -> float:
    """Resident set size of a process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def machine() -> dict[str, Any]:
    """Where the figures were measured."""
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}


def report(result: dict[str, Any], summary: str) -> None:
    """A one-line summary for people on stderr, the JSON on stdout (its last line)."""
    print(summary, file=sys.stderr)
    print(json.dumps({**result, "machine": machine()}))
