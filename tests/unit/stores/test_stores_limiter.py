"""The LimiterStore contract (GCRA), run against every implementation (see conftest.py)."""

from __future__ import annotations

import asyncio
import math

import pytest
from store_helpers import T0

from aurea.stores import LimiterStore, Quota


def rpm(key: str, per_minute: int, cost: int = 1) -> Quota:
    return Quota(key=key, cost=cost, rate_per_s=per_minute / 60, burst=per_minute)


async def test_a_full_bucket_admits_its_burst_then_refuses_until_refilled(
    limiter: LimiterStore,
) -> None:
    q = Quota(key="m:rpm", cost=1, rate_per_s=10.0, burst=5)
    for _ in range(5):
        assert (await limiter.acquire([q], now=T0)).granted
    refused = await limiter.acquire([q], now=T0)
    assert not refused.granted and refused.limiting_key == "m:rpm"
    assert refused.retry_after_s == pytest.approx(0.1, abs=1e-6)
    assert not (await limiter.acquire([q], now=T0 + 0.05)).granted
    assert (await limiter.acquire([q], now=T0 + refused.retry_after_s)).granted  # one refilled
    assert not (await limiter.acquire([q], now=T0 + 0.1)).granted
    # Idle for long: never more than the burst at once.
    granted = [(await limiter.acquire([q], now=T0 + 100)).granted for _ in range(7)]
    assert granted == [True] * 5 + [False] * 2


async def test_token_costs_draw_down_the_bucket(limiter: LimiterStore) -> None:
    tpm = Quota(key="m:tpm", cost=400, rate_per_s=1000 / 60, burst=1000)
    assert (await limiter.acquire([tpm], now=T0)).granted
    assert (await limiter.acquire([tpm], now=T0)).granted
    refused = await limiter.acquire([tpm], now=T0)
    assert not refused.granted
    assert refused.retry_after_s == pytest.approx(200 / (1000 / 60))  # 12 s for 200 tokens
    assert (await limiter.acquire([tpm], now=T0 + 12)).granted


async def test_a_cost_larger_than_the_burst_can_never_fit(limiter: LimiterStore) -> None:
    refused = await limiter.acquire([rpm("m", 60, cost=61)], now=T0)
    assert not refused.granted and refused.retry_after_s == math.inf
    assert (await limiter.acquire([rpm("m", 60, cost=60)], now=T0)).granted


async def test_several_quotas_are_admitted_all_or_none(limiter: LimiterStore) -> None:
    requests = Quota(key="m:rpm", cost=1, rate_per_s=1.0, burst=10)
    tokens = Quota(key="m:tpm", cost=600, rate_per_s=100.0, burst=1000)
    assert (await limiter.acquire([requests, tokens], now=T0)).granted
    refused = await limiter.acquire([requests, tokens], now=T0)
    assert not refused.granted and refused.limiting_key == "m:tpm"
    assert refused.retry_after_s == pytest.approx(2.0)
    # The refused call took nothing from the requests quota: 9 of 10 are still there.
    assert [(await limiter.acquire([requests], now=T0)).granted for _ in range(10)] == [
        True
    ] * 9 + [False]
    # The longest wait names the limiting key.
    both = await limiter.acquire([requests, tokens], now=T0)
    assert both.limiting_key == "m:tpm" and both.retry_after_s == pytest.approx(2.0)


async def test_refund_gives_back_what_was_not_used(limiter: LimiterStore) -> None:
    tpm = Quota(key="m:tpm", cost=1000, rate_per_s=10.0, burst=1000)
    assert (await limiter.acquire([tpm], now=T0)).granted
    assert not (
        await limiter.acquire([Quota(key="m:tpm", cost=100, rate_per_s=10.0, burst=1000)], now=T0)
    ).granted
    unused = Quota(key="m:tpm", cost=700, rate_per_s=10.0, burst=1000)
    await limiter.refund([unused], now=T0)
    assert (await limiter.acquire([unused], now=T0)).granted
    # A refund never banks more than a full bucket.
    await limiter.refund([tpm, rpm("unknown", 5)], now=T0)
    await limiter.refund([tpm], now=T0)
    granted = [
        (
            await limiter.acquire(
                [Quota(key="m:tpm", cost=500, rate_per_s=10.0, burst=1000)], now=T0
            )
        ).granted
        for _ in range(3)
    ]
    assert granted == [True, True, False]


async def test_a_hold_refuses_until_it_ends(limiter: LimiterStore) -> None:
    q = rpm("m:rpm", 600)
    await limiter.hold("m:rpm", T0 + 30)
    await limiter.hold("m:rpm", T0 + 10)  # the later hold wins
    refused = await limiter.acquire([q], now=T0 + 5)
    assert not refused.granted and refused.retry_after_s == pytest.approx(25.0)
    assert (await limiter.acquire([q], now=T0 + 30)).granted
    await limiter.hold("other", T0 + 100)
    assert not (await limiter.acquire([q, rpm("other", 600)], now=T0 + 31)).granted


@pytest.mark.parametrize(
    "quota",
    [
        Quota(key="", cost=1, rate_per_s=1.0, burst=1),
        Quota(key="k", cost=-1, rate_per_s=1.0, burst=1),
        Quota(key="k", cost=1, rate_per_s=0.0, burst=1),
        Quota(key="k", cost=1, rate_per_s=math.nan, burst=1),
        Quota(key="k", cost=1, rate_per_s=1.0, burst=math.inf),
    ],
)
async def test_nonsense_quotas_raise_value_error(limiter: LimiterStore, quota: Quota) -> None:
    with pytest.raises(ValueError):
        await limiter.acquire([quota], now=T0)
    with pytest.raises(ValueError):
        await limiter.refund([quota], now=T0)


async def test_duplicate_keys_in_one_acquire_are_refused(limiter: LimiterStore) -> None:
    with pytest.raises(ValueError):
        await limiter.acquire([rpm("k", 5), rpm("k", 5)], now=T0)


async def test_two_hundred_concurrent_callers_get_exactly_the_burst(
    limiter: LimiterStore,
) -> None:
    requests = rpm("m:rpm", 60)
    tokens = Quota(key="m:tpm", cost=100, rate_per_s=50.0, burst=3000)  # 30 calls' worth
    results = await asyncio.gather(
        *(limiter.acquire([requests, tokens], now=T0) for _ in range(200))
    )
    assert sum(r.granted for r in results) == 30
    assert all(r.limiting_key == "m:tpm" for r in results if not r.granted)
