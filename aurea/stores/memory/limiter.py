"""The in-memory ``LimiterStore``: GCRA state per key in a dict, for one process.

The embedded default for rate limits (they need no durability: after a restart every bucket is
full, which only admits what a fresh process would). No method awaits, so each is atomic.
"""

from __future__ import annotations

from collections.abc import Sequence

from aurea.stores._common import check_finite, check_id
from aurea.stores.limiter import Admission, Quota, check_quotas, decide, refunded_tat

__all__ = ["MemoryLimiterStore"]


class MemoryLimiterStore:
    """Per key: the theoretical arrival time and the time a hold ends (both wall seconds).

    Keys are never evicted: they are per model (a catalog's worth), not per caller."""

    def __init__(self) -> None:
        self._tat: dict[str, float] = {}
        self._held_until: dict[str, float] = {}

    async def acquire(self, quotas: Sequence[Quota], *, now: float) -> Admission:
        check_quotas(quotas, now)
        new_tats: list[float] = []
        refusal = Admission(granted=True)
        for q in quotas:
            granted, new_tat, retry_after_s = decide(
                q, self._tat.get(q.key, now), self._held_until.get(q.key, now), now
            )
            if not granted and (refusal.granted or retry_after_s > refusal.retry_after_s):
                refusal = Admission(granted=False, retry_after_s=retry_after_s, limiting_key=q.key)
            new_tats.append(new_tat)
        if not refusal.granted:
            return refusal
        for q, tat in zip(quotas, new_tats, strict=True):
            self._tat[q.key] = tat
        return refusal

    async def refund(self, quotas: Sequence[Quota], *, now: float) -> None:
        check_quotas(quotas, now)
        for q in quotas:
            tat = self._tat.get(q.key)
            if tat is not None:
                self._tat[q.key] = refunded_tat(q, tat, now)

    async def hold(self, key: str, until: float) -> None:
        check_id("key", key)
        check_finite("until", until)
        self._held_until[key] = max(until, self._held_until.get(key, until))
