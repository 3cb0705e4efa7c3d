"""The emitter's on-disk spool: a worker restarted during a Redis outage loses nothing.
Both workers are real processes; Redis is a redis-server of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import redis

from aggregator import spool
from aggregator.consumer import Aggregator
from aggregator.keys import Keys, partition_of
from aggregator.settings import Settings
from tests.redis_process import RedisProcess

WORKER = """
import sys
from aggregator.emitter import Emitter
from aggregator.settings import Settings
emitter = Emitter(Settings(), worker_id="spool-worker", concurrency=1)
for i in range(int(sys.argv[1])):
    emitter.enqueued(f"j{i}", "q")
    emitter.completed(f"j{i}", "q", processing_time_ms=5)
print("sent" if emitter.close(timeout_s=float(sys.argv[2])) else "spooled")
"""


def _worker(env: dict[str, str], events: int, close_timeout_s: float) -> str:
    run = subprocess.run([sys.executable, "-c", WORKER, str(events), str(close_timeout_s)], env=env,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout.strip()


def test_a_worker_restarted_during_an_outage_loses_nothing(tmp_path: Path) -> None:
    server = RedisProcess(tmp_path)  # down until the second worker starts
    spool_dir = tmp_path / "spool"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBPULSE_")}
    env.update(JOBPULSE_REDIS_URL=server.url, JOBPULSE_KEY_PREFIX="sp", JOBPULSE_PARTITIONS="2",
               JOBPULSE_EMIT_SPOOL_DIR=str(spool_dir))

    assert _worker(env, 500, close_timeout_s=0.5) == "spooled"  # the first worker exits mid-outage
    files = list(spool_dir.glob("*.spool"))
    assert len(files) == 1 and len(files[0].read_bytes().splitlines()) == 1000

    server.start()
    try:
        client = redis.Redis.from_url(server.url)
        settings = Settings(redis_url=server.url, key_prefix="sp", partitions=2)
        aggregator = Aggregator(settings, client)
        assert _worker(env, 0, close_timeout_s=10) == "sent"  # its successor sends what was left
        aggregator.run(drain=True)
        totals = client.hgetall(Keys("sp").totals(partition_of("q", 2), "q"))
        assert (totals[b"n:enqueued"], totals[b"n:completed"]) == (b"500", b"500")
        assert not any(spool_dir.iterdir())  # claimed and removed
    finally:
        server.stop()


def test_each_spool_file_is_claimed_once(tmp_path: Path) -> None:
    items = [("enqueued", f"j{i}", "q", 1.5, None) for i in range(3)]
    spool.save(str(tmp_path), "w/1 odd:name", [("{sp:0}:events", b"event", b"{}")], items)
    payloads, claimed = spool.claim(str(tmp_path))
    assert payloads == [("{sp:0}:events", b"event", b"{}")] and claimed == items
    assert spool.claim(str(tmp_path)) == ([], [])
