"""Raw stream reads: the reader shares its client's connection pool without owning it."""

from __future__ import annotations

import gc

import redis

from aggregator.streamread import raw_reader


def test_a_collected_reader_leaves_connections_in_use_alone(client: redis.Redis) -> None:
    pool = client.connection_pool
    conn = pool.get_connection()  # in use, as by another thread
    try:
        conn.send_command("PING")
        assert conn.read_response() == b"PONG"
        sock = conn._sock
        read = raw_reader(client)
        del read
        gc.collect()
        assert conn._sock is sock  # a reader that closed the pool would have cut it
    finally:
        pool.release(conn)
