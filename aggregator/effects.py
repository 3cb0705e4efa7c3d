"""The writes of one flush, merged per key and field in memory, then encoded
as the apply script's KEYS and ops (see ``lua/apply.lua``).

The ops travel as one MessagePack array where the server's Lua has
``cmsgpack`` (Redis, Valkey): encoding it costs a tenth of what packing each
op item as an argument of its own costs, and Redis decodes it for less than
it parses them. Elsewhere (fakeredis) they are plain arguments.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from itertools import chain

import msgspec

from aggregator import schema as f

# Redis' Lua unpack() works on the C stack (8,000 slots); keep each op's items well below it.
_CHUNK = 1000

Arg = str | int | bytes
_EXACT = 2**53
_encode_array = msgspec.msgpack.Encoder().encode


def add_counts(dst: dict[str, int], adds: Mapping[str, int]) -> None:
    """Add each of ``adds`` to the same field of ``dst``."""
    for fld, n in adds.items():
        dst[fld] = dst.get(fld, 0) + n


@dataclass
class Effects:
    """Every write of one flush; same-key writes are merged as they are added."""

    incr: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    fanout: list[tuple[list[str], dict[str, int]]] = field(default_factory=list)  # (hashes, adds to each)
    hmax: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    hmin: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    hset: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    hsetnx: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    zadd: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    zrem: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    gauge_of: dict[str, str] = field(default_factory=dict)  # sorted set key -> summary field it counts into
    oldest: dict[str, str] = field(default_factory=dict)  # pending set key -> its queue
    sadd: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    jobs: dict[str, tuple[str, int]] = field(default_factory=dict)  # job key -> (record, ttl s or 0: keep)
    expire_at_s: dict[str, int] = field(default_factory=dict)
    expire_s: dict[str, int] = field(default_factory=dict)
    deadletters: list[tuple[str, str, bytes]] = field(default_factory=list)
    capped: dict[str, dict[str, int]] = field(default_factory=dict)  # capped sorted set -> member -> score
    caps: dict[str, int] = field(default_factory=dict)  # capped sorted set -> its cap
    # minute buckets rolled up, last: (minute, hour or None, its expiry s, day or None, its expiry s)
    rolls: list[tuple[str, str | None, int, str | None, int]] = field(default_factory=list)

    def add(self, key: str, fld: str, n: int = 1) -> None:
        """HINCRBY, merged."""
        fields = self.incr[key]
        fields[fld] = fields.get(fld, 0) + n

    def add_all(self, key: str, adds: Mapping[str, int]) -> None:
        """HINCRBY of several fields, merged."""
        add_counts(self.incr[key], adds)

    def add_to_all(self, keys: list[str], adds: dict[str, int]) -> None:
        """HINCRBY of the same fields in each of ``keys``, sent once (``adds`` must not change after)."""
        self.fanout.append((keys, adds))

    def maximum(self, key: str, fld: str, value: int) -> None:
        """Keep the larger of the stored and given value."""
        fields = self.hmax[key]
        if fld not in fields or fields[fld] < value:
            fields[fld] = value

    def minimum(self, key: str, fld: str, value: int) -> None:
        """Keep the smaller of the stored and given value."""
        fields = self.hmin[key]
        if fld not in fields or fields[fld] > value:
            fields[fld] = value

    def set_once(self, key: str, fld: str, value: str) -> None:
        """HSETNX: the first value written wins."""
        self.hsetnx[key].setdefault(fld, value)

    def gauge_add(self, key: str, gauge: str, member: str, score: int) -> None:
        """Put ``member`` in a gauge's sorted set (the summary's ``gauge`` count follows)."""
        self.gauge_of[key] = gauge
        self.zadd[key][member] = score

    def gauge_remove(self, key: str, gauge: str, members: Iterable[str]) -> None:
        """Take each of ``members`` out of a gauge's sorted set, if it is there."""
        self.gauge_of[key] = gauge
        self.zrem[key].update(members)

    def capped_add(self, key: str, members: Mapping[str, int], cap: int) -> None:
        """ZADD member/score pairs to a sorted set that keeps its ``cap`` highest scores."""
        scores = self.capped.setdefault(key, {})
        for member, score in members.items():
            scores[member] = score
        self.caps[key] = cap

    def dead_letter(self, source_id: str, reason: str, raw: bytes) -> None:
        """Queue a rejected entry for the dead-letter stream."""
        self.deadletters.append((source_id, reason, raw))

    def encode(self, fixed_keys: list[str], oldest_key: str, backlog_key: str, deadletter_key: str,
               deadletter_cap: int, packed: bool = False) -> tuple[list[str], list[Arg]]:
        """KEYS (``fixed_keys`` first) and the ARGV after the script's fixed seven: the ops, each
        ``code, key no., item count, items...``, as plain arguments or (``packed``) as
        ``schema.PACKED_OPS``, one MessagePack array of them, and the raw entries of dead letters,
        which that array names by place."""
        keys = list(fixed_keys)
        index: dict[str, int] = {k: i + 1 for i, k in enumerate(keys)}
        ops: list[Arg] = []

        def key_no(key: str) -> int:
            no = index.get(key)
            if no is None:
                keys.append(key)
                no = index[key] = len(keys)
            return no

        def emit(code: str, key: str | None, items: list[Arg], stride: int, head: list[Arg] | None = None) -> None:
            no = key_no(key) if key is not None else 0
            head = head or []
            step = _CHUNK - _CHUNK % stride
            for start in range(0, len(items), step):
                chunk = head + items[start : start + step]
                ops.extend((code, no, len(chunk)))
                ops.extend(chunk)

        def numbers(fields: Mapping[str, int]) -> list[Arg]:
            items: list[Arg] = list(chain.from_iterable(fields.items()))
            if packed and fields and (max(fields.values()) >= _EXACT or min(fields.values()) <= -_EXACT):
                items[1::2] = [str(n) for n in fields.values()]  # (a Lua number is exact only below 2^53)
            return items

        def pairs(code: str, table: Mapping[str, Mapping[str, int]]) -> None:
            for key, fields in table.items():
                emit(code, key, numbers(fields), 2)

        def scored(code: str, key: str, scores: Mapping[str, int], head: list[Arg]) -> None:
            emit(code, key, list(chain.from_iterable(zip(scores.values(), scores.keys(), strict=True))), 2, head)

        def members(code: str, table: Mapping[str, Iterable[str]], gauge: bool = False) -> None:
            for key, items in table.items():
                emit(code, key, list(items), 1, [self.gauge_of[key]] if gauge else None)

        # Removals before additions, so a job re-entering a set keeps its new score.
        members(f.OP_ZREM, self.zrem, gauge=True)
        for key, scores in self.zadd.items():
            scored(f.OP_ZADD, key, scores, [self.gauge_of[key]])
        if self.oldest:
            # each item pair names a pending set and its queue
            emit(f.OP_OLDEST, oldest_key, [x for key, q in self.oldest.items() for x in (key_no(key), q)], 2,
                 [key_no(backlog_key)])
        pairs(f.OP_INCR, self.incr)
        for targets, adds in self.fanout:
            emit(f.OP_FANOUT, None, numbers(adds), 2, [len(targets), *map(key_no, targets)])
        pairs(f.OP_MAX, self.hmax)
        pairs(f.OP_MIN, self.hmin)
        if self.rolls:  # after every write to a minute bucket, before the expiries (a new hour must get its own)
            emit(f.OP_ROLL, None, [x for minute, hour, hour_at, day, day_at in self.rolls
                                   for x in (key_no(minute), key_no(hour) if hour else 0, hour_at,
                                             key_no(day) if day else 0, day_at)],
                 5, [len(f.MAX_FIELDS), *sorted(f.MAX_FIELDS)])
        for code, table in ((f.OP_HSET, self.hset), (f.OP_HSETNX, self.hsetnx)):
            for key, values in table.items():
                emit(code, key, list(chain.from_iterable(values.items())), 2)
        members(f.OP_SADD, self.sadd)
        by_ttl: dict[int, list[tuple[str, str]]] = {}
        for key, (value, ttl) in self.jobs.items():
            by_ttl.setdefault(ttl, []).append((key, value))
        for ttl, jobs in by_ttl.items():
            # the jobs' keys are added to KEYS in order (no other op names them), so an op
            # names only the first, and each job is one argument: its record
            for start in range(0, len(jobs), _CHUNK):
                chunk = jobs[start : start + _CHUNK]
                ops.extend((f.OP_JOB, 0, len(chunk) + 2, len(keys) + 1, ttl))
                keys.extend(key for key, _ in chunk)
                ops.extend(value for _, value in chunk)
        for key, newest in self.capped.items():
            scored(f.OP_CAPPED, key, newest, [self.caps[key]])
        if self.expire_at_s:
            emit(f.OP_EXPIREAT, None, [x for key, at in self.expire_at_s.items() for x in (key_no(key), at)], 2)
        if self.expire_s:
            emit(f.OP_EXPIRE, None, [x for key, ttl in self.expire_s.items() for x in (key_no(key), ttl)], 2)
        if not packed:
            if self.deadletters:
                emit(f.OP_DEADLETTER, deadletter_key, [x for dl in self.deadletters for x in dl], 3, [deadletter_cap])
            return keys, ops
        # A raw entry may be any bytes: msgspec would write them as MessagePack's binary type, which
        # Redis' cmsgpack cannot read, so each stays an argument of its own, named by its place after
        # the array (1: the first). (Records and failure members are str: they are JSON text.)
        places: list[Arg] = [x for n, (source_id, reason, _) in enumerate(self.deadletters, 1)
                             for x in (source_id, reason, n)]
        if places:
            emit(f.OP_DEADLETTER, deadletter_key, places, 3, [deadletter_cap])
        return keys, [f.PACKED_OPS, _encode_array(ops), *(raw for _, _, raw in self.deadletters)]
