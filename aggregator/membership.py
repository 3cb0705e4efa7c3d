"""Lease membership: which partitions this aggregator process owns.

Every live aggregator heartbeats into a sorted set and aims at an equal
share of the partitions. A member counts as live for one lease period: a
live member renews every third of it, and a dead one's leases run out at
the same moment it drops out of the set, so the survivors' shares cover
every partition by the next renewal.
"""

from __future__ import annotations

import contextlib
import logging
import math

import redis
from redis.exceptions import RedisClusterException

from aggregator.keys import Keys
from aggregator.lease import Leases

log = logging.getLogger("jobpulse.aggregator")


class Membership:
    """Renews, takes and gives back partition leases for one owner id."""

    def __init__(self, client: redis.Redis, keys: Keys, owner_id: str, partitions: int, ttl_ms: int) -> None:
        self.client, self.keys, self.owner_id = client, keys, owner_id
        self.partitions, self.ttl_ms = partitions, ttl_ms
        self.leases = Leases(client, owner_id, ttl_ms)
        self.held: dict[int, str] = {}  # partition -> lease value (owner:token)

    @property
    def renew_every_s(self) -> float:
        """How often leases are renewed and shares recomputed."""
        return self.ttl_ms / 3000

    def live_members(self, now_ms: int) -> int:
        """Heartbeat this member and count the members heard from within one lease period."""
        pipe = self.client.pipeline(transaction=False)
        pipe.zadd(self.keys.aggregators, {self.owner_id: now_ms})
        pipe.zremrangebyscore(self.keys.aggregators, "-inf", now_ms - self.ttl_ms)
        pipe.zcard(self.keys.aggregators)
        return max(1, int(pipe.execute()[2]))

    def share(self, now_ms: int, want_all: bool = False) -> int:
        """Heartbeat, and the number of partitions this member should hold."""
        return self.partitions if want_all else math.ceil(self.partitions / self.live_members(now_ms))

    def surplus(self, share: int) -> list[int]:
        """The held partitions that :meth:`rebalance` gives back to come down to ``share``."""
        return sorted(self.held, reverse=True)[: max(0, len(self.held) - share)]

    def rebalance(self, share: int) -> tuple[list[int], list[int]]:
        """Renew held leases and move toward ``share``; returns (taken, lost or given up) partitions."""
        dropped: list[int] = []
        for p, value in list(self.held.items()):
            if not self.leases.renew(self.keys.lease(p), value):
                log.warning("lost the lease of partition %d", p)
                del self.held[p]
                dropped.append(p)
        for p in self.surplus(share):
            self.leases.release(self.keys.lease(p), self.held.pop(p))
            dropped.append(p)
        taken: list[int] = []
        start = int(self.owner_id.encode().hex(), 16) % self.partitions
        for i in range(self.partitions):
            if len(self.held) >= share:
                break
            p = (start + i) % self.partitions
            if p not in self.held:
                acquired = self.leases.acquire(self.keys.lease(p), self.keys.fence(p))
                if acquired is not None:
                    self.held[p] = acquired
                    taken.append(p)
        return taken, dropped

    def forget(self, p: int) -> None:
        """Stop counting ``p`` as held (it was fenced out)."""
        self.held.pop(p, None)

    def release_all(self) -> None:
        """Give every lease back and leave the live set."""
        for p, value in list(self.held.items()):
            try:
                self.leases.release(self.keys.lease(p), value)
            except (redis.RedisError, RedisClusterException):
                log.warning("could not release partition %d; it frees itself in %d ms", p, self.ttl_ms)
        self.held.clear()
        with contextlib.suppress(redis.RedisError, RedisClusterException):
            self.client.zrem(self.keys.aggregators, self.owner_id)
