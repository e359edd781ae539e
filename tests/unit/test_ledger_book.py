"""The ledger book: exact reservations decided in memory, written in the same order to the store
(memory; SQLite with spend only, the default; SQLite with a lease per reservation), so that the
store's figures equal the book's after every operation; many settles share one transaction."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from aurea.errors import BudgetExceeded
from aurea.ledger import LedgerBook
from aurea.ledger._book import Lease
from aurea.stores import LedgerOp, LedgerResult, LedgerStore, Spend, StoreUnavailable
from aurea.stores.memory import MemoryLedgerStore
from aurea.stores.sqlite import SqliteDatabase, SqliteLedgerStore

T0 = 1_700_000_000.0
TTL = 60.0


class FakeWall:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class LeasedSqlite(SqliteLedgerStore):
    """A SQLite store the book writes a lease per reservation to (``leases=True``), as it will a
    store that several processes share."""


@pytest.fixture(params=["memory", "sqlite", "sqlite_leases"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[LedgerStore]:
    if request.param == "memory":
        yield MemoryLedgerStore()
        return
    kind = LeasedSqlite if request.param == "sqlite_leases" else SqliteLedgerStore
    async with await SqliteDatabase.open(tmp_path / "ledger.db") as db:
        yield kind(db)


async def _book(store: LedgerStore, budget: int | None = 1000, **kw: Any) -> LedgerBook:
    book = LedgerBook(
        store,
        default_budget_nanos=budget,
        lease_ttl_s=TTL,
        durable=not isinstance(store, MemoryLedgerStore),
        leases=isinstance(store, LeasedSqlite),
        wall=FakeWall(),
        **kw,
    )
    await book.start()
    return book


async def _agree(book: LedgerBook, job: str) -> None:
    """After everything decided is applied, the store says what the book says: budget and
    spend always, the reservations too when the store holds them (leases), and none when the
    book keeps them in memory."""
    view = await book.get_job(job)  # flushes and waits for what is queued
    raw = await book.store.get_job(job)
    acct = book.cached(job)
    assert view is not None and acct is not None
    assert (view.budget_nanos, view.spent_nanos, view.reserved_nanos, view.active_leases) == (
        acct.budget,
        acct.spent,
        acct.reserved,
        acct.active,
    )
    if book.leases:
        assert raw is not None
        assert (raw.spent_nanos, raw.reserved_nanos, raw.active_leases) == (
            acct.spent,
            acct.reserved,
            acct.active,
        )
    elif book.durable:  # spend only, and the job from its first sight
        assert raw is not None
        assert (raw.budget_nanos, raw.spent_nanos, raw.reserved_nanos, raw.active_leases) == (
            acct.budget,
            acct.spent,
            0,
            0,
        )
    elif raw is not None:
        assert (raw.budget_nanos, raw.spent_nanos, raw.reserved_nanos) == (
            acct.budget,
            acct.spent,
            0,
        )


async def test_reserve_settle_release_in_memory_and_in_the_store(store: LedgerStore) -> None:
    book = await _book(store)
    try:
        acct = await book.account("j")
        a = book.reserve(acct, 400, "m", "p")
        b = book.reserve(acct, 500, "m", "p")
        assert (acct.reserved, acct.active) == (900, 2)
        await _agree(book, "j")
        fut = book.close(a, Spend(cost_nanos=150, input_tokens=10, output_tokens=5))
        if fut is not None:  # durable: resolved once the store committed the settle
            await fut
            assert (await store.get_job("j")).spent_nanos == 150  # type: ignore[union-attr]
        book.close(b, None)
        assert (acct.spent, acct.reserved, acct.active) == (150, 0, 0)
        await _agree(book, "j")
        view = await book.get_job("j")
        assert view is not None and [(t.model, t.calls, t.cost_nanos) for t in view.by_model] == [
            ("m", 1, 150)
        ]
        assert book.totals[("m", "p")].cost_nanos == 150
    finally:
        await book.stop()


async def test_refusal_changes_nothing_and_carries_the_figures(store: LedgerStore) -> None:
    book = await _book(store)
    try:
        acct = await book.account("j")
        held = book.reserve(acct, 700, "m", "p")
        with pytest.raises(BudgetExceeded) as info:
            book.reserve(acct, 301, "m", "p")
        exc = info.value
        assert (exc.job_id, exc.budget_nanos, exc.spent_nanos, exc.reserved_nanos) == (
            "j",
            1000,
            0,
            700,
        )
        # Only the call in flight stands in the way: worth retrying soon.
        assert exc.retry_after_s is not None
        assert (acct.reserved, acct.active) == (700, 1)
        rest = book.reserve(acct, 300, "m", "p")  # exactly what is left fits
        book.close(held, Spend(cost_nanos=700))
        book.close(rest, Spend(cost_nanos=300))
        with pytest.raises(BudgetExceeded) as info:
            book.reserve(acct, 1, "m", "p")
        assert info.value.retry_after_s is None  # spent, not held: retrying cannot help
        await _agree(book, "j")
    finally:
        await book.stop()


async def test_budget_zero_runs_nothing_and_unlimited_runs_anything(store: LedgerStore) -> None:
    book = await _book(store, budget=0)
    try:
        acct = await book.account("zero")
        with pytest.raises(BudgetExceeded):
            book.reserve(acct, 0, "free", "p")  # even a free call: no spend allowed
        view = await book.set_budget("open", None)
        assert view.budget_nanos is None
        big = book.reserve(book.cached("open") or await book.account("open"), 10**15, "m", "p")
        book.close(big, Spend(cost_nanos=10**15))
        await _agree(book, "open")
    finally:
        await book.stop()


async def test_extend_grows_by_what_fits_or_not_at_all(store: LedgerStore) -> None:
    book = await _book(store)
    try:
        acct = await book.account("j")
        lease = book.reserve(acct, 500, "m", "p")
        other = book.reserve(acct, 300, "m", "p")
        assert book.extend(lease, 100, 150) == 150
        assert book.extend(lease, 10, 500) == 50  # only 50 left: capped at what fits
        assert book.extend(lease, 1, 1) == 0  # nothing left
        assert (lease.amount, acct.reserved) == (700, 1000)
        await _agree(book, "j")
        book.close(lease, Spend(cost_nanos=700))
        book.close(other, None)
        await _agree(book, "j")
        assert acct.spent == 700 and acct.reserved == 0
    finally:
        await book.stop()


async def test_lowered_budget_keeps_calls_in_flight_and_refuses_the_next(
    store: LedgerStore,
) -> None:
    book = await _book(store)
    try:
        acct = await book.account("j")
        lease = book.reserve(acct, 600, "m", "p")
        view = await book.set_budget("j", 100)
        assert (view.budget_nanos, view.reserved_nanos) == (100, 600)
        with pytest.raises(BudgetExceeded):
            book.reserve(acct, 1, "m", "p")
        book.close(lease, Spend(cost_nanos=50))
        await _agree(book, "j")
        # spent 50 of the new 100: 50 may be reserved again
        book.close(book.reserve(acct, 50, "m", "p"), None)
        await _agree(book, "j")
    finally:
        await book.stop()


async def test_random_operations_never_overspend_and_the_store_agrees(store: LedgerStore) -> None:
    rng = random.Random(7)
    book = await _book(store, budget=50_000)
    try:
        acct = await book.account("j")
        open_leases: list[Lease] = []
        for step in range(600):
            r = rng.random()
            if r < 0.45:
                with contextlib.suppress(BudgetExceeded):
                    open_leases.append(book.reserve(acct, rng.randrange(0, 3000), "m", "p"))
            elif r < 0.6 and open_leases:
                lease = rng.choice(open_leases)
                need = rng.randrange(1, 500)
                book.extend(lease, need, need * 2)
            elif open_leases:
                lease = open_leases.pop(rng.randrange(len(open_leases)))
                if rng.random() < 0.3:
                    book.close(lease, None)
                else:
                    book.close(lease, Spend(cost_nanos=rng.randrange(0, lease.amount + 1)))
            assert acct.budget is not None
            assert acct.spent + acct.reserved <= acct.budget
            if step % 50 == 0:
                await _agree(book, "j")
        for lease in open_leases:
            book.close(lease, Spend(cost_nanos=lease.amount))
        await _agree(book, "j")
        assert acct.reserved == 0 and acct.spent <= 50_000
    finally:
        await book.stop()


async def test_start_returns_a_dead_process_reservations(store: LedgerStore) -> None:
    await store.reserve("j", "dead-1", 400, TTL, now=T0, default_budget_nanos=1000)
    await store.reserve("j", "dead-2", 100, TTL, now=T0, default_budget_nanos=1000)
    await store.settle("dead-2", Spend(cost_nanos=80), now=T0)
    book = await _book(store)
    try:
        assert book.expired_at_start == 1
        acct = await book.account("j")
        assert (acct.spent, acct.reserved) == (80, 0)
        book.close(book.reserve(acct, 920, "m", "p"), None)  # all that was not spent
    finally:
        await book.stop()


async def test_one_load_per_job_however_many_callers(store: LedgerStore) -> None:
    book = await _book(store)
    try:
        before = book.journal.applied
        accounts = await asyncio.gather(*(book.account("j") for _ in range(50)))
        assert all(a is accounts[0] for a in accounts)
        assert await book.journal.drain(5)
        # The load, and for a spend-only durable store the new job's row.
        opened = book.durable and not book.leases
        assert book.journal.applied - before == 1 + opened
    finally:
        await book.stop()


async def test_only_idle_jobs_are_forgotten_and_reloads_are_exact(store: LedgerStore) -> None:
    book = await _book(store, max_accounts=2)
    try:
        busy = await book.account("busy")
        lease = book.reserve(busy, 100, "m", "p")
        for job in ("a", "b", "c"):
            acct = await book.account(job)
            book.close(book.reserve(acct, 10, "m", "p"), Spend(cost_nanos=7))
        assert book.cached("busy") is busy  # a job with a call in flight is kept
        assert book.cached("a") is None
        again = await book.account("a")  # read back after its settle was applied
        assert again.spent == 7
        book.close(lease, None)
    finally:
        await book.stop()


class FlakyStore(MemoryLedgerStore):
    """Fails its first ``failures`` writes with StoreUnavailable (a locked database); records
    the operations it applied."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures
        self.ops: list[str] = []
        self.calls = 0

    async def apply(self, ops: Sequence[LedgerOp]) -> tuple[LedgerResult, ...]:
        if self.failures:
            self.failures -= 1
            raise StoreUnavailable("database is locked")
        results = await super().apply(ops)
        self.calls += 1
        self.ops += [type(op).__name__ for op in ops]
        return results


