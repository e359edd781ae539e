"""The RouterStatsStore contract, run against every implementation (see conftest.py)."""

from __future__ import annotations

import asyncio
import math

import pytest
from store_helpers import T0

from aurea.stores import Outcome, RouterStatsStore

HALF_LIFE = 60.0


async def test_outcomes_fold_into_lifetime_figures(stats: RouterStatsStore) -> None:
    await stats.record(
        "m",
        Outcome(success=True, latency_s=1.0, cost_nanos=100, ttft_s=0.2),
        now=T0,
        half_life_s=HALF_LIFE,
    )
    await stats.record(
        "m", Outcome(success=False, latency_s=3.0, cost_nanos=50), now=T0 + 1, half_life_s=HALF_LIFE
    )
    s = await stats.get("m")
    assert s is not None
    assert (s.count, s.successes, s.cost_sum_nanos, s.ttft_count) == (2, 1, 150, 1)
    assert (s.success_rate, s.avg_latency_s, s.avg_cost_nanos) == (0.5, 2.0, 75.0)
    assert s.avg_ttft_s == pytest.approx(0.2) and s.last_updated == T0 + 1
    assert await stats.get("other") is None


async def test_recent_figures_halve_old_samples_every_half_life(stats: RouterStatsStore) -> None:
    await stats.record("m", Outcome(success=True, latency_s=1.0), now=T0, half_life_s=HALF_LIFE)
    s = await stats.record(
        "m", Outcome(success=False, latency_s=4.0), now=T0 + HALF_LIFE, half_life_s=HALF_LIFE
    )
    # weights: old 0.5, new 1 → latency (0.5·1 + 4) / 1.5 = 3, success 0.5 / 1.5 = 1/3
    assert s.recent_latency_s == pytest.approx(3.0)
    assert s.recent_success_rate == pytest.approx(1 / 3)
    assert s.avg_latency_s == pytest.approx(2.5)  # lifetime figures do not decay


async def test_samples_at_one_instant_weigh_the_same(stats: RouterStatsStore) -> None:
    for latency in (1.0, 2.0, 6.0):
        await stats.record(
            "m", Outcome(success=True, latency_s=latency), now=T0, half_life_s=HALF_LIFE
        )
    # A clock that stepped back decays nothing and does not move last_updated back.
    s = await stats.record(
        "m", Outcome(success=True, latency_s=3.0), now=T0 - 50, half_life_s=HALF_LIFE
    )
    assert s.recent_latency_s == pytest.approx(3.0) and s.last_updated == T0


async def test_all_lists_models_in_order(stats: RouterStatsStore) -> None:
    for model in ("b", "a", "c"):
        await stats.record(
            model, Outcome(success=True, latency_s=0.5), now=T0, half_life_s=HALF_LIFE
        )
    assert [s.model for s in await stats.all()] == ["a", "b", "c"]


async def test_concurrent_records_lose_nothing(stats: RouterStatsStore) -> None:
    await asyncio.gather(
        *(
            stats.record(
                "m",
                Outcome(success=i % 2 == 0, latency_s=1.0, cost_nanos=1),
                now=T0,
                half_life_s=HALF_LIFE,
            )
            for i in range(300)
        )
    )
    s = await stats.get("m")
    assert s is not None and (s.count, s.successes, s.cost_sum_nanos) == (300, 150, 300)


async def test_weights_are_replaced_as_a_whole(stats: RouterStatsStore) -> None:
    assert await stats.get_weights() is None
    await stats.set_weights({"cost": 0.2, "quality": 0.5, "latency": 0.3}, now=T0)
    await stats.set_weights({"cost": 1.0}, now=T0 + 1)
    weights = await stats.get_weights()
    assert weights == {"cost": 1.0}
    weights["cost"] = 0.0  # the caller's copy, not the store's state
    assert await stats.get_weights() == {"cost": 1.0}


@pytest.mark.parametrize(
    "outcome",
    [
        Outcome(success=True, latency_s=math.nan),
        Outcome(success=True, latency_s=-1.0),
        Outcome(success=True, latency_s=1.0, cost_nanos=-1),
        Outcome(success=True, latency_s=1.0, ttft_s=math.inf),
    ],
)
async def test_nonsense_outcomes_record_nothing(stats: RouterStatsStore, outcome: Outcome) -> None:
    with pytest.raises(ValueError):
        await stats.record("m", outcome, now=T0, half_life_s=HALF_LIFE)
    assert await stats.get("m") is None


async def test_nonsense_weights_change_nothing(stats: RouterStatsStore) -> None:
    await stats.set_weights({"cost": 1.0}, now=T0)
    for bad in ({}, {"cost": math.nan}, {"": 1.0}):
        with pytest.raises(ValueError):
            await stats.set_weights(bad, now=T0)
    assert await stats.get_weights() == {"cost": 1.0}
