"""The small protocol a cache backend implements (memory, Redis), and the sentinel for "no
entry" (``None`` is a value a decorated function may return and the cache keep)."""

from __future__ import annotations

import enum
from typing import Any, Final, Protocol

from aurea.cache._keys import CacheKey, CacheKind, KeyFilter

__all__ = ["NO_VALUE", "Backend", "Usage"]


class _NoValue(enum.Enum):
    NO_VALUE = "no value"


NO_VALUE: Final = _NoValue.NO_VALUE

Usage = dict[CacheKind, tuple[int, int]]  # kind -> (entries, bytes)


class Backend(Protocol):
    """Every method falls through rather than fail a call: a backend that cannot answer
    returns ``NO_VALUE``, stores nothing (``False``) and counts the failure in ``errors``."""

    name: str
    evictions: int  # entries removed for age or space that this process saw (-1: unknown)
    errors: int  # failed operations since start

    @property
    def available(self) -> bool:
        """Whether the backend answered its last operation."""
        ...

    async def get(self, key: CacheKey) -> Any:
        """The entry's value, or ``NO_VALUE``."""
        ...

    async def put(self, key: CacheKey, value: Any, blob: bytes, ttl_s: float) -> bool:
        """Store ``blob`` (``value`` encoded; ``value`` itself is ``NO_VALUE`` when it is
        mutable and every hit must decode a fresh copy) for ``ttl_s`` (0: no age limit)."""
        ...

    async def clear(self, flt: KeyFilter) -> tuple[int, int]:
        """Remove the matching entries; (entries, bytes) removed."""
        ...

    async def usage(self) -> Usage:
        """Entries and bytes held, by kind (an admin read: may walk every key)."""
        ...

    async def aclose(self) -> None: ...
