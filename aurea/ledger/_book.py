"""The ledger's book: each job's budget, spend and reservations, decided in memory and written,
in the same order, to the ledger store.

**Why decide in memory.** This process owns its store (memory, or a SQLite file that one process
serves; replicas share budgets through Redis, a later issue, where blocks of budget are leased
instead). So the book can hold every job it has touched exactly (budget, spent, reserved), and a
reservation is one comparison and two additions in the caller's task: no mailbox hop, and no store
round trip before the upstream call. What the store must know goes to it through ``Journal``, in
the order the book decided it, so the store's figures equal the book's after each operation and
the store never refuses what the book granted. A call's one store round trip is the settle it
awaits at its end (for a durable store), so the spend of every answer a client received has been
committed: a ``kill -9`` loses only calls still in flight, whose reservations are never counted
as spent. The journal commits the settles of many calls together (group commit).

**What is written** (``_writes``): for a durable store this process owns (SQLite, the default),
only spend, one charge per attempt, since reservations would be returned at the next start
anyway; with ``leases=True`` (a store shared by several processes) every reservation as a
lease too, renewed while its call runs, which ``expire_all`` returns at the next start; for the
in-memory store, sums of spend, not awaited.

**Exactness.** ``reserve`` refuses unless ``budget - spent - reserved >= amount`` (and at least a
nano-dollar is left: a job with nothing left runs nothing, even on a free model); ``extend`` grows
a lease only by what fits; ``close`` charges at most the lease. So ``spent <= budget`` always,
whatever the concurrency, and ``reserved`` returns to 0 when nothing is in flight.
"""

from __future__ import annotations

import asyncio
import collections
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog

from aurea.errors import BudgetExceeded
from aurea.ledger._account import Account, Lease, _budget_error
from aurea.ledger._journal import DEFAULT_MAX_BATCH, Journal, Op
from aurea.ledger._reads import BookReads
from aurea.ledger._writes import ChargeWrites, LeaseWrites, SpendWrites, Writes
from aurea.stores import (
    ExpireOp,
    JobView,
    LedgerStore,
    Spend,
    StoreUnavailable,
    WallClock,
    wall_clock,
)

__all__ = ["Account", "Lease", "LedgerBook"]

log = structlog.get_logger("aurea.ledger")

# A refusal caused only by other calls' reservations may succeed once they settle: say so.
_RETRY_AFTER_RESERVED_S = 1.0


