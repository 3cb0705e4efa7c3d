"""Every Lua script jobpulse runs lives in ``aggregator/lua/``; this is their one loader."""

from __future__ import annotations

from importlib import resources

import redis
from redis.commands.core import Script

NAMES = ("apply", "read", "lease_acquire", "lease_renew", "lease_release")


def source(name: str) -> str:
    """The text of ``aggregator/lua/<name>.lua``."""
    return resources.files("aggregator").joinpath("lua", f"{name}.lua").read_text()


def register(client: redis.Redis, name: str) -> Script:
    """A callable script bound to ``client`` (EVALSHA, loading it on first use or after a restart)."""
    if name not in NAMES:
        raise KeyError(f"no Lua script named {name!r}")
    return client.register_script(source(name))


def lua_has_msgpack(client: redis.Redis) -> bool:
    """Whether the server's Lua has ``cmsgpack`` (Redis and Valkey do; fakeredis does not)."""
    try:
        return bool(client.eval("return cmsgpack and 1 or 0", 0))
    except redis.ResponseError:  # (a sandbox that refuses to read an unknown global)
        return False
