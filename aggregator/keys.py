"""The Redis key layout: the only module that spells a key.

Every key of partition ``p`` starts with the hash tag ``{prefix:p}`` so one
partition's keys share a Cluster slot and one Lua call can touch them all.
Queue names and job ids go after the tag, so any character in them is safe.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

GRANULARITY_S = {"m": 60, "h": 3600, "d": 86_400}


def partition_of(name: str, partitions: int) -> int:
    """The partition of a queue (or worker) name: ``crc32(name) % P``."""
    return zlib.crc32(name.encode()) % partitions


def bucket_start(ts_ms: int, step_s: int) -> int:
    """Start (epoch seconds) of the UTC-aligned bucket of ``step_s`` holding ``ts_ms``."""
    ts_s = ts_ms // 1000
    return ts_s - ts_s % step_s


@dataclass(frozen=True)
class Keys:
    """Key names for one key prefix."""

    prefix: str

    @property
    def meta(self) -> str:
        """Hash of deployment constants (partitions, format version)."""
        return f"{self.prefix}:meta"

    @property
    def aggregators(self) -> str:
        """Sorted set of live aggregator ids scored by last heartbeat (ms)."""
        return f"{self.prefix}:aggregators"

    def tag(self, p: int) -> str:
        """The hash tag shared by every key of partition ``p``."""
        return f"{{{self.prefix}:{p}}}"

    def stream(self, p: int) -> str:
        """Event stream of partition ``p``."""
        return f"{self.tag(p)}:events"

    def deadletter(self, p: int) -> str:
        """Stream of rejected entries with their reason."""
        return f"{self.tag(p)}:dead"

    def lease(self, p: int) -> str:
        """Owner lease: ``owner_id:token``, set NX with a TTL."""
        return f"{self.tag(p)}:lease"

    def fence(self, p: int) -> str:
        """Counter handing out fencing tokens."""
        return f"{self.tag(p)}:fence"

    def watermark(self, p: int) -> str:
        """Hash: last applied stream id, entries consumed, apply time, counters."""
        return f"{self.tag(p)}:wm"

    def queues(self, p: int) -> str:
        """Set of queue names seen in partition ``p``."""
        return f"{self.tag(p)}:queues"

    def totals(self, p: int, queue: str) -> str:
        """Hash of a queue's lifetime counters."""
        return f"{self.tag(p)}:tot:{queue}"

    def summary(self, p: int) -> str:
        """Hash of the partition's lifetime totals (a queue totals' fields, summed) and its gauges."""
        return f"{self.tag(p)}:summary"

    def oldest_pending(self, p: int) -> str:
        """Sorted set of queue -> when its oldest pending job became pending (ms)."""
        return f"{self.tag(p)}:oldest"

    def backlog(self, p: int) -> str:
        """Sorted set of queue -> its pending jobs, for the queues that have any (the backlog alert's index)."""
        return f"{self.tag(p)}:backlog"

    def job(self, p: int, job_id: str) -> str:
        """One job's latest state and the event ids applied to it (a JSON array, see jobcache.py)."""
        return f"{self.tag(p)}:job:{job_id}"

    def recent_jobs(self, p: int, queue: str) -> str:
        """Sorted set of the ids of a queue's most recently active jobs, scored by their latest event (ms),
        capped; each job's record is :meth:`job`."""
        return f"{self.tag(p)}:recent:{queue}"

    def recent_failures(self, p: int, queue: str) -> str:
        """Sorted set of a queue's latest failures (JSON, see aggregator/recent.py) scored by event ms, capped."""
        return f"{self.tag(p)}:failures:{queue}"

    def pending(self, p: int, queue: str) -> str:
        """Sorted set of a queue's pending jobs scored by when they became pending (ms)."""
        return f"{self.tag(p)}:pending:{queue}"

    def running(self, p: int, queue: str) -> str:
        """Sorted set of a queue's running jobs scored by when they started (ms)."""
        return f"{self.tag(p)}:running:{queue}"

    def bucket(self, p: int, gran: str, start_s: int, queue: str | None = None) -> str:
        """Hash of one time bucket; ``queue=None`` is the partition-wide sum."""
        if queue is None:
            return f"{self.tag(p)}:ball:{gran}:{start_s}"
        return f"{self.tag(p)}:bq:{gran}:{start_s}:{queue}"

    def errors(self, p: int, hour_s: int) -> str:
        """Hash of error signature counts in one hour."""
        return f"{self.tag(p)}:err:{hour_s}"

    def error_sig(self, p: int, sig: str) -> str:
        """Hash describing one error signature (type, sample message)."""
        return f"{self.tag(p)}:sig:{sig}"

    def workers(self, p: int) -> str:
        """Hash of worker id -> last heartbeat JSON."""
        return f"{self.tag(p)}:workers"

    def housekeeping(self, p: int) -> str:
        """Marker (SET NX PX) that partition ``p``'s housekeeping ran recently, by any aggregator."""
        return f"{self.tag(p)}:housekeeping"

    def aggregator_info(self, owner_id: str) -> str:
        """Hash of one aggregator process's resource use (expires with it)."""
        return f"{self.prefix}:aggregator:{owner_id}"
