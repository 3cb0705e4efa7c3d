"""Reading a partition's stream as raw replies: ``[[id, [field, value, ...]], ...]``.

redis-py turns each XRANGE entry into a tuple and a dict in Python (about
1 µs an entry, a large share of the aggregator's time). A client whose XRANGE
reply is left as hiredis parsed it avoids that. Redis Cluster clients route
and parse replies per node, so for them the same read goes through a one-line
Lua script, whose reply redis-py does not reshape (at some Redis CPU cost).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import redis
from redis.cluster import RedisCluster

from aggregator import scripts

RawRead = Callable[[str, str, int], list[Any]]


def raw_reader(client: redis.Redis) -> RawRead:
    """A function (stream, after entry id, count) -> the entries after that id, as raw lists."""
    if isinstance(client, RedisCluster):
        script = scripts.register(client, "read")
        return lambda stream, after_id, count: script(keys=[stream], args=["(" + after_id, count])  # type: ignore[no-any-return]
    reader = copy.copy(client)  # shares the connection pool; gets its own reply callbacks
    # Not the pool's owner: a copy that closed the pool when collected would cut the connections
    # other threads are using (seen as "Bad file descriptor" in the caller's next command).
    reader.auto_close_connection_pool = False
    reader.response_callbacks = type(client.response_callbacks)(client.response_callbacks)
    reader.set_response_callback("XRANGE", lambda response, **_: response)
    return lambda stream, after_id, count: reader.xrange(stream, "(" + after_id, "+", count)  # type: ignore[return-value]
