"""What only the SQLite stores promise: durability across reopen, one thread off the event loop,
one transaction per operation (also across two connections) and per ``apply`` (group commit),
and clean failures."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
from store_helpers import T0

from aurea.stores import (
    ChargeOp,
    NewTask,
    Outcome,
    ReserveOp,
    SettleOp,
    Spend,
    StoreUnavailable,
    TaskState,
)
from aurea.stores.sqlite import (
    SqliteDatabase,
    SqliteLedgerStore,
    SqliteLimiterStore,
    SqliteRouterStatsStore,
    SqliteTaskQueueStore,
)
from aurea.stores.sqlite._schema import SCHEMA_VERSION

TTL = 30.0


async def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "aurea.db"
    async with SqliteDatabase(path) as db:
        ledger, stats = SqliteLedgerStore(db), SqliteRouterStatsStore(db)
        tasks, limiter = SqliteTaskQueueStore(db), SqliteLimiterStore(db)
        await ledger.reserve("j", "a", 400, TTL, now=T0, default_budget_nanos=1000, model="m")
        await ledger.reserve("j", "b", 300, TTL, now=T0, default_budget_nanos=1000, model="m")
        await ledger.settle("a", Spend(cost_nanos=250, output_tokens=9), now=T0 + 1)
        await stats.record("m", Outcome(success=True, latency_s=1.5), now=T0, half_life_s=60)
        await stats.set_weights({"cost": 0.25, "quality": 0.75}, now=T0)
        await tasks.enqueue(NewTask(task_id="t", kind="k", pool="p", idempotency_key="x"), now=T0)
        from aurea.stores import Quota

        q = Quota(key="k", cost=1, rate_per_s=1.0, burst=1)
        assert (await limiter.acquire([q], now=T0)).granted
        before = (await ledger.get_job("j"), await stats.all(), await tasks.get("t"))
    async with SqliteDatabase(path) as db:
        ledger, stats = SqliteLedgerStore(db), SqliteRouterStatsStore(db)
        tasks, limiter = SqliteTaskQueueStore(db), SqliteLimiterStore(db)
        assert (await ledger.get_job("j"), await stats.all(), await tasks.get("t")) == before
        assert await stats.get_weights() == {"cost": 0.25, "quality": 0.75}
        assert not (await limiter.acquire([q], now=T0)).granted
        assert not (
            await tasks.enqueue(
                NewTask(task_id="t2", kind="k", pool="p", idempotency_key="x"), now=T0
            )
        ).created
        # Start-up after a crash: the dead process's reservations return, spend stays.
        assert await ledger.expire_all(now=T0 + 1) == 1
        view = await ledger.get_job("j")
        assert view is not None and (view.spent_nanos, view.reserved_nanos) == (250, 0)


async def test_the_file_is_in_wal_mode(db: SqliteDatabase) -> None:
    mode = await db.run(lambda conn: conn.execute("PRAGMA journal_mode").fetchone()[0])
    assert mode == "wal"


async def test_operations_run_on_one_thread_that_is_not_the_loops(db: SqliteDatabase) -> None:
    names = await asyncio.gather(
        *(db.run(lambda _conn: threading.current_thread().name) for _ in range(20))
    )
    assert len(set(names)) == 1 and names[0].startswith("aurea-sqlite")
    assert names[0] != threading.current_thread().name


async def test_the_event_loop_runs_while_an_operation_blocks(db: SqliteDatabase) -> None:
    loop_ran = threading.Event()

    def slow(_conn: sqlite3.Connection) -> bool:
        return loop_ran.wait(timeout=10)  # only the event loop can set it

    op = asyncio.ensure_future(db.run(slow))
    await asyncio.sleep(0)
    loop_ran.set()
    assert await op


async def test_a_failing_operation_rolls_back_entirely(db: SqliteDatabase) -> None:
    ledger = SqliteLedgerStore(db)
    await ledger.set_budget("j", 100, now=T0)

    def half(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE ledger_jobs SET spent = 99 WHERE job_id = 'j'")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await db.run(half)
    view = await ledger.get_job("j")
    assert view is not None and view.spent_nanos == 0


async def test_one_apply_is_one_transaction_and_rolls_back_whole(db: SqliteDatabase) -> None:
    ledger = SqliteLedgerStore(db)
    before = db.commits
    await ledger.get_job("j")  # reads are not counted
    ops = [
        op
        for i in range(50)
        for op in (
            ReserveOp(
                job_id="j",
                lease_id=f"l{i}",
                amount_nanos=10,
                ttl_s=TTL,
                now=T0,
                default_budget_nanos=None,
            ),
            SettleOp(lease_id=f"l{i}", spend=Spend(cost_nanos=4), now=T0),
            ChargeOp(job_id="j", spend=Spend(cost_nanos=1), now=T0, default_budget_nanos=None),
        )
    ]
    assert len(await ledger.apply(ops)) == 150
    assert db.commits - before == 1
    view = await ledger.get_job("j")
    assert view is not None and (view.spent_nanos, view.reserved_nanos) == (250, 0)
    # A failure inside the transaction (here a trigger, at the last write) undoes every step.
    await db.run(
        lambda conn: conn.execute(
            "CREATE TEMP TRIGGER boom BEFORE INSERT ON main.ledger_buckets "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    )
    fresh = ReserveOp(
        job_id="j", lease_id="new", amount_nanos=10, ttl_s=TTL, now=T0, default_budget_nanos=None
    )
    later = ChargeOp(job_id="j", spend=Spend(cost_nanos=1), now=T0 + 7200, default_budget_nanos=0)
    with pytest.raises(sqlite3.Error):
        await ledger.apply([fresh, ops[2], later])
    assert await ledger.get_lease("new") is None
    view = await ledger.get_job("j")
    assert view is not None and (view.spent_nanos, view.active_leases) == (250, 0)
    assert db.commits - before == 2  # the apply and the trigger's creation


async def test_a_cancelled_caller_leaves_no_half_operation(db: SqliteDatabase) -> None:
    ledger = SqliteLedgerStore(db)
    gate = threading.Event()
    blocker = asyncio.ensure_future(db.run(lambda _conn: gate.wait(timeout=10)))
    await asyncio.sleep(0)
    queued = asyncio.ensure_future(
        ledger.reserve("j", "a", 10, TTL, now=T0, default_budget_nanos=100)
    )
    await asyncio.sleep(0)
    queued.cancel()  # cancelled while waiting its turn behind the blocker: it never runs
    with pytest.raises(asyncio.CancelledError):
        await queued
    gate.set()
    assert await blocker
    assert await ledger.get_lease("a") is None and await ledger.get_job("j") is None
    # Cancelled once it runs, an operation still commits whole; a release sent after it
    # runs after it (one thread, submission order), so nothing stays reserved.
    running = asyncio.ensure_future(
        ledger.reserve("j", "b", 10, TTL, now=T0, default_budget_nanos=100)
    )
    release = asyncio.ensure_future(ledger.release("b", now=T0))
    running.cancel()
    await asyncio.gather(running, release, return_exceptions=True)
    view = await ledger.get_job("j")
    assert view is None or (view.reserved_nanos, view.active_leases) == (0, 0)


async def test_two_connections_on_one_file_never_overspend(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with SqliteDatabase(path) as one, SqliteDatabase(path, busy_timeout_s=30) as two:
        stores = [SqliteLedgerStore(one), SqliteLedgerStore(two)]
        await stores[0].set_budget("j", 1_000, now=T0)
        results = await asyncio.gather(
            *(
                stores[i % 2].reserve("j", f"l{i}", 9, TTL, now=T0, default_budget_nanos=0)
                for i in range(300)
            )
        )
        assert sum(r.granted for r in results) == 1_000 // 9
        view = await stores[1].get_job("j")
        assert view is not None and view.reserved_nanos == 9 * (1_000 // 9)


async def test_a_closed_database_refuses_work(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "x.db")
    ledger = SqliteLedgerStore(db)
    await db.close()
    await db.close()  # idempotent
    with pytest.raises(StoreUnavailable):
        await ledger.get_job("j")
    with pytest.raises(StoreUnavailable):
        await db.start()


async def test_close_finishes_queued_operations(tmp_path: Path) -> None:
    db = await SqliteDatabase.open(tmp_path / "x.db")
    tasks = SqliteTaskQueueStore(db)
    pending = [
        asyncio.ensure_future(tasks.enqueue(NewTask(task_id=f"t{i}", kind="k", pool="p"), now=T0))
        for i in range(20)
    ]
    await asyncio.sleep(0)
    await db.close()
    assert all(e.created for e in await asyncio.gather(*pending))
    async with SqliteDatabase(tmp_path / "x.db") as again:
        assert len((await SqliteTaskQueueStore(again).list_tasks()).items) == 20


async def test_a_file_that_is_not_a_database_is_a_clean_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreUnavailable, match=r"junk\.db"):
        await SqliteDatabase.open(path)


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "new.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreUnavailable, match="newer"):
        await SqliteDatabase.open(path)


async def test_tasks_keep_their_state_names_on_disk(db: SqliteDatabase) -> None:
    tasks = SqliteTaskQueueStore(db)
    await tasks.enqueue(NewTask(task_id="t", kind="k", pool="p"), now=T0)
    raw = await db.run(lambda conn: conn.execute("SELECT state FROM tasks").fetchone()[0])
    assert raw == TaskState.QUEUED.value == "queued"
