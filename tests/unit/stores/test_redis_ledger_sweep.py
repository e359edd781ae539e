"""The Redis ledger's expiry sweep across replicas: the cross-job index only says which jobs to
visit, a reserve made while another replica sweeps is never dropped from it, and the index does
not grow without bound. A real redis-server (the session's, a fresh prefix per test)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from store_helpers import T0

from aurea.stores import LeaseEnd, Spend
from aurea.stores.redis import RedisClient, RedisLedgerStore, open_redis
from aurea.testing.redis import RedisServer

RETENTION = 10.0
TTL = 30.0


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[RedisClient]:
    c = open_redis(redis_server.url, prefix=f"t{uuid.uuid4().hex[:12]}")
    yield c
    await c.aclose()


def _store(client: RedisClient) -> RedisLedgerStore:
    return RedisLedgerStore(client, closed_lease_retention_s=RETENTION)


async def _index(client: RedisClient) -> dict[str, float]:
    raw = await client.redis.zrange(client.key("led", "{ledger}", "exp"), 0, -1, withscores=True)
    return {k.decode(): s for k, s in raw}


async def test_a_reserve_during_another_replicas_sweep_still_expires(
    client: RedisClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweeper, other = _store(client), _store(client)
    await sweeper.reserve("j", "a", 100, TTL, now=T0, default_budget_nanos=None)
    await sweeper.release("a", now=T0 + 1)
    # The sweep at T0 + 100 finds j with nothing active and its one closed lease past the
    # retention: j would leave the index. Between its visit and its index update, another
    # replica reserves b on j (and then dies: nobody renews or settles b).
    original = sweeper._settle_due

    async def late_reserve(visits: Any) -> None:
        await other.reserve("j", "b", 70, TTL, now=T0 + 100, default_budget_nanos=None)
        await original(visits)

    monkeypatch.setattr(sweeper, "_settle_due", late_reserve)
    assert await sweeper.expire(now=T0 + 100) == 0
    monkeypatch.setattr(sweeper, "_settle_due", original)
    assert "j" in await _index(client)  # kept for b
    view = await sweeper.get_job("j")
    assert view is not None and view.reserved_nanos == 70
    assert await sweeper.expire(now=T0 + 100 + TTL) == 1  # b's TTL passed: back to the truth
    view = await sweeper.get_job("j")
    assert view is not None and (view.reserved_nanos, view.active_leases) == (0, 0)


async def test_the_index_empties_once_leases_are_closed_and_forgotten(
    client: RedisClient,
) -> None:
    store = _store(client)
    for i in range(20):
        job = f"job{i % 5}"
        await store.reserve(job, f"l{i}", 10, TTL, now=T0 + i, default_budget_nanos=None)
        if i % 2:
            await store.settle(f"l{i}", Spend(cost_nanos=3), now=T0 + i + 1, job_id=job)
    assert set(await _index(client)) == {f"job{i}" for i in range(5)}
    assert await store.expire(now=T0 + 20) == 0  # nothing due yet: no job visited
    assert await store.expire(now=T0 + 19 + TTL) == 10  # the unsettled half
    # Settled and expired leases are remembered for the retention, then forgotten, and the
    # jobs leave the index.
    assert await _index(client)
    assert await store.expire(now=T0 + 19 + TTL + RETENTION) == 0
    assert await _index(client) == {}
    assert await client.redis.hlen(client.key("led", "{ledger}", "touch")) == 0
    assert await store.get_lease("l1") is None
    for i in range(5):
        view = await store.get_job(f"job{i}")
        assert view is not None and (view.spent_nanos, view.reserved_nanos) == (6, 0)


async def test_a_lease_is_found_by_id_alone_or_with_its_job(client: RedisClient) -> None:
    store = _store(client)
    await store.reserve("j", "a", 100, TTL, now=T0, default_budget_nanos=None)
    by_id = await store.get_lease("a")
    with_job = await store.get_lease("a", job_id="j")
    assert by_id is not None and by_id == with_job and by_id.job_id == "j"
    # Leases live with their job: another job's id does not find it.
    assert await store.get_lease("a", job_id="k") is None
    assert (await store.extend("a", 0, TTL, now=T0, job_id="k")).job_id == ""
    assert await store.settle("a", Spend(cost_nanos=1), now=T0, job_id="j") is LeaseEnd.CLOSED
    view = await store.get_job("j")
    assert view is not None and (view.spent_nanos, view.reserved_nanos) == (1, 0)
