"""Freshness: time from XADD to the event being visible in the API, under a
steady background load of job lifecycles, with the aggregator and API as real processes.

    python -m bench.freshness                   # 20,000 events/s load, 30 s of probes

A probe is an ``enqueued`` event for a queue of its own, sent every 100 ms;
the API's ``total_jobs`` for that queue is polled every 20 ms, so a probe is
visible when the count reaches it. Prints one JSON object (last line).
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import random
import time
import uuid
from typing import Any

import orjson
import redis

from aggregator.buffer import iso
from aggregator.keys import Keys, partition_of
from bench.common import (
    api_process,
    command_calls,
    command_delta,
    consumed,
    jobpulse,
    namespace,
    percentile,
    redis_server,
    report,
)

PROBE_QUEUE = "freshness-probe"
POLL_S = 0.02  # an API request costs a few ms of a core that the aggregator also needs


class XaddWriter:
    """``XADD stream * event body`` commands spelled in RESP by hand and sent in one write.

    The loaders stand in for workers on other machines, yet share this machine's cores with the
    aggregator and Redis being measured: through redis-py's pipeline they spent ~8 µs of CPU an
    event (at 80,000 events/s, two thirds of a core); spelled out, about a third of that.
    """

    def __init__(self, client: redis.Redis) -> None:
        self._conn = client.connection_pool.get_connection()
        self._parts: list[bytes] = []
        self._heads: dict[str, bytes] = {}
        self.pending = 0

    def add(self, stream: str, body: bytes) -> None:
        """Queue one XADD."""
        head = self._heads.get(stream)
        if head is None:
            name = stream.encode()
            head = self._heads[stream] = b"*5\r\n$4\r\nXADD\r\n$%d\r\n%s\r\n$1\r\n*\r\n$5\r\nevent\r\n" % (
                len(name), name)
        self._parts += (head, b"$%d\r\n" % len(body), body, b"\r\n")
        self.pending += 1

    def send(self) -> None:
        """Send what is queued and read every reply (an error reply raises)."""
        self._conn.send_packed_command([b"".join(self._parts)], check_health=False)
        for _ in range(self.pending):
            reply = self._conn.read_response()
            if isinstance(reply, Exception):
                raise reply
        self._parts.clear()
        self.pending = 0


def load(url: str, prefix: str, rate: int, stop_at: float, partitions: int, sent: Any) -> None:
    """XADD ``rate`` events/s in 10 ms slices until ``stop_at``; ``sent`` is a shared counter (own process).

    The load is whole job lifecycles (enqueued, started, then completed or, one in
    twenty, failed), as a working queue produces them: a stream of enqueues alone would
    be a queue whose backlog grows by the full rate, every event a new pending job.
    Event ids are a per-process random prefix and a counter, and one timestamp serves a
    slice: uuid4() and formatting a time per event had capped one loader near 50,000/s.
    """
    keys, rng = Keys(prefix), random.Random()
    writer = XaddWriter(redis.Redis.from_url(url))
    streams = [keys.stream(p) for p in range(partitions)]
    queues = [(f"queue-{i}", streams[partition_of(f"queue-{i}", partitions)]) for i in range(50)]
    me = uuid.uuid4().hex[:12]
    per_slice, n, start = max(3, rate // 100) // 3 * 3, 0, time.time()
    while time.time() < stop_at:
        stamp = iso(time.time())
        for _ in range(per_slice // 3):
            queue, stream = queues[rng.randrange(50)]
            job = f"{me}-{n}"
            outcome: dict[str, Any] = {"event_type": "completed", "processing_time_ms": rng.randint(1, 2000)}
            if rng.random() < 0.05:
                outcome = {"event_type": "failed", "processing_time_ms": rng.randint(1, 2000),
                           "error": {"message": f"boom {rng.randint(1, 20)}", "error_type": "Boom"}}
            for kind, extra in (("enqueued", {"priority": "normal"}),
                                ("started", {"wait_time_ms": rng.randint(0, 500), "attempt": 1}),
                                (outcome.pop("event_type"), outcome)):
                body = {"event_id": f"{me}-{n}", "job_id": job, "queue_name": queue, "event_type": kind,
                        "timestamp": stamp, **extra}
                writer.add(stream, orjson.dumps(body))
                n += 1
        writer.send()
        with sent.get_lock():
            sent.value += per_slice
        ahead_s = start + n / rate - time.time()
        if ahead_s > 0:
            time.sleep(ahead_s)


def total_jobs(conn: http.client.HTTPConnection) -> int:
    """``total_jobs`` of the probe queue, from the API."""
    conn.request("GET", f"/api/stats/overview?queues={PROBE_QUEUE}")
    return int(orjson.loads(conn.getresponse().read())["data"]["total_jobs"])


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=20_000, help="background events/s")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long probes are sent")
    args = parser.parse_args()
    partitions = 4
    with namespace(partitions) as ns:
        aggregator = jobpulse(["aggregate"], ns.env())
        try:
            with api_process(ns) as base:
                host, port = base.removeprefix("http://").split(":")
                conn = http.client.HTTPConnection(host, int(port), timeout=10)
                warmup_s = 3.0
                stop_at = time.time() + warmup_s + args.seconds + 2
                sent = multiprocessing.Value("q", 0)
                # one loader process per 40,000 events/s: one Python process cannot send much more
                n_loaders = max(1, -(-args.rate // 40_000))
                loaders = [
                    multiprocessing.Process(
                        target=load, args=(ns.url, ns.prefix, args.rate // n_loaders, stop_at, partitions, sent),
                        daemon=True)
                    for _ in range(n_loaders)
                ]
                t_load = time.time()
                calls0, applied0 = command_calls(ns.client), consumed(ns, partitions)
                for loader in loaders:
                    loader.start()
                time.sleep(warmup_s)
                probe_stream = ns.keys.stream(partition_of(PROBE_QUEUE, partitions))
                sent_at: list[float] = []
                visible_at: list[float] = []
                next_probe, probes_until = time.time(), time.time() + args.seconds
                while True:
                    now = time.time()
                    if now >= next_probe and now < probes_until:
                        body = {"event_id": uuid.uuid4().hex, "job_id": f"probe-{len(sent_at)}",
                                "queue_name": PROBE_QUEUE, "event_type": "enqueued", "timestamp": iso(now)}
                        sent_at.append(time.time())
                        ns.client.xadd(probe_stream, {"event": orjson.dumps(body)})
                        next_probe += 0.1
                    seen = total_jobs(conn)
                    while len(visible_at) < min(seen, len(sent_at)):
                        visible_at.append(time.time())
                    if now >= probes_until and len(visible_at) == len(sent_at):
                        break
                    if now > probes_until + 30:
                        raise SystemExit(f"only {len(visible_at)} of {len(sent_at)} probes became visible")
                    time.sleep(POLL_S)
                for loader in loaders:
                    loader.join()
                achieved = sent.value / (stop_at - t_load)
                applied = consumed(ns, partitions) - applied0
                commands = command_delta(calls0, command_calls(ns.client), max(applied, 1))
        finally:
            aggregator.terminate()
            aggregator.wait(timeout=15)
    lags_ms = [(v - s) * 1000 for s, v in zip(sent_at, visible_at, strict=True)]
    p50, p99, worst = percentile(lags_ms, 0.5), percentile(lags_ms, 0.99), max(lags_ms)
    report(
        {
            "benchmark": "freshness",
            "background_events_per_s": round(achieved),
            "probes": len(lags_ms),
            "visible_ms_p50": round(p50, 1),
            "visible_ms_p99": round(p99, 1),
            "visible_ms_max": round(worst, 1),
            "api_poll_interval_ms": POLL_S * 1000,
            # Redis time in scripts per event applied while the load ran, the commands they ran
            # included (INFO commandstats): the apply script's, plus the API's read scripts of the
            # probe's polling (a constant 50 requests/s); the loaders' XADD are not in it
            "script_redis_us_per_event": commands.get("evalsha", {}).get("us_per_event"),
            "redis_commands": commands,
            "redis_server": redis_server(ns.client),
        },
        f"freshness: XADD -> visible in the API p50 {p50:.0f} ms, p99 {p99:.0f} ms (max {worst:.0f}) "
        f"under {achieved:,.0f} events/s",
    )


if __name__ == "__main__":
    main()
