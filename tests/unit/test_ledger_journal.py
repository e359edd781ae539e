"""The ledger's journal: operations applied in order, runs of them in one store call (group
commit), a failing store retried whole, and a bad operation dropped alone."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from aurea.ledger._journal import Journal, Op
from aurea.stores import ChargeOp, LedgerOp, LedgerResult, Spend, StoreUnavailable
from aurea.stores.memory import MemoryLedgerStore

T0 = 1_700_000_000.0


class CountingStore(MemoryLedgerStore):
    def __init__(self, failures: int = 0) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.failures = failures

    async def apply(self, ops: Sequence[LedgerOp]) -> tuple[LedgerResult, ...]:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("database is locked")
        results = await super().apply(ops)
        self.batches.append(len(ops))
        return results


def _charge(cost: int, job: str = "j") -> Op:
    fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    op = ChargeOp(job_id=job, spend=Spend(cost_nanos=cost), now=T0, default_budget_nanos=None)
    return Op("charge", item=op, future=fut)


async def _no_sleep(_s: float) -> None:
    await asyncio.sleep(0)


async def test_runs_of_items_share_a_store_call_and_reads_stand_alone() -> None:
    store = CountingStore()
    journal = Journal(apply=store.apply, max_batch=4)
    ops = [_charge(1) for _ in range(6)]
    read = journal.call("get_job", lambda: store.get_job("j"))
    for op in ops:
        journal.append(op)
    late = journal.call("get_job", lambda: store.get_job("j"))
    journal.append(after := _charge(10))
    journal.start()
    try:
        assert await read is None  # before every charge
        assert (await late).spent_nanos == 6  # after the six, before the last
        await asyncio.gather(*(op.future for op in [*ops, after] if op.future is not None))
        assert store.batches == [4, 2, 1]  # at most max_batch, never across a read
        assert journal.applied == 9 and journal.store_calls == 5
    finally:
        await journal.stop(1)


async def test_a_failing_store_retries_the_whole_batch() -> None:
    store = CountingStore(failures=2)
    journal = Journal(apply=store.apply, sleep=_no_sleep)
    ops = [_charge(5) for _ in range(3)]
    for op in ops:
        journal.append(op)
    journal.start()
    try:
        await asyncio.gather(*(op.future for op in ops if op.future is not None))
        assert store.batches == [3]
        assert (await store.get_job("j")).spent_nanos == 15  # type: ignore[union-attr]
    finally:
        await journal.stop(1)


async def test_a_bad_operation_is_dropped_alone() -> None:
    store = CountingStore()
    journal = Journal(apply=store.apply)
    good, bad, also = _charge(2), _charge(-1), _charge(3)
    for op in (good, bad, also):
        journal.append(op)
    journal.start()
    try:
        assert good.future is not None and bad.future is not None and also.future is not None
        assert await good.future is None and await also.future is None
        with pytest.raises(ValueError):
            await bad.future
        # The batch was refused whole, then each applied alone: only the bad one is lost.
        assert store.batches == [1, 1]
        assert (await store.get_job("j")).spent_nanos == 5  # type: ignore[union-attr]
        assert journal.applied == 3
    finally:
        await journal.stop(1)


def test_an_op_is_either_run_or_item() -> None:
    with pytest.raises(ValueError):
        Op("neither")
