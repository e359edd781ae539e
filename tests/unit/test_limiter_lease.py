"""Quota leased in batches (``aurea.limits._lease``): most attempts make no store call, a limit
is still reached exactly (never overshot), and a stale lease or one for changed limits goes back
to the store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from aurea import errors as e
from aurea.actors.router import Candidate
from aurea.config import LimitsSettings, build_settings
from aurea.inference.calls import CallKind
from aurea.inference.guards import AttemptInfo
from aurea.limits import LimiterGuard, LimitsTable
from aurea.providers._base import Usage
from aurea.stores import Admission, Quota
from aurea.stores.memory.limiter import MemoryLimiterStore

pytestmark = pytest.mark.timeout(10)


class CountingStore(MemoryLimiterStore):
    def __init__(self) -> None:
        super().__init__()
        self.acquires = 0
        self.refunds: list[tuple[Quota, ...]] = []

    async def acquire(self, quotas: Sequence[Quota], *, now: float) -> Admission:
        self.acquires += 1
        return await super().acquire(quotas, now=now)

    async def refund(self, quotas: Sequence[Quota], *, now: float) -> None:
        self.refunds.append(tuple(quotas))
        await super().refund(quotas, now=now)


class Rig:
    def __init__(self, **limits: Any) -> None:
        s = build_settings({"models": {"m": {"provider": "simulated", **limits}}})
        self.spec = s.models["m"]
        self.wall = 1_000_000.0
        self.mono = 10.0
        self.store = CountingStore()
        self.table = LimitsTable(models=s.models, settings=LimitsSettings())
        self.guard = LimiterGuard(
            table=self.table,
            store=self.store,
            wall_clock=lambda: self.wall,
            clock=lambda: self.mono,
        )
        self.info = AttemptInfo(request_id="r", kind=CallKind.UNARY, max_tokens=256)

    async def attempt(self, usage: Usage | None = None) -> bool:
        try:
            permit = await self.guard.admit(self.info, Candidate(model=self.spec, reason="t"))
        except e.RateLimited:
            return False
        async with permit:
            if usage is not None:
                permit.observe(usage, 0)
        return True

    async def admitted(self, n: int, usage: Usage | None = None) -> int:
        return sum([await self.attempt(usage) for _ in range(n)])


async def test_most_attempts_make_no_store_call() -> None:
    rig = Rig(rpm=50_000, tpm=50_000_000)
    assert await rig.admitted(1000, Usage(input_tokens=12, output_tokens=32)) == 1000
    # A batch is 1/50 of a minute's limit: 1000 requests ahead, 1M tokens ahead.
    assert rig.store.acquires <= 2
    assert rig.store.refunds == []  # the unused estimates went back to the lease


@pytest.mark.parametrize("rpm", [50, 499, 500, 5000])
async def test_a_limit_is_reached_exactly_with_batches(rpm: int) -> None:
    rig = Rig(rpm=rpm)
    assert await rig.admitted(rpm + 50) == rpm
    rig.wall += 6  # a tenth of a minute refills a tenth of the limit
    assert await rig.admitted(rpm) == rpm // 10


async def test_tokens_given_back_serve_later_attempts() -> None:
    rig = Rig(tpm=1000)
    # 256 estimated, 56 used: each attempt leaves 200 in the lease for the next. The
    # (k+1)-th goes while 56 k + 256 <= 1000: 14 in all, exactly as without a lease.
    assert await rig.admitted(50, Usage(input_tokens=6, output_tokens=50)) == 14


async def test_a_stale_lease_goes_back_to_the_store() -> None:
    rig = Rig(rpm=5000)
    assert await rig.attempt()  # took 1 + a batch of 100 ahead
    rig.mono += 2  # the lease is older than a second
    assert await rig.attempt()
    (returned,) = rig.store.refunds
    assert [(q.key, q.cost) for q in returned] == [("{m}:rpm", 100)]
    # Nothing was lost: the whole minute is still there, less the two used.
    assert await rig.admitted(6000) == 4998


async def test_changed_limits_retire_the_lease() -> None:
    rig = Rig(rpm=5000)
    assert await rig.attempt()
    rig.table.set("m", rpm=100)
    assert await rig.attempt()
    assert [(q.key, q.cost) for q in rig.store.refunds[0]] == [("{m}:rpm", 100)]


async def test_a_refused_batch_falls_back_to_exactly_what_is_missing() -> None:
    rig = Rig(rpm=500)  # batches of 10
    assert await rig.admitted(495) == 495
    before = rig.store.acquires
    assert await rig.admitted(10) == 5
    # Each of the last five: a refused batch, then an exact request.
    assert rig.store.acquires - before >= 5
