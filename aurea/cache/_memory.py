"""The in-process cache backend: an LRU bounded by entries and by bytes, each entry with its own
expiry on an injected monotonic clock. One process's memory; replicas share nothing through it
(configure ``[redis] url`` for that)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aurea.cache._backend import NO_VALUE, Usage
from aurea.cache._codec import decode
from aurea.cache._keys import CacheKey, KeyFilter

__all__ = ["MemoryBackend"]


@dataclass(slots=True)
class _Slot:
    value: Any  # the answer itself (immutable), or NO_VALUE: decode ``blob`` on every hit
    blob: bytes
    size: int
    expires: float  # monotonic instant; inf: no age limit


class MemoryBackend:
    """Least recently used goes first when either cap would be passed. An entry larger than
    ``max_bytes`` is never stored; ``max_entries`` or ``max_bytes`` of 0 stores nothing."""

    name = "memory"
    available = True  # memory never fails: nothing to fall through

    def __init__(
        self,
        *,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        self._slots: OrderedDict[CacheKey, _Slot] = OrderedDict()
        self._bytes = 0
        self.evictions = 0  # entries removed for age or space (not by clear)
        self.errors = 0

    async def get(self, key: CacheKey) -> Any:
        slot = self._slots.get(key)
        if slot is None:
            return NO_VALUE
        if slot.expires <= self._clock():
            self._drop(key, slot)
            self.evictions += 1
            return NO_VALUE
        self._slots.move_to_end(key)
        return decode(slot.blob) if slot.value is NO_VALUE else slot.value

    async def put(self, key: CacheKey, value: Any, blob: bytes, ttl_s: float) -> bool:
        size = len(blob) + len(key.digest) + len(key.namespace) + len(key.model)
        if size > self._max_bytes or self._max_entries == 0:
            return False
        old = self._slots.pop(key, None)
        if old is not None:
            self._bytes -= old.size
        expires = self._clock() + ttl_s if ttl_s > 0 else float("inf")
        self._slots[key] = _Slot(value, blob, size, expires)
        self._bytes += size
        slots = self._slots
        while len(slots) > self._max_entries or self._bytes > self._max_bytes:
            oldest, slot = next(iter(slots.items()))
            self._drop(oldest, slot)
            self.evictions += 1
        return True

    async def clear(self, flt: KeyFilter) -> tuple[int, int]:
        removed = freed = 0
        for key, slot in list(self._slots.items()):
            if flt.matches(key):
                self._drop(key, slot)
                removed += 1
                freed += slot.size
        return removed, freed

    async def usage(self) -> Usage:
        self._expire()
        out: Usage = {}
        for key, slot in self._slots.items():
            entries, size = out.get(key.kind, (0, 0))
            out[key.kind] = (entries + 1, size + slot.size)
        return out

    async def aclose(self) -> None:
        self._slots.clear()
        self._bytes = 0

    def _drop(self, key: CacheKey, slot: _Slot) -> None:
        del self._slots[key]
        self._bytes -= slot.size

    def _expire(self) -> None:
        now = self._clock()
        for key, slot in list(self._slots.items()):
            if slot.expires <= now:
                self._drop(key, slot)
                self.evictions += 1
