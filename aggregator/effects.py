"""The writes a folded batch makes, collected in memory and merged per key,
then encoded as KEYS/ARGV for the apply script (see ``apply.lua``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

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

    def encode(self, fixed_keys: list[str], deadletter_key: str) -> tuple[list[str], list[str | int | bytes]]:
        """KEYS (``fixed_keys`` first) and the op list of ARGV."""
        keys = list(fixed_keys)
        index: dict[str, int] = {k: i + 1 for i, k in enumerate(keys)}
        ops: list[str | int | bytes] = []

        def key_no(key: str) -> int:
            if key not in index:
                keys.append(key)
                index[key] = len(keys)
            return index[key]

        def pairs(op: str, table: Mapping[str, Mapping[str, int | str]]) -> None:
            for key, fields in table.items():
                items = list(fields.items())
                for start in range(0, len(items), _CHUNK):
                    chunk = items[start : start + _CHUNK]
                    ops.extend((op, key_no(key), len(chunk)))
                    for fld, value in chunk:
                        ops.extend((fld, value))

        def members(op: str, table: dict[str, set[str]]) -> None:
            for key, items in table.items():
                listed = sorted(items)
                for start in range(0, len(listed), _CHUNK):
                    chunk = listed[start : start + _CHUNK]
                    ops.extend((op, key_no(key), len(chunk)))
                    ops.extend(chunk)

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
            ops.extend(("E", key_no(key), 1, when))
        for key, ttl in self.expire_s.items():
            ops.extend(("T", key_no(key), 1, ttl))
        for start in range(0, len(self.deadletters), _CHUNK):
            chunk = self.deadletters[start : start + _CHUNK]
            ops.extend(("D", key_no(deadletter_key), len(chunk)))
            for source_id, reason, raw in chunk:
                ops.extend((source_id, reason, raw))
        return keys, ops
