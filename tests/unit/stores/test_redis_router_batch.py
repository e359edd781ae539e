"""The Redis router stats store's batch write (``record_many``): the same figures as one
``record`` per outcome, one script per model and no ``SCRIPT EXISTS`` round trip, and the
model index written once per model. A real redis-server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from aurea.stores import Outcome
from aurea.stores.memory import MemoryRouterStatsStore
from aurea.stores.redis import RedisClient, RedisRouterStatsStore, open_redis
from aurea.testing.redis import RedisServer

NOW = 1_800_000_000.0
HALF_LIFE_S = 3600.0
BATCH = [
    ("a", Outcome(success=True, latency_s=0.2, cost_nanos=100, ttft_s=0.05)),
    ("b", Outcome(success=False, latency_s=0.01)),
    ("a", Outcome(success=True, latency_s=0.4, cost_nanos=300)),
    ("a", Outcome(success=False, latency_s=0.1)),
    ("b", Outcome(success=True, latency_s=0.3, cost_nanos=7)),
]


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[RedisClient]:
    c = open_redis(redis_server.url, prefix=f"t{uuid.uuid4().hex[:12]}")
    yield c
    await c.aclose()


async def _calls(client: RedisClient, command: str) -> int:
    stats = await client.redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_batch_folds_like_one_record_per_outcome(client: RedisClient) -> None:
    store, memory = RedisRouterStatsStore(client), MemoryRouterStatsStore()
    await store.record("a", BATCH[0][1], now=NOW - 60, half_life_s=HALF_LIFE_S)
    await memory.record("a", BATCH[0][1], now=NOW - 60, half_life_s=HALF_LIFE_S)
    expected = [await memory.record(m, o, now=NOW, half_life_s=HALF_LIFE_S) for m, o in BATCH]
    scripts, exists = await _calls(client, "evalsha"), await _calls(client, "script|exists")
    sadds = await _calls(client, "sadd")
    rows = await store.record_many(BATCH, now=NOW, half_life_s=HALF_LIFE_S)
    assert [(r.model, r.count, r.successes, r.cost_sum_nanos, r.ttft_count) for r in rows] == [
        (e.model, e.count, e.successes, e.cost_sum_nanos, e.ttft_count) for e in expected
    ]
    for got, want in zip(rows, expected, strict=True):
        assert got.decayed_weight == pytest.approx(want.decayed_weight)
        assert got.decayed_latency_s == pytest.approx(want.decayed_latency_s)
    assert await _calls(client, "evalsha") == scripts + 2  # one per model
    assert await _calls(client, "script|exists") == exists
    assert await _calls(client, "sadd") == sadds + 1  # only b is new to this process
    assert {s.model for s in await store.all()} == {"a", "b"}
    # Another process (a new store) lists what it folds again: the index is shared.
    other = RedisRouterStatsStore(client)
    await other.record("c", BATCH[1][1], now=NOW, half_life_s=HALF_LIFE_S)
    assert {s.model for s in await store.all()} == {"a", "b", "c"}


async def test_a_bad_outcome_refuses_the_whole_batch(client: RedisClient) -> None:
    store = RedisRouterStatsStore(client)
    bad = [*BATCH, ("c", Outcome(success=True, latency_s=-1.0))]
    with pytest.raises(ValueError):
        await store.record_many(bad, now=NOW, half_life_s=HALF_LIFE_S)
    assert await store.all() == ()
    assert await store.record_many([], now=NOW, half_life_s=HALF_LIFE_S) == ()