@pytest.mark.parametrize("leases", [False, True])
async def test_a_failing_store_is_retried_in_order_and_loses_nothing(leases: bool) -> None:
    store = FlakyStore(failures=0)
    book = LedgerBook(
        store, default_budget_nanos=1000, lease_ttl_s=TTL, durable=True, leases=leases
    )
    await book.start()
    try:
        acct = await book.account("j")
        assert await book.journal.drain(5)
        store.failures, store.ops = 3, []
        lease = book.reserve(acct, 500, "m", "p")
        fut = book.close(lease, Spend(cost_nanos=120))
        assert fut is not None
        await asyncio.wait_for(fut, 10)
        assert store.ops == (["ReserveOp", "SettleOp"] if leases else ["ChargeOp"])
        assert store.failures == 0
        await _agree(book, "j")
        assert acct.spent == 120
    finally:
        await book.stop()


@pytest.mark.parametrize("leases", [False, True])
async def test_a_store_that_falls_behind_stops_new_reservations(leases: bool) -> None:
    store = FlakyStore(failures=0)
    book = LedgerBook(
        store,
        default_budget_nanos=None,
        lease_ttl_s=TTL,
        durable=True,
        leases=leases,
        max_backlog=3,
    )
    await book.start()
    settles: list[asyncio.Future[Any]] = []
    try:
        acct = await book.account("j")
        assert await book.journal.drain(5)
        store.failures = 10**9  # never answers again
        while book.journal.backlog < 3:
            fut = book.close(book.reserve(acct, 1, "m", "p"), Spend(cost_nanos=1))
            assert fut is not None
            settles.append(fut)
        with pytest.raises(StoreUnavailable):
            book.reserve(acct, 1, "m", "p")
    finally:
        await book.stop(grace_s=0)
    # Their callers are told: the store never committed them.
    for result in await asyncio.gather(*settles, return_exceptions=True):
        assert isinstance(result, StoreUnavailable)


