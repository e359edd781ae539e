"""The limiter store protocol: atomic GCRA rate limits over one or more keys at once.

GCRA (the generic cell rate algorithm, as in ATM networks and redis-cell) keeps one number per key,
its *theoretical arrival time* (TAT): the instant the bucket would be full again. A request of
``cost`` units is admitted when ``max(TAT, now) + cost/rate - burst/rate <= now``. One float per
key makes an atomic compare-and-set cheap for every backend (a Redis Lua script, one SQLite
transaction). ``acquire`` takes several quotas (a model's requests-per-minute and tokens-per-minute)
and grants all or none, so the hot path needs one round trip and never refunds a half admission.

Per key a store may also keep a *hold* (an upstream 429 said "not before T"): no admission on that
key before T, and normal refill afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aurea.stores._common import check_finite, check_id, check_non_negative, check_positive

__all__ = [
    "Admission",
    "LimiterStore",
    "Quota",
    "check_quotas",
    "decide",
    "refunded_tat",
]

# Epoch seconds as floats resolve ~0.24 us today, and sums of cost/rate drift by a few ulps: one
# microsecond of slack keeps "exactly the burst" and "retry exactly after retry_after_s" admissible.
_SLACK_S = 1e-6


@dataclass(frozen=True, slots=True, kw_only=True)
class Quota:
    """``cost`` units against ``key``, refilled at ``rate_per_s``, at most ``burst`` at once.

    For 600 RPM: ``rate_per_s=10, burst=600`` admits a full minute's worth at once; a smaller
    ``burst`` smooths. A quota whose ``cost`` exceeds its ``burst`` can never be admitted.
    Keys acquired together should share a Redis Cluster hash tag (``{model}:rpm``,
    ``{model}:tpm``) so one script can update them atomically."""

    key: str
    cost: int
    rate_per_s: float
    burst: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Admission:
    """``granted`` for all quotas, or none was taken and ``retry_after_s`` says how long until
    the refusing quotas could fit (``math.inf`` when a cost exceeds its burst: never).
    ``limiting_key`` names the quota that needs the longest wait."""

    granted: bool
    retry_after_s: float = 0.0
    limiting_key: str = ""


def check_quotas(quotas: Sequence[Quota], now: float) -> None:
    check_finite("now", now)
    keys = [q.key for q in quotas]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate quota keys: {keys}")
    for q in quotas:
        check_id("key", q.key)
        check_non_negative("cost", q.cost)
        check_positive("rate_per_s", q.rate_per_s)
        check_finite("rate_per_s", q.rate_per_s)
        check_positive("burst", q.burst)
        check_finite("burst", q.burst)


def decide(quota: Quota, tat: float, held_until: float, now: float) -> tuple[bool, float, float]:
    """One GCRA step for one key: ``(granted, new_tat, retry_after_s)``; pure, for every backend."""
    if now < held_until:
        return False, tat, held_until - now
    interval_s = 1.0 / quota.rate_per_s
    new_tat = max(tat, now) + quota.cost * interval_s
    allow_at = new_tat - quota.burst * interval_s
    if allow_at <= now + _SLACK_S:
        return True, new_tat, 0.0
    if quota.cost > quota.burst:
        return False, tat, math.inf
    return False, tat, allow_at - now


def refunded_tat(quota: Quota, tat: float, now: float) -> float:
    """The TAT after giving ``quota.cost`` back: never earlier than ``now`` (a full bucket)."""
    return max(tat - quota.cost / quota.rate_per_s, now)


class LimiterStore(Protocol):
    """Rate-limit state per key. Bad arguments raise ``ValueError``; a failing backend raises
    ``StoreUnavailable`` (the limiter fails closed)."""

    async def acquire(self, quotas: Sequence[Quota], *, now: float) -> Admission:
        """Admit every quota or none, atomically."""
        ...

    async def refund(self, quotas: Sequence[Quota], *, now: float) -> None:
        """Give back units admitted earlier (an estimate larger than the actual usage)."""
        ...

    async def hold(self, key: str, until: float) -> None:
        """Admit nothing on ``key`` before ``until`` (keeps the later of two holds)."""
        ...
