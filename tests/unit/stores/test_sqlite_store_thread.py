"""The SQLite store thread (``SqliteDatabase``'s one thread on a queue): operations run in order,
one whose caller was cancelled before it started never runs, every outcome reaches its caller
(even one a future refuses), and close finishes what was queued."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from aurea.stores import StoreUnavailable
from aurea.stores.sqlite import SqliteDatabase

pytestmark = pytest.mark.timeout(20)


async def test_operations_run_in_order_and_a_cancelled_one_never_starts(tmp_path: Path) -> None:
    async with SqliteDatabase(tmp_path / "s.db") as db:
        gate = threading.Event()
        ran: list[int] = []
        first = asyncio.ensure_future(db.run(lambda conn: gate.wait(5)))
        await asyncio.sleep(0.01)  # the store thread is inside the first operation
        cancelled = asyncio.ensure_future(db.run(lambda conn: ran.append(1)))
        later = [asyncio.ensure_future(db.run(lambda conn, i=i: ran.append(i))) for i in (2, 3)]
        await asyncio.sleep(0)
        cancelled.cancel()
        gate.set()
        assert await first is True
        await asyncio.gather(*later)
        assert ran == [2, 3]
        assert cancelled.cancelled()


async def test_every_outcome_reaches_its_caller(tmp_path: Path) -> None:
    async with SqliteDatabase(tmp_path / "s.db") as db:

        def stop(conn: sqlite3.Connection) -> None:
            next(iter(()))  # StopIteration, which an asyncio future refuses to carry

        with pytest.raises(RuntimeError, match="StopIteration"):
            await db.run(stop)

        def locked(conn: sqlite3.Connection) -> None:
            raise sqlite3.OperationalError("database is locked")

        with pytest.raises(StoreUnavailable, match="locked"):
            await db.run(locked)
        assert await db.read(lambda conn: conn.execute("SELECT 41 + 1").fetchone()[0]) == 42


async def test_close_finishes_queued_operations_then_refuses(tmp_path: Path) -> None:
    before = _store_threads()
    db = await SqliteDatabase.open(tmp_path / "s.db")
    assert _store_threads() == before + 1
    ran: list[int] = []
    queued = [asyncio.ensure_future(db.run(lambda conn, i=i: ran.append(i))) for i in range(5)]
    await asyncio.sleep(0)
    await db.close()
    await asyncio.gather(*queued)
    assert ran == [0, 1, 2, 3, 4]
    assert _store_threads() == before  # the thread stopped
    with pytest.raises(StoreUnavailable):
        await db.run(lambda conn: None)


def _store_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == "aurea-sqlite" and t.is_alive())