async def test_concurrent_settles_share_transactions(tmp_path: Path) -> None:
    """Group commit: settles queued while the store works go to it together, one transaction
    for many (counted by the database, not timed), and each is awaited until its own commit."""
    async with await SqliteDatabase.open(tmp_path / "ledger.db") as db:
        store = SqliteLedgerStore(db)
        book = LedgerBook(
            store, default_budget_nanos=None, lease_ttl_s=TTL, durable=True, max_batch=8
        )
        await book.start()
        try:
            acct = await book.account("j")
            assert await book.journal.drain(5)
            # 50 calls end at once: 7 transactions (batches of at most 8), not 50.
            before = db.commits
            leases = [book.reserve(acct, 10, "m", "p") for _ in range(50)]
            futs = [book.close(lease, Spend(cost_nanos=3)) for lease in leases]
            assert db.commits == before  # nothing written before the calls end, or per reserve
            for fut in futs:
                assert fut is not None
                await fut
                # Resolved only once committed: the store already has it.
                assert db.commits > before
            assert db.commits - before == 7
            assert (await store.get_job("j")).spent_nanos == 150  # type: ignore[union-attr]

            # Calls that end at different moments, 16 at a time: fewer transactions than calls.
            n = 200
            before = db.commits
            sem = asyncio.Semaphore(16)
            rng = random.Random(3)

            async def call() -> None:
                async with sem:
                    lease = book.reserve(acct, 10, "m", "p")
                    for _ in range(rng.randrange(3)):
                        await asyncio.sleep(0)
                    fut = book.close(lease, Spend(cost_nanos=1))
                    assert fut is not None
                    await fut

            await asyncio.gather(*(call() for _ in range(n)))
            assert db.commits - before < n
            await _agree(book, "j")
            assert acct.spent == 150 + n
        finally:
            await book.stop()


