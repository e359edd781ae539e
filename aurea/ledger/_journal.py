"""The ledger's ordered line to its store: every store operation, in the order the ledger decided
it, applied by one writer task, many at a time (group commit).

Why one ordered writer: the ledger decides reservations in memory (``_book``), and the store must
see the same operations in the same order, so that its figures equal the ledger's after each one
(a reserve that the ledger granted can then never be refused by the store). Hot-path callers
only append to a deque; those that need durability (a settle, before its call's final answer
goes out) await the operation's future, which the writer resolves once the store committed it.

**Group commit.** An operation given as a value (``Op.item``, a ``LedgerOp``) can share a store
call with its neighbours: the writer takes every such operation queued at the head, up to
``max_batch``, and hands them to ``LedgerStore.apply``, one transaction for all of them. While
one transaction runs, the calls that end meanwhile queue their settles, and the next
transaction takes them all: N calls ending together cost one commit, not N, and a settle's
future still resolves only once its own transaction committed. Other operations (reads, loads,
admin writes: ``Op.run``) run alone, in their place in the order.

A failing store (``StoreUnavailable``: disk full, database locked) is retried in place with
backoff (a batch is one transaction, rolled back whole, so retried whole), so nothing is lost or
reordered while the process lives; meanwhile ``backlog`` grows, and the book refuses new
reservations above ``max_backlog`` rather than hold unbounded work. Any other failure of a batch
(a bad argument: the store applied none of it) is retried one operation at a time, so that only
the bad operation is dropped.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import structlog

from aurea.stores import LedgerOp, LedgerResult, StoreUnavailable

__all__ = ["DEFAULT_MAX_BATCH", "Apply", "Journal", "Op"]

log = structlog.get_logger("aurea.ledger")

_RETRY_FIRST_S = 0.05
_RETRY_MAX_S = 2.0

DEFAULT_MAX_BATCH = 256
"""The most operations one transaction carries: bounds a transaction's time (so a read queued
behind a burst waits for a few, not for all) and the memory one store call holds."""

Apply = Callable[[Sequence[LedgerOp]], Awaitable[Sequence[LedgerResult]]]


class Op:
    """One store operation: either ``item`` (a ``LedgerOp``, applied with its neighbours in one
    transaction) or ``run`` (performs it alone). ``then`` (optional) sees its result in the
    writer, before anything queued after it runs; ``future`` (optional) is resolved with it."""

    __slots__ = ("future", "item", "name", "run", "then")

    def __init__(
        self,
        name: str,
        run: Callable[[], Awaitable[Any]] | None = None,
        then: Callable[[Any], None] | None = None,
        future: asyncio.Future[Any] | None = None,
        *,
        item: LedgerOp | None = None,
    ) -> None:
        if (run is None) == (item is None):
            raise ValueError("an Op has either run or item")
        self.name = name
        self.run = run
        self.item = item
        self.then = then
        self.future = future


class Journal:
    """The queue and its writer task; ``start``/``stop`` are idempotent.

    ``apply`` is the store's ``LedgerStore.apply``, needed only for operations given as items.
    """

    def __init__(
        self,
        *,
        apply: Apply | None = None,
        max_batch: int = DEFAULT_MAX_BATCH,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._apply = apply
        self.max_batch = max_batch
        self._queue: collections.deque[Op] = collections.deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._sleep = sleep
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self.failing_since: float | None = None  # monotonic; None while the store answers
        self.applied = 0  # operations the store committed (or refused as bad arguments)
        self.store_calls = 0  # store calls that succeeded: one transaction each

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

    def _head(self, limit: int) -> list[Op]:
        """The operations the next store call carries: the head alone, or the run of items
        at the head (at most ``limit``)."""
        head = self._queue[0]
        if head.item is None or limit == 1:
            return [head]
        batch = []
        for op in itertools.islice(self._queue, limit):
            if op.item is None:
                break
            batch.append(op)
        return batch

    async def _perform(self, batch: list[Op]) -> Sequence[Any]:
        head = batch[0]
        if head.run is not None:
            return (await head.run(),)
        if self._apply is None:
            raise RuntimeError("this journal has no store to apply operations to")
        results = await self._apply([op.item for op in batch if op.item is not None])
        if len(results) != len(batch):
            raise RuntimeError(f"the store answered {len(results)} of {len(batch)} operations")
        return results

    async def _write(self) -> None:
        queue = self._queue
        alone = 0  # after a batch failed on a bad argument: its operations one at a time
        while True:
            if not queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self._head(1 if alone else self.max_batch)
            try:
                results = await self._perform(batch)
            except StoreUnavailable as exc:
                # Retry in place (a batch is one transaction, undone whole): what follows must
                # not overtake it.
                if self.failing_since is None:
                    self.failing_since = self._clock()
                    log.error("ledger_store_unavailable", op=batch[0].name, error=exc.message)
                await self._sleep(self._retry_delay_s())
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if len(batch) > 1:
                    alone = len(batch)  # none of it was applied: find the bad one
                    continue
                # A bad argument or a bug: retrying cannot help; the ledger's own state stays
                # right, the store misses this one operation, and the log says which.
                op = queue.popleft()
                alone = max(0, alone - 1)
                self.applied += 1
                log.error("ledger_store_op_failed", op=op.name, error=repr(exc), exc_info=exc)
                if op.future is not None and not op.future.done():
                    op.future.set_exception(exc)
                continue
            self.store_calls += 1
            alone = max(0, alone - len(batch))
            if self.failing_since is not None:
                log.info("ledger_store_recovered", op=batch[0].name)
                self.failing_since = None
            for op, result in zip(batch, results, strict=True):
                queue.popleft()
                self.applied += 1
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
