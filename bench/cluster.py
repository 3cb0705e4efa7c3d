"""Scale-out: ingest throughput of 1, 2 and 4 aggregator processes against a
real 3-master Redis Cluster (started by this script), P = 16.

    python -m bench.cluster                     # 200,000 events over 50 queues per run

Besides events/s it measures CPU per event of the aggregator processes and of
each Redis node (from /proc and INFO), which is what a larger deployment's
throughput is projected from: on a 2-core machine more processes only share
the same two cores. Prints one JSON object (last line of stdout).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import redis

from aggregator.connection import RedisTarget
from aggregator.keys import Keys
from bench.common import Namespace, consumed, report
from bench.ingest import preload
from tests.redis_cluster import redis_cluster

P = 16


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def nodes_cpu_s(client: redis.Redis) -> dict[str, float]:
    """CPU seconds each cluster node has used so far."""
    info: dict[str, Any] = client.info("cpu", target_nodes="primaries")  # type: ignore[assignment]  # redis-py 5 stubs
    return {node: v["used_cpu_sys"] + v["used_cpu_user"] for node, v in info.items()}


def run(url: str, processes: int, n_events: int, n_queues: int) -> dict[str, Any]:
    """Preload, then time ``processes`` aggregators until every entry is applied."""
    client = RedisTarget(url).sync()
    prefix = "bench" + uuid.uuid4().hex[:8]
    ns = Namespace(url, prefix, client, Keys(prefix))
    client.hset(ns.keys.meta, mapping={"partitions": P, "version": "1"})
    n = preload(ns, n_events, n_queues, P)
    env = ns.env(partitions=P, lease_ttl_ms=1500)
    before = nodes_cpu_s(client)
    t = time.perf_counter()
    procs = [subprocess.Popen([sys.executable, "-m", "aggregator", "aggregate"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(processes)]
    proc_cpu = {p.pid: 0.0 for p in procs}
    try:
        while consumed(ns, P) < n:
            for proc in procs:
                if proc.poll() is not None:
                    raise SystemExit(proc.stderr.read().decode()[-3000:] if proc.stderr else "an aggregator exited")
                proc_cpu[proc.pid] = cpu_s(proc.pid)
            time.sleep(0.1)
        elapsed = time.perf_counter() - t
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=20)
    after = nodes_cpu_s(client)
    node_cpu = {node: after[node] - before.get(node, 0.0) for node in after}
    return {
        "processes": processes,
        "events": n,
        "events_per_s": round(n / elapsed),
        "aggregator_cpu_us_per_event": round(sum(proc_cpu.values()) / n * 1e6, 2),
        "redis_cpu_us_per_event_by_node": {k: round(v / n * 1e6, 2) for k, v in sorted(node_cpu.items())},
    }


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--processes", default="1,2,4")
    args = parser.parse_args()
    with redis_cluster(3) as url:
        runs = [run(url, int(k), args.events, args.queues) for k in args.processes.split(",")]
    one = runs[0]
    for r in runs:
        r["speedup_vs_first"] = round(r["events_per_s"] / one["events_per_s"], 2)
    agg_us = one["aggregator_cpu_us_per_event"]
    busiest_node_us = max(one["redis_cpu_us_per_event_by_node"].values())
    projection = {
        "events_per_s_per_aggregator_core": round(1e6 / agg_us) if agg_us else None,
        "events_per_s_per_redis_node_core": round(1e6 / busiest_node_us) if busiest_node_us else None,
        "note": "a deployment reaches about min(aggregator cores x the first, Redis masters x the second)",
    }
    summary = "; ".join(f"{r['processes']} proc: {r['events_per_s']:,} ev/s (x{r['speedup_vs_first']})" for r in runs)
    report({"benchmark": "cluster", "cpus": os.cpu_count(), "partitions": P, "masters": 3, "runs": runs,
            "projection": projection},
           f"cluster ingest: {summary}; per core: {projection['events_per_s_per_aggregator_core']:,} ev/s "
           f"aggregator, {projection['events_per_s_per_redis_node_core']:,} ev/s per Redis node")


if __name__ == "__main__":
    main()
