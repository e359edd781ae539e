"""How the book's decisions reach its store, through the journal: one lease per attempt for a
durable store, or spend summed in memory for a store that dies with the process.

* ``LeaseWrites`` (SQLite; later any store that outlives the process): every attempt's
  reservation is written as a lease, grown and renewed as it is in memory, and closed by the
  settle its call awaits. After a crash, ``expire_all`` finds the dead calls' leases and
  returns them; every received answer's spend was committed before the answer went out.
* ``SpendWrites`` (the in-memory store): reservations are not written at all (nothing could
  ever read them back after a crash, and the book reports them itself); settled spend is summed
  per (job, model, provider, hour) and written as one settled lease per sum when something
  reads the store, when many sums wait, or on the book's tick. An attempt then costs a few
  additions, with no store operation of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from aurea.ledger._journal import Journal, Op
from aurea.stores import LedgerStore, Reservation, ReserveStatus, Spend, WallClock
from aurea.stores.ledger import bucket_start

if TYPE_CHECKING:  # no import cycle at run time
    from aurea.ledger._book import Lease

__all__ = ["LeaseWrites", "SpendWrites", "Writes"]

log = structlog.get_logger("aurea.ledger")


class Writes(Protocol):
    def reserved(self, lease: Lease, default_budget: int | None) -> None: ...
    def extended(self, lease: Lease, add: int) -> None: ...
    def renewed(self, lease: Lease) -> None: ...
    def released(self, lease: Lease) -> None: ...
    def settled(
        self, lease: Lease, cost: int, input_tokens: int, output_tokens: int
    ) -> asyncio.Future[Any] | None: ...
    def flush(self) -> None: ...


class LeaseWrites:
    """One store lease per attempt, in the order the book decided."""

    def __init__(
        self, store: LedgerStore, journal: Journal, *, ttl_s: float, wall: WallClock
    ) -> None:
        self._store = store
        self._journal = journal
        self._ttl_s = ttl_s
        self._wall = wall

    def reserved(self, lease: Lease, default_budget: int | None) -> None:
        store, ttl, wall = self._store, self._ttl_s, self._wall
        job, lid, amount = lease.account.job_id, lease.lease_id, lease.amount

        def check(result: Any) -> None:
            if not getattr(result, "granted", False):
                # Cannot happen while this process alone writes the store; if it does, the
                # book still holds the truth for this process, and the log says so.
                log.error(
                    "ledger_store_diverged",
                    job_id=job,
                    lease_id=lid,
                    status=str(getattr(result, "status", "")),
                )

        self._journal.append(
            Op(
                "reserve",
                lambda: store.reserve(
                    job,
                    lid,
                    amount,
                    ttl,
                    now=wall(),
                    default_budget_nanos=default_budget,
                    model=lease.model,
                    provider=lease.provider,
                ),
                then=check,
            )
        )

    def extended(self, lease: Lease, add: int) -> None:
        self._journal.append(Op("extend", self._extend(lease.lease_id, add)))

    def renewed(self, lease: Lease) -> None:
        self._journal.append(Op("renew", self._extend(lease.lease_id, 0)))

    def _extend(self, lease_id: str, add: int) -> Callable[[], Awaitable[Any]]:
        store, ttl, wall = self._store, self._ttl_s, self._wall
        return lambda: store.extend(lease_id, add, ttl, now=wall())

    def released(self, lease: Lease) -> None:
        store, wall, lid = self._store, self._wall, lease.lease_id
        self._journal.append(Op("release", lambda: store.release(lid, now=wall())))

    def settled(
        self, lease: Lease, cost: int, input_tokens: int, output_tokens: int
    ) -> asyncio.Future[Any] | None:
        store, wall, lid = self._store, self._wall, lease.lease_id
        spend = Spend(cost_nanos=cost, input_tokens=input_tokens, output_tokens=output_tokens)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._journal.append(Op("settle", lambda: store.settle(lid, spend, now=wall()), future=fut))
        return fut

    def flush(self) -> None:
        return None


_Key = tuple[str, str, str, int]  # (job, model, provider, hour bucket)


class SpendWrites:
    """Settled spend summed in memory; written as one settled lease per sum."""

    def __init__(
        self,
        store: LedgerStore,
        journal: Journal,
        *,
        ids: Callable[[], str],
        wall: WallClock,
        max_pending: int = 1024,
    ) -> None:
        self._store = store
        self._journal = journal
        self._ids = ids
        self._wall = wall
        self._max_pending = max_pending
        self._pending: dict[_Key, list[int]] = {}  # [calls, input, output, cost]
        self._settles = 0
        self._default: int | None = None

    def reserved(self, lease: Lease, default_budget: int | None) -> None:
        self._default = default_budget

    def extended(self, lease: Lease, add: int) -> None:
        return None

    def renewed(self, lease: Lease) -> None:
        return None

    def released(self, lease: Lease) -> None:
        return None

    def settled(
        self, lease: Lease, cost: int, input_tokens: int, output_tokens: int
    ) -> asyncio.Future[Any] | None:
        key = (lease.account.job_id, lease.model, lease.provider, bucket_start(self._wall()))
        row = self._pending.get(key)
        if row is None:
            row = self._pending[key] = [0, 0, 0, 0]
        row[0] += 1
        row[1] += input_tokens
        row[2] += output_tokens
        row[3] += cost
        self._settles += 1
        if self._settles >= self._max_pending:
            self.flush()
        return None

    def flush(self) -> None:
        """Queue every sum as a lease of 0 reserved and settled (in its hour), in order."""
        pending, self._pending, self._settles = self._pending, {}, 0
        store, default = self._store, self._default
        for (job, model, provider, hour), (calls, inp, out, cost) in pending.items():
            lid = self._ids()
            spend = Spend(cost_nanos=cost, input_tokens=inp, output_tokens=out, calls=calls)
            # Settled inside its own hour, so summaries by time stay exact.
            at = max(float(hour), min(self._wall(), hour + 3599.0))

            self._journal.append(
                Op("settle_sum", _settle_sum(store, job, lid, model, provider, spend, at, default))
            )


def _settle_sum(
    store: LedgerStore,
    job: str,
    lease_id: str,
    model: str,
    provider: str,
    spend: Spend,
    at: float,
    default_budget: int | None,
) -> Callable[[], Awaitable[None]]:
    async def write() -> None:
        def reserve() -> Awaitable[Reservation]:
            return store.reserve(
                job,
                lease_id,
                0,
                60.0,
                now=at,
                default_budget_nanos=default_budget,
                model=model,
                provider=provider,
            )

        r = await reserve()
        if r.status is ReserveStatus.OVER_BUDGET:
            # The budget was lowered below what was already spent: even an empty lease does
            # not fit. Lift it for this one write (nothing else writes the store meanwhile).
            await store.set_budget(job, None, now=at)
            await reserve()
            await store.settle(lease_id, spend, now=at)
            await store.set_budget(job, r.budget_nanos, now=at)
            return
        await store.settle(lease_id, spend, now=at)

    return write
