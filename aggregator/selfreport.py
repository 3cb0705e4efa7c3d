"""The aggregator's own resource use, published for PerformanceMetrics."""

from __future__ import annotations

import os
import time

import redis

from aggregator.keys import Keys


class SelfReport:
    """Publishes this process's RSS and CPU share under its owner id."""

    def __init__(self, client: redis.Redis, keys: Keys, owner_id: str, ttl_ms: int) -> None:
        self.client, self.key, self.ttl_ms = client, keys.aggregator_info(owner_id), ttl_ms
        self._mark = (time.monotonic(), time.process_time())

    def publish(self, now_ms: int) -> None:
        """Write RSS and CPU % since the last call; the key expires with the process."""
        wall, cpu = time.monotonic(), time.process_time()
        last_wall, last_cpu = self._mark
        self._mark = (wall, cpu)
        cpu_pct = 100.0 * (cpu - last_cpu) / (wall - last_wall) if wall > last_wall else 0.0
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(self.key, mapping={"rss_mb": f"{rss_mb():.1f}", "cpu_percent": f"{cpu_pct:.1f}", "seen_ms": now_ms})
        pipe.pexpire(self.key, 3 * self.ttl_ms)
        pipe.execute()


def rss_mb() -> float:
    """Resident set size of this process in MiB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:  # not Linux
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
