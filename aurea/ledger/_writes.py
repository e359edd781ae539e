"""How the book's decisions reach its store, through the journal: for a durable store one row of
spend per attempt (or one lease per attempt, for a store several processes share), or spend
summed in memory for a store that dies with the process.

* ``ChargeWrites`` (SQLite, the default: a durable store this process alone owns): reservations
  are not written at all. The book decides them in memory, and they would be returned at the
  next start anyway (a dead process's calls are over), so the store needs only what was spent.
  A settle writes its spend as one ``ChargeOp`` and the call awaits its commit: an answer goes
  out only once its cost is durable. The journal puts all the charges queued while the store is
  busy into one transaction (group commit), so an attempt costs at most one transaction, and
  under load a fraction of one. After a crash the store holds every received answer's spend,
  and no reservation to return.
* ``LeaseWrites`` (a store written with ``leases=True``): every attempt's
  reservation is written as a lease, grown and renewed as it is in memory, and closed by the
  settle its call awaits, so the other replicas see it. After a crash, the leases expire by
  their time to live (``expire_all`` at start for a store one process owns). Batched by the
  journal like the charges.
* ``SpendWrites`` (the in-memory store): reservations are not written at all, and settled spend
  is summed per (job, model, provider, hour) and written as one charge per sum when something
  reads the store, when many sums wait, or on the book's tick. An attempt then costs a few
  additions, with no store operation of its own.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from aurea.ledger._journal import Journal, Op
from aurea.stores import (
    ChargeOp,
    ExtendOp,
    ReleaseOp,
    ReserveOp,
    SettleOp,
    Spend,
    WallClock,
)
from aurea.stores.ledger import bucket_start

if TYPE_CHECKING:  # no import cycle at run time
    from aurea.ledger._book import Lease

__all__ = ["ChargeWrites", "LeaseWrites", "SpendWrites", "Writes"]

log = structlog.get_logger("aurea.ledger")

_NOTHING = Spend(cost_nanos=0, calls=0)


class Writes(Protocol):
    def opened(self, job_id: str) -> None: ...
    def reserved(self, lease: Lease) -> None: ...
    def extended(self, lease: Lease, add: int) -> None: ...
    def renewed(self, lease: Lease) -> None: ...
    def released(self, lease: Lease) -> None: ...
    def settled(
        self, lease: Lease, cost: int, input_tokens: int, output_tokens: int
    ) -> asyncio.Future[Any] | None: ...
    def flush(self) -> None: ...


class ChargeWrites:
    """One awaited charge per settled attempt; nothing else per attempt."""

    def __init__(self, journal: Journal, *, default_budget: int | None, wall: WallClock) -> None:
        self._journal = journal
        self._default = default_budget
        self._wall = wall

    def opened(self, job_id: str) -> None:
        # A job first seen here is written at once (not awaited), with the default budget it
        # is given now: listed while its first calls run, and kept if they never settle.
        op = ChargeOp(
            job_id=job_id, spend=_NOTHING, now=self._wall(), default_budget_nanos=self._default
        )
        self._journal.append(Op("open_job", item=op))

    def reserved(self, lease: Lease) -> None:
        return None

    def extended(self, lease: Lease, add: int) -> None:
        return None

    def renewed(self, lease: Lease) -> None:
        return None

    def released(self, lease: Lease) -> None:
        return None

    def settled(
        self, lease: Lease, cost: int, input_tokens: int, output_tokens: int
    ) -> asyncio.Future[Any] | None:
        op = ChargeOp(
            job_id=lease.account.job_id,
            spend=Spend(cost_nanos=cost, input_tokens=input_tokens, output_tokens=output_tokens),
            now=self._wall(),
            default_budget_nanos=self._default,
            model=lease.model,
            provider=lease.provider,
        )
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._journal.append(Op("charge", item=op, future=fut))
        return fut

    def flush(self) -> None:
        return None


class LeaseWrites:
    """One store lease per attempt, in the order the book decided."""

    def __init__(
        self, journal: Journal, *, default_budget: int | None, ttl_s: float, wall: WallClock
    ) -> None:
        self._journal = journal
        self._default = default_budget
        self._ttl_s = ttl_s
        self._wall = wall

    def opened(self, job_id: str) -> None:
        return None  # its first reserve creates it

    def reserved(self, lease: Lease) -> None:
        job, lid = lease.account.job_id, lease.lease_id

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

        op = ReserveOp(
            job_id=job,
            lease_id=lid,
            amount_nanos=lease.amount,
            ttl_s=self._ttl_s,
            now=self._wall(),
            default_budget_nanos=self._default,
            model=lease.model,
            provider=lease.provider,
        )
        self._journal.append(Op("reserve", item=op, then=check))

    def extended(self, lease: Lease, add: int) -> None:
        self._journal.append(Op("extend", item=self._extend(lease, add)))

    def renewed(self, lease: Lease) -> None:
        self._journal.append(Op("renew", item=self._extend(lease, 0)))

    def _extend(self, lease: Lease, add: int) -> ExtendOp:
        return ExtendOp(
            lease_id=lease.lease_id,
            add_nanos=add,
            ttl_s=self._ttl_s,
            now=self._wall(),
            job_id=lease.account.job_id,
        )

    def released(self, lease: Lease) -> None:
        op = ReleaseOp(lease_id=lease.lease_id, now=self._wall(), job_id=lease.account.job_id)
        self._journal.append(Op("release", item=op))

    def settled(
        self, lease: Lease, cost: int, input_tokens: int, output_tokens: int
    ) -> asyncio.Future[Any] | None:
        spend = Spend(cost_nanos=cost, input_tokens=input_tokens, output_tokens=output_tokens)
        op = SettleOp(
            lease_id=lease.lease_id, spend=spend, now=self._wall(), job_id=lease.account.job_id
        )
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._journal.append(Op("settle", item=op, future=fut))
        return fut

    def flush(self) -> None:
        return None


_Key = tuple[str, str, str, int]  # (job, model, provider, hour bucket)


class SpendWrites:
    """Settled spend summed in memory; written as one charge per sum."""

    def __init__(
        self,
        journal: Journal,
        *,
        default_budget: int | None,
        wall: WallClock,
        max_pending: int = 1024,
    ) -> None:
        self._journal = journal
        self._default = default_budget
        self._wall = wall
        self._max_pending = max_pending
        self._pending: dict[_Key, list[int]] = {}  # [calls, input, output, cost]
        self._settles = 0

    def opened(self, job_id: str) -> None:
        return None  # the book reports it; nothing it holds outlives the process

    def reserved(self, lease: Lease) -> None:
        return None

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
        """Queue every sum as one charge (in its hour), in order."""
        pending, self._pending, self._settles = self._pending, {}, 0
        for (job, model, provider, hour), (calls, inp, out, cost) in pending.items():
            spend = Spend(cost_nanos=cost, input_tokens=inp, output_tokens=out, calls=calls)
            # Charged inside its own hour, so summaries by time stay exact.
            at = max(float(hour), min(self._wall(), hour + 3599.0))
            op = ChargeOp(
                job_id=job,
                spend=spend,
                now=at,
                default_budget_nanos=self._default,
                model=model,
                provider=provider,
            )
            self._journal.append(Op("charge_sum", item=op))


def _conforms(c: ChargeWrites, le: LeaseWrites, s: SpendWrites) -> tuple[Writes, Writes, Writes]:
    """Never called: here mypy checks each class against ``Writes``."""
    return c, le, s