async def test_leases_are_renewed_before_the_store_expires_them(store: LedgerStore) -> None:
    clock = [0.0]
    wall = FakeWall()
    book = LedgerBook(
        store,
        default_budget_nanos=1000,
        lease_ttl_s=TTL,
        durable=not isinstance(store, MemoryLedgerStore),
        leases=isinstance(store, LeasedSqlite),
        wall=wall,
        clock=lambda: clock[0],
    )
    await book.start()
    try:
        acct = await book.account("j")
        lease = book.reserve(acct, 300, "m", "p")
        clock[0] = TTL * 0.6
        wall.now = T0 + TTL * 0.6
        if not book.leases:  # the store holds no leases: nothing to renew
            assert book.renew_due() == 0
            book.close(lease, None)
            return
        assert book.renew_due() == 1
        assert book.renew_due() == 0  # renewed just now
        wall.now = T0 + TTL * 1.2  # past the first expiry, before the renewed one
        assert await book.journal.drain(5)
        assert await store.expire(now=wall.now) == 0
        await _agree(book, "j")
        book.close(lease, None)
    finally:
        await book.stop()


async def test_a_memory_store_gets_sums_not_a_lease_per_attempt() -> None:
    store = MemoryLedgerStore()
    wall = FakeWall()
    wall.now = 3600 * 500_000 + 3500.0  # 100 s before an hour ends
    book = LedgerBook(store, default_budget_nanos=10**6, lease_ttl_s=TTL, durable=False, wall=wall)
    await book.start()
    try:
        acct = await book.account("j")
        before = book.journal.applied
        for i in range(300):
            if i == 150:
                wall.now += 200  # the next hour
            lease = book.reserve(acct, 100, "m", "p")
            book.close(lease, Spend(cost_nanos=7, input_tokens=2, output_tokens=3))
        assert book.journal.applied == before  # nothing written per attempt
        view = await book.get_job("j")
        assert view is not None and view.spent_nanos == 2100 and view.reserved_nanos == 0
        assert [
            (t.calls, t.input_tokens, t.output_tokens, t.cost_nanos) for t in view.by_model
        ] == [(300, 600, 900, 2100)]
        assert book.journal.applied - before <= 4  # two sums (one per hour) and the read
        first = await book.summary(since=wall.now - 300, until=wall.now - 150)
        assert first.total.calls == 150  # the first hour only: each sum settled in its hour
    finally:
        await book.stop()


async def test_sums_are_recorded_even_after_the_budget_was_cut_below_the_spend() -> None:
    store = MemoryLedgerStore()
    book = LedgerBook(store, default_budget_nanos=1000, lease_ttl_s=TTL, durable=False)
    await book.start()
    try:
        acct = await book.account("j")
        book.close(book.reserve(acct, 500, "m", "p"), Spend(cost_nanos=400))
        await book.get_job("j")  # written
        lease = book.reserve(acct, 100, "m", "p")
        await book.set_budget("j", 300)  # now below what was spent
        book.close(lease, Spend(cost_nanos=60))
        view = await book.get_job("j")
        assert view is not None
        assert (view.budget_nanos, view.spent_nanos) == (300, 460)
        assert view.by_model[0].calls == 2
    finally:
        await book.stop()
