"""The cost bound of a request (DESIGN: "every request has a bounded cost").

A request's Redis work is the hashes it reads: per queue (or, for all queues,
per partition) the stored buckets of its range, plus a queue's totals and
gauges. A request that would read more than ``MAX_HASH_READS``, names more
than ``MAX_QUEUE_NAMES`` queues or asks for more than ``MAX_BUCKETS`` points
is refused with 422 naming the parameter to
change, before anything is read. At these bounds the most expensive accepted
request answers well within a second (``python -m bench.requests --mode
heavy``), and the reads go in chunks (``api.store.CHUNK_READS``) so Redis
serves other clients meanwhile.
"""

from __future__ import annotations

from api.query import MAX_BUCKETS, MAX_QUEUE_NAMES, BadParameter

__all__ = ["MAX_BUCKETS", "MAX_HASH_READS", "MAX_QUEUE_NAMES", "check_reads"]

MAX_HASH_READS = 50_000


def check_reads(reads: int, param: str, hint: str) -> None:
    """Refuse a request that would read more than ``MAX_HASH_READS`` hashes, naming ``param``."""
    if reads > MAX_HASH_READS:
        raise BadParameter(param, f"the request would read {reads} stored hashes (queues × buckets), more than "
                                  f"{MAX_HASH_READS}; {hint}")
