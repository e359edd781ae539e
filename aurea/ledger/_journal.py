"""The ledger's ordered line to its store: every store operation, in the order the ledger decided
it, applied one at a time by one writer task.

Why one ordered writer: the ledger decides reservations in memory (``_book``), and the store must
see the same operations in the same order, so that its figures equal the ledger's after each one
(a reserve that the ledger granted can then never be refused by the store). Hot-path callers
only append to a deque; those that need durability (a settle, before its call's final answer
goes out) await the operation's future, which the writer resolves once the store committed it.

A failing store (``StoreUnavailable``: disk full, database locked) is retried in place with
backoff, so nothing is lost or reordered while the process lives; meanwhile ``backlog`` grows,
and the book refuses new reservations above ``max_backlog`` rather than hold unbounded work.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from aurea.stores import StoreUnavailable

__all__ = ["Journal", "Op"]

log = structlog.get_logger("aurea.ledger")

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 2.0


class Op:
    """One store operation: ``run`` performs it; ``then`` (optional) sees its result in the
    writer, before anything queued after it runs; ``future`` (optional) is resolved with it."""

    __slots__ = ("future", "name", "run", "then")

    def __init__(
        self,
        name: str,
        run: Callable[[], Awaitable[Any]],
        then: Callable[[Any], None] | None = None,
        future: asyncio.Future[Any] | None = None,
    ) -> None:
        self.name = name
        self.run = run
        self.then = then
        self.future = future


class Journal:
    """The queue and its writer task; ``start``/``stop`` are idempotent."""

    def __init__(
        self,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._queue: collections.deque[Op] = collections.deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sleep = sleep
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.failing_since: float | None = None  # monotonic; None while the store answers
        self.applied = 0  # operations the store committed (or refused as bad arguments)

    @property
    def backlog(self) -> int:
        return len(self._queue)

    def append(self, op: Op) -> None:
        """Queue ``op`` after everything queued before it (synchronous: no await, no switch)."""
        self._queue.append(op)
        self._idle.clear()
        self._wake.set()

    def call(self, name: str, run: Callable[[], Awaitable[Any]]) -> asyncio.Future[Any]:
        """Queue ``run`` and return a future of its result (for reads and admin writes)."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.append(Op(name, run, future=fut))
        return fut

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._write(), name="ledger-journal"
            )

    async def drain(self, timeout_s: float) -> bool:
        """Wait until everything queued so far is applied; False if ``timeout_s`` passed first."""
        try:
            async with asyncio.timeout(timeout_s):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self, grace_s: float) -> None:
        """Apply what is queued (within ``grace_s``), then stop the writer."""
        task, self._task = self._task, None
        if task is None:
            return
        if not await self.drain(grace_s):
            log.error("ledger_journal_abandoned", backlog=len(self._queue))
        task.cancel()
        await asyncio.wait([task])
        for op in self._queue:  # only after a failed drain: tell the waiters
            if op.future is not None and not op.future.done():
                op.future.set_exception(
                    StoreUnavailable("the ledger stopped before its store answered")
                )
        self._queue.clear()
        self._idle.set()

    async def _write(self) -> None:
        queue = self._queue
        while True:
            if not queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            op = queue[0]
            try:
                result = await op.run()
            except StoreUnavailable as exc:
                # Retry in place: what follows must not overtake it.
                if self.failing_since is None:
                    self.failing_since = self._clock()
                    log.error("ledger_store_unavailable", op=op.name, error=exc.message)
                await self._sleep(self._retry_delay_s())
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                # A bad argument or a bug: retrying cannot help; the ledger's own state stays
                # right, the store misses this one operation, and the log says which.
                queue.popleft()
                self.applied += 1
                log.error("ledger_store_op_failed", op=op.name, error=repr(exc), exc_info=exc)
                if op.future is not None and not op.future.done():
                    op.future.set_exception(exc)
                continue
            queue.popleft()
            self.applied += 1
            if self.failing_since is not None:
                log.info("ledger_store_recovered", op=op.name)
                self.failing_since = None
            if op.then is not None:
                try:
                    op.then(result)
                except Exception as exc:  # a bug in a continuation must not stop the writer
                    log.error("ledger_journal_then_failed", op=op.name, exc_info=exc)
            if op.future is not None and not op.future.done():
                op.future.set_result(result)

    def _retry_delay_s(self) -> float:
        since = self.failing_since
        waited = 0.0 if since is None else self._clock() - since
        return min(_RETRY_MAX_S, max(_RETRY_FIRST_S, waited / 2))
