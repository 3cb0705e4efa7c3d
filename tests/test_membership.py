"""Lease membership on real Redis: a dead member's partitions are taken at the first renewal after its leases end."""

from __future__ import annotations

import time

import redis

from aggregator.keys import Keys
from aggregator.membership import Membership
from aggregator.settings import Settings

TTL_MS = 600


def _now_ms() -> int:
    return int(time.time() * 1000)


def test_survivors_take_every_partition_at_their_first_renewal_after_the_leases_end(
        settings: Settings, client: redis.Redis) -> None:
    keys, partitions = Keys(settings.key_prefix), 7
    members = [Membership(client, keys, name, partitions, TTL_MS) for name in ("a", "b", "c")]
    for _ in range(2):  # the first round sees fewer live members; the second settles the shares
        for m in members:
            m.rebalance(m.share(_now_ms()))
    held = [set(m.held) for m in members]
    assert set().union(*held) == set(range(partitions)) and all(held)
    dead = members.pop()  # killed: it renews nothing from now on
    died_ms = _now_ms()
    # the survivors renew every third of a lease period, as the aggregator does; one lease period plus one
    # renewal interval after the death, every partition has an owner again
    while _now_ms() < died_ms + TTL_MS + TTL_MS // 3:
        time.sleep(TTL_MS / 3000)
        for m in members:
            m.rebalance(m.share(_now_ms()))
    survivors = set(members[0].held) | set(members[1].held)
    assert survivors == set(range(partitions)), f"unowned: {set(range(partitions)) - survivors}"
    assert not set(members[0].held) & set(members[1].held)
    assert all(b"c:" not in (client.get(keys.lease(p)) or b"c:") for p in dead.held)  # taken over, not left free


def test_a_member_heard_from_within_one_lease_period_counts_as_live(settings: Settings, client: redis.Redis) -> None:
    keys = Keys(settings.key_prefix)
    a, b = (Membership(client, keys, name, 4, TTL_MS) for name in ("a", "b"))
    now = _now_ms()
    a.live_members(now)
    assert b.live_members(now + TTL_MS - 1) == 2
    assert b.live_members(now + TTL_MS + 1) == 1