class LedgerBook(BookReads):
    """Budgets and leases for every job this process touches; owns the store's write order.

    ``durable``: a settle is awaited until the store committed it. ``leases``: every
    reservation is written to the store as a lease (for a store other processes share; off for
    one this process owns, where only spend needs to last). ``max_batch``: the most operations
    one store transaction carries.

    ``start`` (idempotent) first expires every lease a previous process left active (its calls
    died with it), then starts the journal; ``stop`` applies what is queued, within a grace.
    """

    def __init__(
        self,
        store: LedgerStore,
        *,
        default_budget_nanos: int | None,
        lease_ttl_s: float,
        durable: bool,
        leases: bool = False,
        max_batch: int = DEFAULT_MAX_BATCH,
        settle_wait_s: float = 5.0,
        max_backlog: int = 20_000,
        max_accounts: int = 100_000,
        wall: WallClock = wall_clock,
        clock: Callable[[], float] = time.monotonic,
        on_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.store = store
        self._on_stop = on_stop  # closes what the store runs on (its database)
        self.default_budget_nanos = default_budget_nanos
        self.lease_ttl_s = lease_ttl_s
        self.durable = durable  # a settle is awaited until the store committed it
        self.leases = leases  # every reservation is a lease in the store
        self.settle_wait_s = settle_wait_s
        self.max_backlog = max_backlog
        self.max_accounts = max_accounts
        self._wall = wall
        self._clock = clock
        self.journal = Journal(apply=store.apply, max_batch=max_batch, clock=clock)
        self._accounts: collections.OrderedDict[str, Account] = collections.OrderedDict()
        self._loading: dict[str, asyncio.Future[Account]] = {}
        self._open: dict[str, Lease] = {}
        self._ids = f"{os.getpid():x}-{os.urandom(4).hex()}-"
        self._seq = 0
        # What the store is told per attempt (see ``_writes``).
        default = default_budget_nanos
        self._writes: Writes
        if leases:
            self._writes = LeaseWrites(
                self.journal, default_budget=default, ttl_s=lease_ttl_s, wall=wall
            )
        elif durable:
            self._writes = ChargeWrites(self.journal, default_budget=default, wall=wall)
        else:
            self._writes = SpendWrites(self.journal, default_budget=default, wall=wall)
        self._tick: asyncio.Task[None] | None = None
        self.expired_at_start = 0
        # Settled spend since this process started, by (model, provider): what the admin
        # summary reports, from the very settles the store records. Plain counters
        # [calls, input, output, cost]: a settle costs additions, not objects.
        self._totals: dict[tuple[str, str], list[int]] = {}

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._tick is not None:
            return
        # Before any call: a dead process's reservations return at once, never spent.
        self.expired_at_start = await self.store.expire_all(now=self._wall())
        if self.expired_at_start:
            log.info("ledger_leases_expired_at_start", leases=self.expired_at_start)
        self.journal.start()
        self._tick = asyncio.get_running_loop().create_task(self._maintain(), name="ledger-tick")

    async def stop(self, grace_s: float = 5.0) -> None:
        self._writes.flush()
        tick, self._tick = self._tick, None
        if tick is not None:
            tick.cancel()
            await asyncio.wait([tick])
        await self.journal.stop(grace_s)
        on_stop, self._on_stop = self._on_stop, None
        if on_stop is not None:
            await on_stop()

    async def _maintain(self) -> None:
        """Renew open leases before they expire in the store, let the store forget old closed
        leases, and keep the number of cached jobs bounded."""
        period = min(max(self.lease_ttl_s / 4, 0.05), 30.0)
        while True:
            await asyncio.sleep(period)
            self.renew_due()
            self._writes.flush()
            if self.durable or self.leases:  # leases of this process, or of a past one
                self.journal.append(Op("expire", item=ExpireOp(now=self._wall())))
            self._evict()

    def renew_due(self) -> int:
        """Queue a renewal of every open lease older than half its time to live."""
        now, ttl = self._clock(), self.lease_ttl_s
        n = 0
        for lease in self._open.values():
            if now - lease.renewed_at >= ttl / 2:
                lease.renewed_at = now
                self._writes.renewed(lease)
                n += 1
        return n

    def _next_id(self) -> str:
        self._seq += 1
        return f"{self._ids}{self._seq}"

    def _evict(self, keep: int | None = None) -> None:
        excess = len(self._accounts) - (self.max_accounts if keep is None else keep)
        if excess <= 0:
            return
        # Oldest first; a job with calls in flight stays (its leases point at its account).
        for job_id in [j for j, a in self._accounts.items() if not a.active][:excess]:
            del self._accounts[job_id]

    # -- the hot path --------------------------------------------------------------------------

    def cached(self, job_id: str) -> Account | None:
        acct = self._accounts.get(job_id)
        if acct is not None:
            self._accounts.move_to_end(job_id)
        return acct

    async def account(self, job_id: str) -> Account:
        """The job's account, read from the store the first time (one load per job at once)."""
        acct = self.cached(job_id)
        if acct is not None:
            return acct
        fut = self._loading.get(job_id)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._loading[job_id] = fut
            self._writes.flush()
            # The future also carries a failed load's error to every waiter.
            self.journal.append(
                Op(
                    "load",
                    lambda: self.store.get_job(job_id),
                    then=self._installer(job_id),
                    future=fut,
                )
            )
        try:
            # Shielded: one caller giving up must not fail the others waiting on the same load.
            return await asyncio.shield(fut)
        finally:
            if fut.done() and self._loading.get(job_id) is fut:
                del self._loading[job_id]  # a failed load is tried afresh by the next call

    def _installer(self, job_id: str) -> Callable[[Any], None]:
        def install(view: JobView | None) -> None:
            # Runs in the writer, after every operation queued before the load: the store's
            # figures are the whole truth here.
            if view is None:
                acct = Account(job_id=job_id, budget=self.default_budget_nanos, spent=0)
                self._writes.opened(job_id)
            else:
                acct = Account(job_id=job_id, budget=view.budget_nanos, spent=view.spent_nanos)
            self._evict(keep=self.max_accounts - 1)
            self._accounts[job_id] = acct
            fut = self._loading.pop(job_id, None)
            if fut is not None and not fut.done():
                fut.set_result(acct)

        return install

    def reserve(self, acct: Account, amount: int, model: str, provider: str) -> Lease:
        """Hold ``amount`` for one attempt, or raise ``BudgetExceeded`` (nothing changed)."""
        if self.journal.backlog >= self.max_backlog:
            raise StoreUnavailable(
                "the ledger's store is not keeping up; no new reservations until it does",
                retry_after_s=1.0,
            )
        room = acct.room()
        if room is not None and room < max(amount, 1):
            raise self._refusal(acct, amount)
        acct.reserved += amount
        acct.active += 1
        lease = Lease(
            lease_id=self._next_id() if self.leases else "",  # only a store lease needs one
            account=acct,
            amount=amount,
            model=model,
            provider=provider,
            renewed_at=self._clock(),
        )
        if self.leases:  # only a store's leases need renewing
            self._open[lease.lease_id] = lease
        self._writes.reserved(lease)
        return lease

    def extend(self, lease: Lease, need: int, want: int) -> int:
        """Grow ``lease`` by at least ``need`` and at most ``want`` (as much as fits); return
        the growth, 0 (nothing changed) when the job cannot cover ``need``."""
        acct = lease.account
        room = acct.room()
        if room is None:
            add = want
        elif room < need:
            return 0
        else:
            add = min(want, room)
        if add <= 0:
            return 0
        acct.reserved += add
        lease.amount += add
        lease.renewed_at = self._clock()
        self._writes.extended(lease, add)
        return add

    def close(self, lease: Lease, spend: Spend | None) -> asyncio.Future[Any] | None:
        """Settle ``lease`` with ``spend`` (its cost at most the lease), or release it when
        ``spend`` is None. Returns a future of the store's commit when the store is durable."""
        if spend is None:
            self.release(lease)
            return None
        return self.settle(lease, spend.cost_nanos, spend.input_tokens, spend.output_tokens)

    def release(self, lease: Lease) -> None:
        """Return the lease's reservation, nothing spent."""
        if self._end(lease):
            self._writes.released(lease)

    def settle(
        self, lease: Lease, cost_nanos: int, input_tokens: int, output_tokens: int
    ) -> asyncio.Future[Any] | None:
        """Charge ``cost_nanos`` (at most the lease) and return the rest of the reservation;
        a future of the store's commit when the store is durable."""
        if not self._end(lease):
            return None
        lease.account.spent += cost_nanos
        row = self._totals.get((lease.model, lease.provider))
        if row is None:
            row = self._totals[(lease.model, lease.provider)] = [0, 0, 0, 0]
        row[0] += 1
        row[1] += input_tokens
        row[2] += output_tokens
        row[3] += cost_nanos
        return self._writes.settled(lease, cost_nanos, input_tokens, output_tokens)

    def _end(self, lease: Lease) -> bool:
        if not lease.open:
            return False
        lease.open = False
        if self.leases:
            del self._open[lease.lease_id]
        acct = lease.account
        acct.reserved -= lease.amount
        acct.active -= 1
        return True

    def _refusal(self, acct: Account, amount: int) -> BudgetExceeded:
        budget = acct.budget if acct.budget is not None else 0
        room = max(budget - acct.spent - acct.reserved, 0)
        # Only the calls in flight stand in the way: their reservations come back soon.
        retry = _RETRY_AFTER_RESERVED_S if acct.reserved and budget - acct.spent >= amount else None
        return _budget_error(
            acct,
            f"job {acct.job_id!r} cannot pay for this call: it may cost up to {amount} "
            f"nano-dollars and {room} of its budget of {budget} remain ({acct.spent} spent, "
            f"{acct.reserved} reserved by calls in flight)",
            retry,
        )

    @staticmethod
    def exhausted(acct: Account) -> BudgetExceeded:
        """The error that stops an attempt whose lease cannot grow."""
        return _budget_error(
            acct,
            f"job {acct.job_id!r} ran out of budget mid-call ({acct.spent} of "
            f"{acct.budget} nano-dollars spent, {acct.reserved} reserved)",
            None,
        )

    # -- budgets -------------------------------------------------------------------------------

    async def set_budget(self, job_id: str, budget_nanos: int | None) -> JobView:
        """Set the job's budget (None: unlimited); calls in flight keep their reservations."""
        acct = await self.account(job_id)
        acct.budget = budget_nanos  # at once, in the order of the store's operations
        self._writes.flush()
        view: JobView = await self.journal.call(
            "set_budget",
            lambda: self.store.set_budget(job_id, budget_nanos, now=self._wall()),
        )
        return self._overlay(view)
