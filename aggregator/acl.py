"""Minimal Redis ACL rules for each component, so a stolen worker credential
cannot read or erase the statistics (printed by ``jobpulse acl``).

The rules follow the key layout of :mod:`keys`: ``<prefix>:*`` for the
deployment-wide keys, ``{<prefix>:<p>}:*`` for the partition keys.
"""

from __future__ import annotations

from aggregator.keys import Keys

# what redis-py needs besides AUTH (its CLIENT SETINFO may be refused: it ignores that; naming
# client|setinfo here would break Redis 7.0, which does not know it)
_CONNECT = "+ping +cluster|slots +cluster|shards"


def rules(prefix: str) -> dict[str, str]:
    """ACL rules (the part after ``ACL SETUSER <name> on >password``) per component."""
    keys = Keys(prefix)
    every_key = f"~{prefix}:* ~{{{prefix}:*"
    return {
        # append events and read P; no other key, no read of any stream or stat, no delete. The selector
        # (Redis 7) adds HSETNX on the meta key alone, to store P when the emitter starts first: it never
        # changes a stored value, and no other write reaches the meta key (an XADD could not make it a stream)
        "emitter": f"resetkeys %R~{keys.meta} %W~{{{prefix}:*}}:events resetchannels -@all +hget +xadd {_CONNECT} "
                   f"(~{keys.meta} +hsetnx)",
        # everything on jobpulse's own keys, through its Lua scripts; nothing dangerous, nothing else
        "aggregator": f"resetkeys {every_key} resetchannels -@all +@read +@write +@scripting {_CONNECT} -@dangerous",
        # read-only: a script it runs can read but every write inside it is refused
        "api": f"resetkeys {every_key} resetchannels -@all +@read +eval +evalsha +script|load {_CONNECT} "
               "-@dangerous",
    }


def setuser_commands(prefix: str) -> list[str]:
    """``ACL SETUSER`` lines to paste into redis-cli (passwords to fill in)."""
    return [f"ACL SETUSER jobpulse-{role} on >CHANGE-ME {rule}" for role, rule in rules(prefix).items()]
