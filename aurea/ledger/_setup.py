"""Opening the ledger a server runs with: its store (``[ledger] store``: ``sqlite``, the durable
default, or ``memory``) and the book on it, started.

The SQLite file is this process's alone, so the book writes it spend only (one charge per
attempt, many attempts per transaction), not a lease per reservation (see ``_writes``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from aurea.config import ConfigError, LedgerSettings
from aurea.ledger._book import LedgerBook
from aurea.paths import default_db_path
from aurea.stores import StoreUnavailable, WallClock, wall_clock
from aurea.stores.memory import MemoryLedgerStore
from aurea.stores.sqlite import SqliteDatabase, SqliteLedgerStore

__all__ = ["default_db_path", "open_ledger"]


async def open_ledger(
    settings: LedgerSettings,
    *,
    settle_wait_s: float = 5.0,
    wall: WallClock = wall_clock,
    clock: Callable[[], float] = time.monotonic,
) -> LedgerBook:
    """The started book on the configured store; ``await book.stop()`` closes both."""
    closer = None
    if settings.store == "memory":
        store: MemoryLedgerStore | SqliteLedgerStore = MemoryLedgerStore()
    else:
        path = Path(settings.sqlite_path) if settings.sqlite_path else default_db_path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = await SqliteDatabase.open(path)
        except (OSError, StoreUnavailable) as exc:
            raise ConfigError("ledger.sqlite_path", f"cannot open {path}: {exc}") from exc
        store = SqliteLedgerStore(db)
        closer = db.close
    book = LedgerBook(
        store,
        default_budget_nanos=settings.default_job_budget_nanos,
        lease_ttl_s=settings.lease_ttl_s,
        durable=settings.store != "memory",
        settle_wait_s=settle_wait_s,
        wall=wall,
        clock=clock,
        on_stop=closer,
    )
    try:
        await book.start()
    except BaseException:
        await book.stop(grace_s=0)
        raise
    return book
