"""The read side's hand-packed pipelining against a real Redis: encoding, script loading, errors."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
import redis.asyncio

from api.redisio import RedisReads, Script, resp


def test_commands_are_encoded_in_resp() -> None:
    assert resp(["HGETALL", "k", 7, b"\xff"]) == b"*4\r\n$7\r\nHGETALL\r\n$1\r\nk\r\n$1\r\n7\r\n$1\r\n\xff\r\n"


def test_scripts_are_loaded_on_first_use_and_errors_do_not_poison_the_pool(redis_url: str) -> None:
    async def run() -> None:
        client = redis.asyncio.Redis.from_url(redis_url)
        io = RedisReads(client)
        script = Script(f"-- {uuid.uuid4()}\nreturn {{KEYS[1], ARGV[1]}}")  # never loaded before
        assert await io.eval(script, [(["a"], [1]), (["b"], [2])]) == [[b"a", b"1"], [b"b", b"2"]]
        bad = resp(["HGETALL"])  # wrong number of arguments: an error reply
        with pytest.raises(redis.ResponseError):
            await io.pipelined(bad + resp(["PING"]), 2)
        assert await io.pipelined(resp(["PING"]), 1) == [b"PONG"]  # the broken connection was dropped
        assert io.redis_time_s > 0
        await client.aclose()

    asyncio.run(run())
