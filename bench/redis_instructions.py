"""Redis' instructions per event of one drain, counted by valgrind's callgrind: a
measure of the write path's Redis cost that does not move with the machine's
speed or load (wall-clock CPU on a shared VM moves 10 % from run to run).

    python -m bench.redis_instructions                 # 60,000 events, an hour of event time
    python -m bench.redis_instructions --hours 48      # the same spread over two days (a backfill)

Starts its own ``redis-server`` under ``valgrind --tool=callgrind`` on a free
loopback port (both must be on PATH, with ``callgrind_control``), preloads the
streams, zeroes the counters, runs ``jobpulse aggregate --drain`` and dumps
them. Each read of 6,000 entries is one flush, so that Redis' slowness under
valgrind does not change how much each apply merges. Counts of the same code
agree within a few per cent (the events' times follow the clock, so minute
boundaries differ); compare two trees in one session. ``top`` lists the
functions with the most instructions, their callees included.

Prints one JSON object (last line of stdout).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import tempfile
import uuid

import redis

from aggregator.embedded import free_port, wait_ready
from aggregator.keys import Keys
from bench.common import Namespace, consumed, jobpulse, redis_server, report
from bench.ingest import preload

# Redis' own functions worth naming in the JSON (inclusive counts), when its binary has symbols.
_TOP = ("evalShaCommand", "hincrbyCommand", "hsetCommand", "hmgetCommand", "lpFind", "zaddCommand",
        "xrangeCommand", "setCommand", "mp_unpack", "__printf_fp")


def _totals(path: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def _inclusive(path: str) -> dict[str, int]:
    """Inclusive instructions of the functions in _TOP, from callgrind_annotate."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    found: dict[str, int] = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+\S*?:(\w+)", line)
        if m and m.group(2) in _TOP and m.group(2) not in found:
            found[m.group(2)] = int(m.group(1).replace(",", ""))
    return found


def main() -> None:
    """Run the benchmark and print its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=60_000)
    parser.add_argument("--queues", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--hours", type=float, default=1.0, help="event time spanned by the workload")
    args = parser.parse_args()
    for tool in ("valgrind", "redis-server", "callgrind_control", "callgrind_annotate"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not on PATH")
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out_file = os.path.join(tmp, "callgrind.out")
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_file}", "redis-server",
             "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", tmp,
             # (under valgrind an apply can run for seconds: other callers would get BUSY replies)
             "--busy-reply-threshold", "600000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            url = f"redis://127.0.0.1:{port}/0"
            wait_ready(url, server, timeout_s=60)  # (valgrind starts it slowly)
            client = redis.Redis.from_url(url)
            server_info = redis_server(client)
            prefix = "bench" + uuid.uuid4().hex[:8]
            ns = Namespace(url, prefix, client, Keys(prefix))
            client.hset(ns.keys.meta, mapping={"partitions": args.partitions, "version": "1"})
            n = preload(ns, args.events, args.queues, args.partitions, args.hours)
            subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True, stdout=subprocess.DEVNULL)
            # one read of 6,000 entries is one flush: cut by count, never by time
            proc = jobpulse(["aggregate", "--drain"], ns.env(partitions=args.partitions, batch_size=6000,
                                                             max_flush_entries=6000, lease_ttl_ms=600_000))
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise SystemExit(err.decode()[-3000:] if err else "aggregator failed")
            applied = consumed(ns, args.partitions)
            subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True, stdout=subprocess.DEVNULL)
            dumps = sorted(glob.glob(out_file + ".*"), key=os.path.getmtime)
            if not dumps:
                raise SystemExit("callgrind wrote no dump")
            total, top = _totals(dumps[-1]), _inclusive(dumps[-1])
        finally:
            server.terminate()
            server.wait(timeout=60)
    per = max(applied, 1)
    report(
        {
            "benchmark": "redis_instructions",
            "events": applied,
            "preloaded": n,
            "queues": args.queues,
            "partitions": args.partitions,
            "event_time_hours": args.hours,
            "redis_instructions_per_event": round(total / per),
            "top_inclusive_per_event": {name: round(v / per) for name, v in top.items()},
            "redis_server": server_info,
        },
        f"redis_instructions: {total / per:,.0f} Redis instructions per event over a drain of {applied:,} events",
    )


if __name__ == "__main__":
    main()
