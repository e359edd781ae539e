"""The ledger store protocol: job budgets, reservations held as leases, and what was spent.

Every operation is one atomic step against the store (a Redis implementation does each in one Lua
script), so the ledger actor never reads, decides and writes back across calls. Money is integer
nano-dollars; ``now`` is wall time (see ``aurea.stores._common``).

A lease's life::

    reserve ─▶ ACTIVE ──settle──▶ SETTLED   spent += actual; the reservation returns   (CLOSED)
                 │    ──release─▶ RELEASED  the reservation returns, nothing spent     (CLOSED)
                 └─expire─▶ EXPIRED ──settle──▶ SETTLED   spent += actual              (LATE)
                                    ──release─▶ RELEASED  nothing to return            (LATE)
    SETTLED / RELEASED: settle and release change nothing                              (ALREADY)

Closed leases are remembered for ``closed_lease_retention_s`` (store option) so that a repeated
settle or release is recognised and ignored; ``expire`` forgets them after that.
``expire_all`` frees a dead process's leases at start-up.

**Two ways to use a store.** A store that several processes share (Redis) holds reservations
as leases (each replica's block of a job, see ``aurea.ledger._shared``), so that each replica's
reservations count against the others'.
A store that one process owns (SQLite) need not: that process decides every reservation in memory
and a crash returns its reservations anyway, so only spend must be durable, and ``ChargeOp``
records it with no lease at all. Both go through ``apply``, which runs a sequence of operations
(``LedgerOp``) as one atomic step: one transaction for many calls' writes (group commit).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aurea.stores._common import Page
from aurea.stores._ledger_values import (
    CLOSED_LEASE_RETENTION_S,
    MAX_NANOS,
    SUMMARY_BUCKET_S,
    ChargeOp,
    ExpireOp,
    ExtendOp,
    JobView,
    LeaseEnd,
    LeaseState,
    LeaseView,
    LedgerOp,
    LedgerResult,
    ReleaseOp,
    Reservation,
    ReserveOp,
    ReserveStatus,
    SettleOp,
    Spend,
    Summary,
    UsageTotals,
    bucket_start,
    check_lease_args,
    check_nanos,
    check_op,
    check_spend,
    fits,
    is_empty,
    remaining,
    sorted_totals,
)

__all__ = [
    "CLOSED_LEASE_RETENTION_S",
    "MAX_NANOS",
    "SUMMARY_BUCKET_S",
    "ChargeOp",
    "ExpireOp",
    "ExtendOp",
    "JobView",
    "LeaseEnd",
    "LeaseState",
    "LeaseView",
    "LedgerOp",
    "LedgerResult",
    "LedgerStore",
    "ReleaseOp",
    "Reservation",
    "ReserveOp",
    "ReserveStatus",
    "SettleOp",
    "Spend",
    "Summary",
    "UsageTotals",
    "bucket_start",
    "check_lease_args",
    "check_nanos",
    "check_op",
    "check_spend",
    "fits",
    "is_empty",
    "remaining",
    "sorted_totals",
]


class LedgerStore(Protocol):
    """Budgets and leases per job. Argument errors (negative amounts, NaN, bad pages) raise
    ``ValueError``; a failing backend raises ``StoreUnavailable``."""

    async def set_budget(self, job_id: str, budget_nanos: int | None, *, now: float) -> JobView:
        """Create the job if needed and set its budget (None: unlimited; 0: no spend allowed).

        A budget below spent + reserved is allowed; it only refuses later reservations."""
        ...

    async def get_job(self, job_id: str) -> JobView | None: ...

    async def list_jobs(
        self, *, prefix: str = "", after: str | None = None, limit: int = 100
    ) -> Page[JobView]:
        """Jobs whose id starts with ``prefix``, by id, after the cursor ``after``."""
        ...

    async def reserve(
        self,
        job_id: str,
        lease_id: str,
        amount_nanos: int,
        ttl_s: float,
        *,
        now: float,
        default_budget_nanos: int | None,
        model: str = "",
        provider: str = "",
    ) -> Reservation:
        """Hold ``amount_nanos`` of the job's budget as lease ``lease_id`` until ``now + ttl_s``.

        A job seen for the first time is created with ``default_budget_nanos``. Refuses
        (OVER_BUDGET, nothing changed) when ``budget - spent - reserved < amount_nanos``. A
        ``lease_id`` that already exists changes nothing: GRANTED if it is still active (so a
        retried reserve is safe), else LEASE_CLOSED."""
        ...

    async def extend(
        self, lease_id: str, add_nanos: int, ttl_s: float, *, now: float
    ) -> Reservation:
        """Grow an active lease by ``add_nanos`` and move its expiry to ``now + ttl_s``;
        OVER_BUDGET (nothing changed) when the growth does not fit; LEASE_CLOSED when the lease
        is not active (its figures are zero when the lease is unknown). ``add_nanos=0`` only
        renews, and always succeeds on an active lease, even if the budget was lowered since."""
        ...

    async def settle(self, lease_id: str, spend: Spend, *, now: float) -> LeaseEnd:
        """Record ``spend`` as spent (as told: it may exceed the lease; clamping is the ledger's
        job) and return the lease's reservation. See the module docstring for each outcome."""
        ...

    async def release(self, lease_id: str, *, now: float) -> LeaseEnd:
        """Return the lease's reservation with nothing spent."""
        ...

    async def get_lease(self, lease_id: str) -> LeaseView | None: ...

    async def expire(self, *, now: float) -> int:
        """Expire active leases whose expiry is ``<= now`` (their reservations return) and
        forget closed leases older than the retention. Returns how many leases expired."""
        ...

    async def expire_all(self, *, now: float) -> int:
        """Expire every active lease at once, whatever its expiry (closed at ``now``).

        For start-up of a store that one process owns (SQLite): every active lease then belongs
        to a dead process, and its reservation must return at once, not after its TTL. Never
        for a store that live replicas share (Redis): their leases expire by TTL alone."""
        ...

    async def summary(self, *, since: float | None = None, until: float | None = None) -> Summary:
        """Settled spend with ``since <= settled_at < until``, the range widened outward to
        whole ``SUMMARY_BUCKET_S`` buckets."""
        ...

    async def apply(self, ops: Sequence[LedgerOp]) -> tuple[LedgerResult, ...]:
        """Apply ``ops`` in order as ONE atomic step (one SQLite transaction; on one Redis
        server one MULTI/EXEC of a script per job) and return their results in the same order.
        Each operation does exactly what its method would at that point of the sequence (a
        reserve sees the settles before it).

        All or nothing: every argument is checked first (``ValueError``, nothing changed), and a
        failing backend (``StoreUnavailable``) leaves none of them applied, so the whole
        sequence may be retried. An empty sequence does nothing. (On a Redis Cluster the step
        is atomic per job only; see ``aurea.stores.redis.ledger`` for why a retry is safe.)"""
        ...
