"""Partition leases with fencing tokens: one owner per partition at a time."""

from __future__ import annotations

import redis

_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
return token
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Leases:
    """Acquire, renew and release partition leases for one owner id."""

    def __init__(self, client: redis.Redis, owner_id: str, ttl_ms: int) -> None:
        self.owner_id = owner_id
        self.ttl_ms = ttl_ms
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

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
