"""One SQLite file, one connection, one dedicated thread: the durable stores' shared engine.

Why this shape:

* **One thread.** Every statement runs on one dedicated thread, so the event loop never waits
  on disk, writes are serialized without locks, and operations run in the order they were
  submitted (a ``release`` sent after a ``reserve`` runs after it, even if the caller of the
  ``reserve`` was cancelled meanwhile). A cancelled caller's operation either never starts or runs
  to its commit; it is never half applied. The thread takes its work from a ``SimpleQueue`` and
  hands each result back with one ``call_soon_threadsafe``: about half the cost per round trip of
  ``run_in_executor`` on a ``ThreadPoolExecutor`` (its concurrent future, condition variable and
  future chaining), which every awaited ledger settle pays. The queue has no bound of its own
  (STYLE wants every buffer bounded): each submitter awaits its operation, so it holds at most
  one per waiting caller, and those are bounded where they come from (the ledger journal's
  ``max_backlog`` and group commit, the actors' mailboxes, ``server.max_concurrent_rpcs``).
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
import queue
import sqlite3
import threading
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

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
        self._thread: _StoreThread | None = None
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
        if self._thread is not None:
            return
        if self._closed:
            raise StoreUnavailable(f"sqlite store {self.path} is closed")
        self._thread = _StoreThread()
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
        thread = self._thread
        if thread is None or self._closed:
            raise StoreUnavailable(f"sqlite store {self.path} is closed")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        thread.put(fn, fut)
        try:
            return await fut
        except sqlite3.OperationalError as exc:  # locked too long, disk full, I/O error
            raise StoreUnavailable(f"sqlite store {self.path}: {exc}") from exc

    async def close(self) -> None:
        """Finish queued operations, close the connection and stop the thread (idempotent)."""
        if self._closed:
            return
        self._closed = True
        thread, self._thread = self._thread, None
        if thread is None:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def finish() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        thread.put(finish, done)
        try:
            await done
        finally:
            thread.stop()
            # The thread's queue is empty now, so this returns at once.
            await asyncio.to_thread(thread.join)

    async def __aenter__(self) -> SqliteDatabase:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _settle(fut: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    """Hand a store thread's outcome to its waiter (on the waiter's loop)."""
    if fut.done():  # the caller was cancelled meanwhile
        return
    if exc is None:
        fut.set_result(result)
    elif isinstance(exc, StopIteration):  # a future refuses it: the waiter would never wake
        err = RuntimeError(f"a store operation raised {exc!r}")
        err.__cause__ = exc
        fut.set_exception(err)
    else:
        fut.set_exception(exc)


_STOP = None
_Queue = queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None]
# Live store threads and their queues: at interpreter exit each finishes what was queued and
# stops (the hook runs before non-daemon threads are joined), as ``concurrent.futures`` does.
_live: weakref.WeakKeyDictionary[threading.Thread, _Queue] = weakref.WeakKeyDictionary()


def _stop_all() -> None:
    items = list(_live.items())
    for _, q in items:
        q.put(_STOP)
    for t, _ in items:
        t.join()


getattr(threading, "_register_atexit", lambda fn: None)(_stop_all)


class _StoreThread:
    """One thread that runs submitted functions in order and resolves each one's future on the
    future's loop. A function whose future was cancelled before it started never runs (what
    ``ThreadPoolExecutor`` did for a cancelled ``run_in_executor``); one that started runs to its
    end. Stopped by ``stop`` (after the work queued before it), or at interpreter exit, before
    non-daemon threads are joined, as ``concurrent.futures`` does."""

    __slots__ = ("_queue", "_thread")

    def __init__(self) -> None:
        self._queue: _Queue = queue.SimpleQueue()
        self._thread = threading.Thread(
            target=self._serve, name="aurea-sqlite", args=(self._queue,)
        )
        self._thread.start()
        _live[self._thread] = self._queue

    def put(self, fn: Callable[[], Any], fut: asyncio.Future[Any]) -> None:
        self._queue.put((fn, fut))

    def stop(self) -> None:
        self._queue.put(_STOP)

    def join(self) -> None:
        self._thread.join()

    @staticmethod
    def _serve(q: _Queue) -> None:
        while True:
            item = q.get()
            if item is None:
                return
            fn, fut = item
            if fut.cancelled():
                continue
            result: Any = None
            error: BaseException | None = None
            try:
                result = fn()
            except BaseException as exc:  # handed to the waiter, as run_in_executor does
                error = exc
            try:  # noqa: SIM105 (the store thread's hot path: no context manager per operation)
                fut.get_loop().call_soon_threadsafe(_settle, fut, result, error)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass
            del item, fn, fut, result, error
