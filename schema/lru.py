"""A least-recently-used cache bounded by the bytes its entries hold, not by their number.

Every cache that keeps what clients send (documents, persisted query texts, plans) uses it: a
client choosing entries of a megabyte each must not grow the server without bound.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class BytesLru(Generic[V]):
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.hits = self.misses = 0
        self._entries: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()

    def get(self, key: Hashable) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        return entry[0]

    def peek(self, key: Hashable) -> V | None:
        """Like get, without counting or refreshing the entry."""
        entry = self._entries.get(key)
        return entry[0] if entry is not None else None

    def put(self, key: Hashable, value: V, size: int) -> None:
        """Keep `value`, which holds about `size` bytes; an entry larger than the whole cache
        is not kept at all."""
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        if size > self.max_bytes:
            return
        self._entries[key] = (value, size)
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.bytes -= dropped

    def pop(self, key: Hashable) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]

    def __len__(self) -> int:
        return len(self._entries)
