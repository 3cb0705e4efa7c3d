"""The writes a folded batch makes, collected in memory and merged per key,
then encoded as KEYS/ARGV for the apply script (see ``apply.lua``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

# Redis' Lua unpack() works on the C stack; keep each command's arity well below it.
_CHUNK = 500


@dataclass
class Effects:
    """Every write of one batch; same-key writes are merged as they are added."""

    incr: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    hmax: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    hmin: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    hset: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    hsetnx: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))
    zadd: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    zrem: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    sadd: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    expire_at_s: dict[str, int] = field(default_factory=dict)
    expire_s: dict[str, int] = field(default_factory=dict)
    deadletters: list[tuple[str, str, bytes]] = field(default_factory=list)

    def add(self, key: str, fld: str, n: int = 1) -> None:
        """HINCRBY, merged."""
        fields = self.incr[key]
        fields[fld] = fields.get(fld, 0) + n

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

    def dead_letter(self, source_id: str, reason: str, raw: bytes) -> None:
        """Queue a rejected entry for the dead-letter stream."""
        self.deadletters.append((source_id, reason, raw))

    def encode(self, fixed_keys: list[str]) -> tuple[list[str], bytes, list[str | bytes]]:
        """KEYS (``fixed_keys`` first), the ops as one JSON array, and the dead letters' ARGV."""
        keys = list(fixed_keys)
        index: dict[str, int] = {k: i + 1 for i, k in enumerate(keys)}
        # One JSON argument instead of one argument per field: redis-py encodes
        # every argument in Python, orjson encodes the whole list in C.
        ops: list[tuple[str, int, list[str | int]]] = []

        def key_no(key: str) -> int:
            if key not in index:
                keys.append(key)
                index[key] = len(keys)
            return index[key]

        def pairs(op: str, table: Mapping[str, Mapping[str, int | str]]) -> None:
            for key, fields in table.items():
                flat: list[str | int] = []
                for fld, value in fields.items():
                    flat.append(fld)
                    flat.append(value)
                for start in range(0, len(flat), 2 * _CHUNK):
                    ops.append((op, key_no(key), flat[start : start + 2 * _CHUNK]))

        def members(op: str, table: dict[str, set[str]]) -> None:
            for key, items in table.items():
                listed: list[str | int] = sorted(items)
                for start in range(0, len(listed), _CHUNK):
                    ops.append((op, key_no(key), listed[start : start + _CHUNK]))

        # Order matters only where one key gets two kinds of write: removals
        # before additions, so a job re-entering a state keeps its new score.
        members("R", self.zrem)
        pairs("Z", self.zadd)
        pairs("I", self.incr)
        pairs("X", self.hmax)
        pairs("N", self.hmin)
        pairs("S", self.hset)
        pairs("s", self.hsetnx)
        members("A", self.sadd)
        for key, when in self.expire_at_s.items():
            ops.append(("E", key_no(key), [when]))
        for key, ttl in self.expire_s.items():
            ops.append(("T", key_no(key), [ttl]))
        # Dead letters stay raw arguments: their bytes need not be valid UTF-8.
        dead: list[str | bytes] = []
        for source_id, reason, raw in self.deadletters:
            dead.extend((source_id, reason, raw))
        return keys, orjson.dumps(ops), dead
