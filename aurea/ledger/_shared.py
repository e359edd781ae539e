"""The ledger's multi-replica mode: several processes share one budget through a store they all
write (Redis), and none may overshoot it, yet a call makes at most one store round trip.

**Blocks.** Per job, each replica holds a *block* of the job's budget as one lease in the shared
store, and decides its calls' reservations in memory against that block, exactly as the
single-owner book decides against the whole budget (``LedgerBook``; here an account's ``budget``
is what this replica may use: its ``spent`` plus what is left of its block). So a reservation is
still a comparison and two additions, and a settle still one charge, group-committed with other
calls' charges (``ChargeWrites``): that awaited commit is the call's one round trip.

The store decides every block atomically (``apply``: one Lua script), within
``budget - spent - reserved`` of the whole job across replicas. A block is *rotated* (released
and reserved again under a new id, in one ``apply``) to grow it, to renew it, and to stop
counting twice what was spent from it; it is taken with a margin (``ahead``: a few more calls of
the size that ran out) by a background refill before it runs dry, so a call waits on the store
only when its job's block is empty or stale. A block idle for ``idle_s`` goes back to the job,
so ``reserved`` returns to 0 once no call runs.

**Why the budget is not overshot.** Every nano-dollar a replica reserves comes out of its block,
and every block is granted by the store only within what the whole job has left; a rotation
keeps at least what the replica still holds (so its calls in flight stay covered) and is
applied after the charges queued before it. A block is used only while it is surely alive in
the store: a replica renews it every quarter of the lease TTL and stops using it half a TTL
after the last renewal it sent, so it cannot spend a block that the store has expired (and
given to others) unless its wall clock and the other replicas' differ by more than half a TTL.
A replica killed with ``kill -9`` stops renewing; its block expires after the TTL and its
reservations return (any replica's tick runs the store's ``expire``). With the store down, new
reservations fail closed (``StoreUnavailable``, UNAVAILABLE) and recover when it answers.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from typing import Any

import structlog

from aurea.config import LedgerSettings
from aurea.errors import BudgetExceeded
from aurea.ledger._block_writes import BlockWrites
from aurea.ledger._blocks import BlockStore, _Block, _Consumes
from aurea.ledger._book import Account, LedgerBook
from aurea.ledger._journal import Op
from aurea.stores import (
    ChargeOp,
    ExpireOp,
    JobView,
    LedgerStore,
    Page,
    StoreUnavailable,
    WallClock,
    wall_clock,
)

__all__ = ["SharedLedgerBook", "open_shared_ledger"]

log = structlog.get_logger("aurea.ledger")

_AHEAD_CALLS = 4  # a refill takes this many more calls of the size that ran out
_TOP_UP_TRIES = 8  # rotations one call waits through while others take what they brought


class SharedLedgerBook(BlockWrites, LedgerBook):
    """A ``LedgerBook`` whose store other replicas share; see the module docstring.

    ``idle_s``: a block unused that long returns to its job."""

    def __init__(self, *args: Any, idle_s: float = 1.0, **kwargs: Any) -> None:
        kwargs["durable"] = True
        kwargs["leases"] = False
        super().__init__(*args, **kwargs)
        self.store_blocks: BlockStore = self.store  # type: ignore[assignment]
        self.idle_s = idle_s
        self._blocks: dict[str, _Block] = {}
        # Settled spend not yet sent to the store, and its sum per job; see ``_Consumes``.
        self._pending: list[tuple[ChargeOp, asyncio.Future[Any]]] = []
        self._consuming: dict[str, int] = {}
        self._flush_queued = False
        self._writes = _Consumes(self)
        self._block_ids = f"blk-{os.getpid():x}-{os.urandom(4).hex()}-"
        self._block_seq = 0
        self._consume_seq = 0  # consume batches, numbered for the store (writer: _block_ids)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tick is not None:
            return
        # Never expire_all: the active leases belong to live replicas (theirs expire by TTL).
        self.journal.start()
        self._tick = asyncio.get_running_loop().create_task(self._maintain(), name="ledger-tick")

    async def stop(self, grace_s: float = 5.0) -> None:
        # Give every block back (after the charges queued before), so other replicas need not
        # wait for it to expire.
        for job_id, block in list(self._blocks.items()):
            acct = self._accounts.get(job_id)
            if block.lease_id and acct is not None:
                self._release(acct, block)
        await super().stop(grace_s)

    async def _maintain(self) -> None:
        period = min(max(self.lease_ttl_s / 4, 0.05), 1.0)
        while True:
            await asyncio.sleep(period)
            try:
                self._tend()
            except Exception as exc:  # a bug here must not stop renewals for good
                log.error("ledger_tick_failed", exc_info=exc)

    def _tend(self) -> None:
        now = self._clock()
        quarter = self.lease_ttl_s / 4
        for job_id, block in list(self._blocks.items()):
            acct = self._accounts.get(job_id)
            if acct is None or not block.lease_id or block.pending is not None:
                continue
            if not acct.active and now - block.used_at >= self.idle_s:
                self._release(acct, block)
            elif now - block.renewed_at >= quarter:
                self._rotate(acct, block, need=0)
        # A dead replica's blocks come back once their expiry passes.
        self.journal.append(Op("expire", item=ExpireOp(now=self._wall())))
        self._evict()

    # -- accounts ------------------------------------------------------------------------------

    def _installer(self, job_id: str) -> Any:
        install = super()._installer(job_id)

        def shared(view: JobView | None) -> None:
            install(view)
            acct = self._accounts.get(job_id)
            if acct is not None:
                acct.budget = acct.spent  # no block yet: nothing may be reserved
                self._blocks.setdefault(job_id, _Block())

        return shared

    def _evict(self, keep: int | None = None) -> None:
        super()._evict(keep)
        for job_id in [j for j in self._blocks if j not in self._accounts]:
            del self._blocks[job_id]

    def _block(self, acct: Account) -> _Block:
        block = self._blocks.get(acct.job_id)
        if block is None:
            block = self._blocks[acct.job_id] = _Block()
            acct.budget = acct.spent
        return block

    # -- the hot path --------------------------------------------------------------------------

    async def ensure_room(self, acct: Account, amount: int) -> None:
        """Make sure this replica's block of the job has room for ``amount`` (at least 1), from
        the store if need be; raise ``BudgetExceeded`` when the whole job cannot cover it, or
        ``StoreUnavailable`` when the store does not answer."""
        block = self._block(acct)
        need = max(amount, 1)
        for _ in range(_TOP_UP_TRIES):
            self._fail_fast()
            room = max(acct.room() or 0, 0)
            if self._clock() < block.valid_until and room >= need:
                block.used_at = self._clock()
                if room - need < block.ahead // 2 and block.pending is None:
                    self._rotate(acct, block, need=0, grow=True)  # refill in the background
                return
            # Every waiting call adds what it lacks, so one rotation brings room for all.
            block.wanted += max(need - room, 0)
            block.ahead = max(block.ahead, need * _AHEAD_CALLS)
            if block.pending is None:
                self._rotate(acct, block, need=need)
            pending = block.pending
            assert pending is not None
            await self._store_answer(pending)
            if block.refused is not None and max(acct.room() or 0, 0) < need:
                break  # the store gave less than this call needs: the job cannot pay
        raise self._shared_refusal(acct, block, amount)

    async def account(self, job_id: str) -> Account:
        acct = self.cached(job_id)
        if acct is not None:
            return acct
        self._fail_fast()
        load = asyncio.ensure_future(super().account(job_id))
        try:
            await self._store_answer(load)
        finally:
            if not load.done():
                load.cancel()
        return load.result()

    def _fail_fast(self) -> None:
        if self.journal.failing_since is not None:
            raise StoreUnavailable(
                "the shared ledger store (Redis) is not answering; no call is admitted "
                "until it does, so no budget can be overshot",
                retry_after_s=1.0,
            )

    async def _store_answer(self, fut: asyncio.Future[Any]) -> None:
        """Wait for ``fut`` (a store operation queued in the journal), but give up with
        ``StoreUnavailable`` as soon as the store is seen failing, or after ``settle_wait_s``:
        a call must not hang on a dead store."""
        deadline = self._clock() + self.settle_wait_s
        while not fut.done():
            self._fail_fast()
            left = deadline - self._clock()
            if left <= 0:
                raise StoreUnavailable(
                    "the shared ledger store (Redis) did not answer in time", retry_after_s=1.0
                )
            await asyncio.wait({fut}, timeout=min(left, 0.05))
        if not fut.cancelled() and fut.exception() is not None:
            raise fut.exception()  # type: ignore[misc]

    def _shared_refusal(self, acct: Account, block: _Block, amount: int) -> BudgetExceeded:
        r = block.refused
        budget = r.budget_nanos if r is not None and r.budget_nanos is not None else 0
        spent = r.spent_nanos if r is not None else acct.spent
        reserved = r.reserved_nanos if r is not None else acct.reserved
        left = max(budget - spent - reserved, 0)
        return BudgetExceeded(
            f"job {acct.job_id!r} cannot pay for this call: it may cost up to {amount} "
            f"nano-dollars and {left} of its budget of {budget} remain ({spent} spent, "
            f"{reserved} reserved by calls in flight on every replica)",
            job_id=acct.job_id,
            spent_nanos=spent,
            budget_nanos=budget,
            reserved_nanos=reserved,
            retry_after_s=1.0 if reserved else None,
        )

    # -- reads and budgets ---------------------------------------------------------------------

    def _overlay(self, view: JobView) -> JobView:
        return view  # the store has every replica's blocks: its figures are the truth

    async def get_job(self, job_id: str) -> JobView | None:
        self._writes.flush()
        view: JobView | None = await self.journal.call(
            "get_job", lambda: self.store.get_job(job_id)
        )
        return view

    async def list_jobs(self, *, prefix: str, after: str | None, limit: int) -> Page[JobView]:
        page: Page[JobView] = await self.journal.call(
            "list_jobs", lambda: self.store.list_jobs(prefix=prefix, after=after, limit=limit)
        )
        return page

    async def set_budget(self, job_id: str, budget_nanos: int | None) -> JobView:
        """Set the job's budget in the store; blocks held keep what they hold (like calls in
        flight), and the next rotation is decided against the new budget."""
        view: JobView = await self.journal.call(
            "set_budget",
            lambda: self.store.set_budget(job_id, budget_nanos, now=self._wall()),
        )
        return view


async def open_shared_ledger(
    settings: LedgerSettings,
    store: LedgerStore,
    *,
    settle_wait_s: float = 5.0,
    idle_s: float = 1.0,
    wall: WallClock = wall_clock,
    clock: Callable[[], float] = time.monotonic,
) -> SharedLedgerBook:
    """The started book on a store other replicas share (Redis); ``stop`` gives its blocks
    back (the store's connection is its owner's to close)."""
    book = SharedLedgerBook(
        store,
        default_budget_nanos=settings.default_job_budget_nanos,
        lease_ttl_s=settings.lease_ttl_s,
        settle_wait_s=settle_wait_s,
        idle_s=idle_s,
        wall=wall,
        clock=clock,
    )
    await book.start()
    return book
