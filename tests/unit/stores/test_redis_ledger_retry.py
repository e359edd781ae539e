"""Money is charged once even when Redis ran a write but its answer was lost (a timeout after
the script ran): the shared ledger numbers its consume batches, a retry keeps the number, and
the store applies a writer's batch at most once per job. A real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from store_helpers import T0

from aurea.ledger import SharedLedgerBook
from aurea.stores import ChargeOp, Spend, StoreUnavailable
from aurea.stores.redis import RedisClient, RedisLedgerStore, open_redis
from aurea.testing.redis import RedisServer


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[RedisClient]:
    c = open_redis(redis_server.url, prefix=f"t{uuid.uuid4().hex[:12]}")
    yield c
    await c.aclose()


def _charge(job: str, cost: int) -> ChargeOp:
    return ChargeOp(
        job_id=job, spend=Spend(cost_nanos=cost, calls=1), now=T0, default_budget_nanos=None
    )


async def _spent(store: RedisLedgerStore, job: str) -> int:
    view = await store.get_job(job)
    return -1 if view is None else view.spent_nanos


async def test_a_writers_batch_applies_once_per_job(client: RedisClient) -> None:
    store = RedisLedgerStore(client)
    batch = [("", _charge("a", 10)), ("", _charge("b", 5)), ("", _charge("a", 1))]
    await store.consume(batch, writer="w1", seq=1)
    await store.consume(batch, writer="w1", seq=1)  # the retry of a lost answer
    assert (await _spent(store, "a"), await _spent(store, "b")) == (11, 5)
    await store.consume([("", _charge("a", 100))], writer="w1", seq=3)
    await store.consume([("", _charge("a", 1000))], writer="w1", seq=2)  # older: not applied
    await store.consume([("", _charge("a", 7))], writer="w2", seq=1)  # another writer
    assert await _spent(store, "a") == 118
    # A job first seen in a later batch of the writer still gets it once.
    await store.consume([("", _charge("c", 3))], writer="w1", seq=4)
    await store.consume([("", _charge("c", 3))], writer="w1", seq=4)
    assert await _spent(store, "c") == 3
    # Without a writer nothing is deduplicated (the caller did not ask).
    await store.consume([("", _charge("d", 2))])
    await store.consume([("", _charge("d", 2))])
    assert await _spent(store, "d") == 4
    with pytest.raises(ValueError, match="seq"):
        await store.consume([("", _charge("d", 2))], writer="w1", seq=0)


class _LostAnswers(RedisLedgerStore):
    """Runs every other consume on Redis, then reports it unavailable, as a timeout after the
    script ran would."""

    def __init__(self, client: RedisClient) -> None:
        super().__init__(client)
        self.lost = 0

    async def consume(
        self, items: Sequence[tuple[str, ChargeOp]], *, writer: str = "", seq: int = 0
    ) -> None:
        await super().consume(items, writer=writer, seq=seq)
        if self.lost < 5:
            self.lost += 1
            raise StoreUnavailable("the answer was lost", retry_after_s=0.01)


async def test_the_shared_ledger_charges_once_when_answers_are_lost(client: RedisClient) -> None:
    store = _LostAnswers(client)
    book = SharedLedgerBook(
        store, default_budget_nanos=None, lease_ttl_s=30.0, settle_wait_s=30.0, idle_s=0.05
    )
    await book.start()
    try:
        await book.set_budget("j", 1_000_000)

        async def call(cost: int) -> None:
            acct = book.cached("j") or await book.account("j")
            await book.ensure_room(acct, 100)
            lease = book.reserve(acct, 100, "m", "p")
            committed: Any = book.settle(lease, cost, 1, 1)
            if committed is not None:
                await committed

        costs = [1 + i % 90 for i in range(200)]
        await asyncio.gather(*(call(c) for c in costs))
        assert store.lost == 5  # five batches ran on Redis and were sent again
        view = await book.get_job("j")
        assert view is not None and view.spent_nanos == sum(costs)
    finally:
        await book.stop(grace_s=5)


async def _calls(client: RedisClient, command: str) -> int:
    stats = await client.redis.info("commandstats")
    return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))


async def test_a_batch_over_jobs_is_one_round_trip_and_survives_a_script_flush(
    client: RedisClient,
) -> None:
    store = RedisLedgerStore(client)
    batch = [("", _charge("a", 10)), ("", _charge("b", 5))]
    await store.consume(batch, writer="w", seq=1)
    exists = await _calls(client, "script|exists")
    await store.consume(batch, writer="w", seq=2)
    assert await _calls(client, "script|exists") == exists  # no check before the MULTI
    # Redis lost its scripts (a restart without persistence of scripts): every script of the
    # MULTI fails alike, the store loads it and sends the call again; charged once.
    await client.redis.script_flush()
    await store.consume(batch, writer="w", seq=3)
    assert (await _spent(store, "a"), await _spent(store, "b")) == (30, 15)
