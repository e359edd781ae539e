"""One SQLite file, one connection, one dedicated thread: the durable stores' shared engine.

Why this shape:

* **One thread.** Every statement runs on a single-thread executor, so the event loop never waits
  on disk, writes are serialized without locks, and operations run in the order they were
  submitted (a ``release`` sent after a ``reserve`` runs after it, even if the caller of the
  ``reserve`` was cancelled meanwhile). A cancelled caller's operation either never starts or runs
  to its commit; it is never half applied.
* **One transaction per operation.** ``run`` wraps each store operation in ``BEGIN IMMEDIATE`` …
  ``COMMIT``, so each is atomic and isolated even against another process on the same file. A
  store may put many operations in one ``run`` (the ledger's ``apply``: group commit, one WAL
  commit for many calls); ``commits`` counts the write transactions.
* **WAL, synchronous=NORMAL** by default: a committed transaction survives ``kill -9`` of the
  process (the WAL is in the OS page cache); only an OS crash or power loss may lose the last
  commits. ``synchronous="FULL"`` fsyncs every commit and survives those too, at a cost per write.
* **stdlib ``sqlite3``, not aiosqlite.** aiosqlite is not a dependency and would add little: it also
  runs one thread per connection, but each statement is its own await, so an operation's
  read-decide-write would span several loop round trips. Here a whole operation (``BEGIN
  IMMEDIATE``, reads, writes, ``COMMIT``) is one plain function run in one hop.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal, TypeVar

from aurea.stores._common import StoreUnavailable
from aurea.stores.sqlite._schema import migrate

__all__ = ["SqliteDatabase"]

T = TypeVar("T")

Synchronous = Literal["NORMAL", "FULL"]

_MIN_SQLITE = (3, 35, 0)
_WRITE = "BEGIN IMMEDIATE"


class SqliteDatabase:
    """The file every SQLite store shares; open with ``await SqliteDatabase.open(path)``.

    ``async with`` closes it; ``close`` is idempotent and waits for queued operations to finish.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout_s: float = 5.0,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        self.path = Path(path)
        self._synchronous = synchronous
        self._busy_timeout_s = busy_timeout_s
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        # Write transactions committed (``run``), counted in the store thread: what group
        # commit saves shows here, for tests and benchmarks, whatever the machine's speed.
        self.commits = 0

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        synchronous: Synchronous = "NORMAL",
        busy_timeout_s: float = 5.0,
    ) -> SqliteDatabase:
        db = cls(path, synchronous=synchronous, busy_timeout_s=busy_timeout_s)
        await db.start()
        return db

    async def start(self) -> None:
        """Connect (in the store thread), switch to WAL and bring the schema up to date."""
        if self._executor is not None:
            return
        if self._closed:
            raise StoreUnavailable(f"sqlite store {self.path} is closed")
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aurea-sqlite")
        try:
            await self._submit(self._connect)
        except sqlite3.DatabaseError as exc:  # not a database, newer schema, unreadable file
            await self.close()
            raise StoreUnavailable(f"sqlite store {self.path}: {exc}") from exc
        except BaseException:
            await self.close()
            raise

    def _connect(self) -> None:
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise sqlite3.DatabaseError(
                f"SQLite {sqlite3.sqlite_version} is too old: the stores need 3.35 or later "
                "(RETURNING, UPDATE FROM, ON CONFLICT without a target)"
            )
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout_s, isolation_level=None, check_same_thread=True
        )
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def run(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``op(conn)`` in the store thread inside one write transaction; return its value.

        ``op`` must not touch the event loop. Any exception rolls the whole transaction back.
        """
        return await self._submit(lambda: self._transaction(op, _WRITE))

    async def read(self, op: Callable[[sqlite3.Connection], T]) -> T:
        """Like ``run`` but in a read transaction: one consistent snapshot, no write lock."""
        return await self._submit(lambda: self._transaction(op, "BEGIN DEFERRED"))

    def _transaction(self, op: Callable[[sqlite3.Connection], T], begin: str) -> T:
        conn = self._conn
        if conn is None:
            raise StoreUnavailable(f"sqlite store {self.path} is closed")
        conn.execute(begin)
        try:
            result = op(conn)
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
        if begin == _WRITE:
            self.commits += 1
        return result

    async def _submit(self, fn: Callable[[], T]) -> T:
        executor = self._executor
        if executor is None or self._closed:
            raise StoreUnavailable(f"sqlite store {self.path} is closed")
        try:
            return await asyncio.get_running_loop().run_in_executor(executor, fn)
        except sqlite3.OperationalError as exc:  # locked too long, disk full, I/O error
            raise StoreUnavailable(f"sqlite store {self.path}: {exc}") from exc

    async def close(self) -> None:
        """Finish queued operations, close the connection and stop the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        executor, self._executor = self._executor, None
        if executor is None:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finish() -> None:
            try:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
            finally:
                loop.call_soon_threadsafe(_resolve, done)

        executor.submit(finish)
        await done
        # The queue is empty now, so this returns at once; shutdown(wait=False) would leave the
        # thread to the interpreter's exit hook.
        await asyncio.to_thread(executor.shutdown, wait=True)

    async def __aenter__(self) -> SqliteDatabase:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _resolve(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
