"""Partition leases with fencing tokens: one owner per partition at a time."""

from __future__ import annotations

import redis

from aggregator import scripts


class Leases:
    """Acquire, renew and release partition leases for one owner id."""

    def __init__(self, client: redis.Redis, owner_id: str, ttl_ms: int) -> None:
        self.owner_id = owner_id
        self.ttl_ms = ttl_ms
        self._acquire = scripts.register(client, "lease_acquire")
        self._renew = scripts.register(client, "lease_renew")
        self._release = scripts.register(client, "lease_release")

    def acquire(self, lease_key: str, fence_key: str) -> str | None:
        """The lease value (``owner:token``) if it was free, else None."""
        token = self._acquire(keys=[lease_key, fence_key], args=[self.owner_id, self.ttl_ms])
        return f"{self.owner_id}:{int(token)}" if token else None

    def renew(self, lease_key: str, value: str) -> bool:
        """Extend a lease we hold; False if it is no longer ours."""
        return bool(self._renew(keys=[lease_key], args=[value, self.ttl_ms]))

    def release(self, lease_key: str, value: str) -> None:
        """Give a lease back so another aggregator can take it at once."""
        self._release(keys=[lease_key], args=[value])
