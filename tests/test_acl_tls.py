"""Each component under its minimal ACL user (aggregator/acl.py), over TLS
(rediss://), on a real redis-server of the test's own; what each user must
not do is refused by Redis itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from aggregator.acl import rules
from aggregator.connection import RedisTarget
from aggregator.consumer import Aggregator
from aggregator.emitter import Emitter
from aggregator.keys import Keys, partition_of
from aggregator.settings import Settings
from api.main import create_app
from tests.redis_process import RedisProcess

PASSWORDS = {role: f"pw-{role}-{uuid.uuid4().hex[:12]}" for role in ("emitter", "aggregator", "api")}

pytestmark = pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("openssl")) and not os.environ.get("CI"),
    reason="needs redis-server (built with TLS) and openssl",
)


@dataclass
class AclServer:
    """A TLS-only redis-server whose users are exactly jobpulse's three (the default user is off)."""

    process: RedisProcess
    prefix: str

    def url_for(self, role: str) -> str:
        """rediss:// URL logging in as ``role``."""
        return self.process.url_for(role, PASSWORDS[role])

    def settings(self, role: str) -> Settings:
        """Settings of the component ``role``."""
        return Settings(redis_url=self.url_for(role), key_prefix=self.prefix, partitions=2, lease_ttl_ms=1000)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[AclServer]:
    """The server, stopped after the test."""
    prefix = "acl" + uuid.uuid4().hex[:6]
    acl = ["user default off"] + [f"user {role} on >{pw} {rules(prefix)[role]}" for role, pw in PASSWORDS.items()]
    (tmp_path / "users.acl").write_text("\n".join(acl) + "\n")
    proc = RedisProcess(tmp_path, "--aclfile", str(tmp_path / "users.acl"), tls=True).start()
    yield AclServer(proc, prefix)
    proc.stop()


def test_every_component_works_under_its_acl_user_over_tls(server: AclServer) -> None:
    agg = server.settings("aggregator")
    # the emitter starts first, on a store no aggregator has seen: its user may store P (HSETNX)
    with Emitter(server.settings("emitter"), worker_id="acl-worker", concurrency=2) as emitter:
        for i in range(20):
            emitter.enqueued(f"j{i}", "billing")
            emitter.started(f"j{i}", "billing", wait_time_ms=5)
            emitter.completed(f"j{i}", "billing", processing_time_ms=40) if i % 4 else emitter.dead(
                f"j{i}", "billing", error="card declined", processing_time_ms=40)
        assert emitter.flush(timeout_s=10)

    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPULSE_")}
    env.update(JOBPULSE_REDIS_URL=agg.redis_url or "", JOBPULSE_KEY_PREFIX=agg.key_prefix, JOBPULSE_PARTITIONS="2",
               JOBPULSE_LEASE_TTL_MS="1000")
    run = subprocess.run([sys.executable, "-m", "aggregator", "aggregate", "--drain"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "rediss://aggregator:***@" in run.stderr  # where it connects, said without the password
    assert PASSWORDS["aggregator"] not in run.stderr + run.stdout

    api = server.settings("api")
    with TestClient(create_app(api, RedisTarget(api.redis_url))) as client:
        overview = client.get("/api/stats/overview")
        health = client.get("/api/stats/health")
        detailed = client.get("/api/stats/detailed")
    data = overview.json()["data"]
    assert (data["total_jobs"], data["completed_jobs"], data["dead_jobs"], data["active_workers"]) == (20, 15, 5, 1)
    assert health.json()["data"]["database_healthy"] is True
    for resp in (overview, health, detailed):
        assert resp.status_code == 200 and not any(pw in resp.text for pw in PASSWORDS.values())


def test_the_emitter_user_cannot_read_stats_or_delete_streams(server: AclServer) -> None:
    agg = server.settings("aggregator")
    Aggregator(agg, RedisTarget(agg.redis_url).sync())
    keys, p = Keys(agg.key_prefix), partition_of("billing", 2)
    admin = RedisTarget(agg.redis_url).sync()
    admin.xadd(keys.stream(p), {"event": "{}"})
    admin.hset(keys.totals(p, "billing"), "n:completed", 3)

    emitter = redis.Redis.from_url(server.url_for("emitter"))
    assert emitter.hget(keys.meta, "partitions") == b"2"  # what it needs: read P, append events
    assert emitter.hsetnx(keys.meta, "partitions", 9) == 0  # store P if absent, never change it
    assert emitter.xadd(keys.stream(p), {"event": "{}"})
    denied = [
        lambda: emitter.hgetall(keys.totals(p, "billing")),  # stats
        lambda: emitter.xrange(keys.stream(p)),  # other workers' events
        lambda: emitter.delete(keys.stream(p)),
        lambda: emitter.xtrim(keys.stream(p), maxlen=0),
        lambda: emitter.hset(keys.meta, "partitions", 9),
        lambda: emitter.hdel(keys.meta, "partitions"),
        lambda: emitter.xadd(keys.meta, {"event": "{}"}),  # could turn a missing meta key into a stream
        lambda: emitter.hsetnx(keys.totals(p, "billing"), "n:forged", 1),  # HSETNX reaches the meta key only
        lambda: emitter.set("unrelated", 1),
        lambda: emitter.flushall(),
    ]
    for call in denied:
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()

    api = redis.Redis.from_url(server.url_for("api"))
    assert api.hgetall(keys.totals(p, "billing")) == {b"n:completed": b"3"}
    for call in (lambda: api.delete(keys.stream(p)), lambda: api.hset(keys.meta, "partitions", 9)):
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
    with pytest.raises(redis.exceptions.ResponseError, match="can't run this command"):  # a write inside a script
        api.eval("return redis.call('DEL', KEYS[1])", 1, keys.stream(p))
    assert admin.xlen(keys.stream(p)) == 2  # nothing was deleted


def test_plain_tcp_is_refused_by_a_tls_only_server(server: AclServer) -> None:
    plain = server.url_for("api").replace("rediss://", "redis://").split("?")[0]
    with pytest.raises(redis.ConnectionError):
        redis.Redis.from_url(plain, socket_timeout=2).ping()
