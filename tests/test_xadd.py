"""The emitter's lean XADD path against the real Redis: what it writes is what redis-py would, every
reply is read, and a refusal or a lost connection raises so the batch is sent again."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio
from redis.cluster import RedisCluster
from redis.connection import Connection

from aggregator.keys import Keys
from aggregator.settings import Settings
from aggregator.xadd import AsyncXaddSender, XaddPacker, XaddSender


def _batch(keys: Keys, n: int, start: int = 0) -> list[tuple[str, bytes, bytes]]:
    return [(keys.stream(i % 2), b"event", b'{"n":%d,"\xc3\xa9":"\\r\\n"}' % (start + i)) for i in range(n)]


def test_the_packer_writes_what_redis_py_packs(client: redis.Redis) -> None:
    conn = client.connection_pool.make_connection()
    batch = [("{jp:0}:events", b"event", b'{"a":1}'), ("{jp:é}:events", b"heartbeat", b"\r\n\x00" * 100)]
    packed = b"".join(b"".join(conn.pack_command("XADD", s, "MAXLEN", "~", 12345, "*", f, b)) for s, f, b in batch)
    assert XaddPacker(12345).pack(batch) == packed


def test_a_batch_lands_in_order_through_the_lean_path(settings: Settings, client: redis.Redis) -> None:
    keys = Keys(settings.key_prefix)
    sender = XaddSender(client, settings.stream_maxlen)
    assert sender.lean
    sender.send(_batch(keys, 1000))
    sender.send(_batch(keys, 10, start=1000))
    bodies = [fields[b"event"] for _, fields in client.xrange(keys.stream(0))]
    assert bodies == [body for stream, _, body in _batch(keys, 1010) if stream == keys.stream(0)]
    assert client.ping()  # the pool's connection is left in step


def test_a_refused_xadd_raises_after_every_reply_is_read(settings: Settings, client: redis.Redis) -> None:
    keys = Keys(settings.key_prefix)
    client.set(keys.stream(1), "not a stream")  # every XADD to partition 1 is refused (WRONGTYPE)
    sender = XaddSender(client, settings.stream_maxlen)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        sender.send(_batch(keys, 100))
    assert client.xlen(keys.stream(0)) == 50  # the others were taken: a resend repeats their event ids
    client.delete(keys.stream(1))
    sender.send(_batch(keys, 100))  # the same connection, still in step
    assert client.xlen(keys.stream(1)) == 50


def test_a_connection_lost_half_way_raises_and_is_not_reused(
    settings: Settings, client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(settings.key_prefix)
    sender = XaddSender(redis.Redis.from_url(settings.redis_url or ""), settings.stream_maxlen)
    read, calls = Connection.read_response, [0]

    def lost_after_five(self: Connection, *args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == 6:
            raise redis.ConnectionError("lost")
        return read(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "read_response", lost_after_five)
    with pytest.raises(redis.ConnectionError):
        sender.send(_batch(keys, 10))  # 5 replies read, 5 unread on the socket
    monkeypatch.undo()
    sender.send(_batch(keys, 10, start=10))  # were the old socket reused, its stale replies would be read
    assert client.xlen(keys.stream(0)) + client.xlen(keys.stream(1)) == 20
    assert client.ping()


def test_cluster_and_unknown_clients_take_the_pipeline(settings: Settings) -> None:
    import fakeredis

    fake = fakeredis.FakeRedis()
    sender = XaddSender(fake, settings.stream_maxlen)
    assert not sender.lean
    keys = Keys(settings.key_prefix)
    sender.send(_batch(keys, 10))
    assert fake.xlen(keys.stream(0)) == 5
    cluster = RedisCluster.__new__(RedisCluster)  # not connected: only its type matters here
    assert not XaddSender(cluster, settings.stream_maxlen).lean  # type: ignore[arg-type]


def test_the_async_sender_lands_a_batch_and_raises_on_a_refusal(settings: Settings, client: redis.Redis) -> None:
    keys = Keys(settings.key_prefix)

    async def work() -> None:
        async_client = redis.asyncio.Redis.from_url(settings.redis_url or "")
        sender = AsyncXaddSender(async_client, settings.stream_maxlen)
        assert sender.pool is not None
        await sender.send(_batch(keys, 200))
        client.set(keys.stream(1), "not a stream")
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            await sender.send(_batch(keys, 10))
        client.delete(keys.stream(1))
        await sender.send(_batch(keys, 10))
        await async_client.aclose()

    asyncio.run(work())
    assert client.xlen(keys.stream(0)) == 110 and client.xlen(keys.stream(1)) == 5
