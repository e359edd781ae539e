"""The in-memory ``LedgerStore``: plain dicts with the same semantics as the durable stores.

No method awaits, so each one runs as one atomic step on the event loop (``apply`` too: it checks
every operation's arguments, then runs them all). Expiry uses a heap and
closed-lease forgetting a FIFO, so ``expire`` costs what it removes, not what is stored.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import assert_never

from aurea.stores._common import Page, check_finite, check_id, check_limit, check_positive
from aurea.stores.ledger import (
    CLOSED_LEASE_RETENTION_S,
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
    check_nanos,
    check_op,
    fits,
    is_empty,
    sorted_totals,
)

__all__ = ["MemoryLedgerStore"]

_Key = tuple[str, str]  # (model, provider)


@dataclass(slots=True)
class _Job:
    budget: int | None
    created_at: float
    updated_at: float
    spent: int = 0
    reserved: int = 0
    active: int = 0
    by_model: dict[_Key, UsageTotals] = field(default_factory=dict)


@dataclass(slots=True)
class _Lease:
    job_id: str
    model: str
    provider: str
    amount: int
    expires_at: float
    state: LeaseState = LeaseState.ACTIVE
    spent: int = 0
    closed_at: float = 0.0


def _add(totals: dict[_Key, UsageTotals], key: _Key, spend: Spend) -> None:
    prev = totals.get(key) or UsageTotals(model=key[0], provider=key[1])
    totals[key] = prev.plus(spend)


class MemoryLedgerStore:
    """Budgets and leases in dicts; for tests and the zero-config server (nothing persists)."""

    def __init__(self, *, closed_lease_retention_s: float = CLOSED_LEASE_RETENTION_S) -> None:
        check_positive("closed_lease_retention_s", closed_lease_retention_s)
        self._retention_s = closed_lease_retention_s
        self._jobs: dict[str, _Job] = {}
        self._leases: dict[str, _Lease] = {}
        self._expiries: list[tuple[float, str]] = []  # heap; entries of extended leases go stale
        self._closed: deque[tuple[float, str]] = deque()  # (closed_at, lease_id), roughly ordered
        self._buckets: dict[tuple[int, str, str], UsageTotals] = {}

    # -- reads ---------------------------------------------------------------------------------

    def _view(self, job_id: str, job: _Job) -> JobView:
        return JobView(
            job_id=job_id,
            budget_nanos=job.budget,
            spent_nanos=job.spent,
            reserved_nanos=job.reserved,
            active_leases=job.active,
            created_at=job.created_at,
            updated_at=job.updated_at,
            by_model=sorted_totals(job.by_model.values()),
        )

    def _answer(self, status: ReserveStatus, job_id: str, lease_nanos: int = 0) -> Reservation:
        job = self._jobs.get(job_id)
        if job is None:
            return Reservation(
                status=status, job_id=job_id, budget_nanos=0, spent_nanos=0, reserved_nanos=0
            )
        return Reservation(
            status=status,
            job_id=job_id,
            budget_nanos=job.budget,
            spent_nanos=job.spent,
            reserved_nanos=job.reserved,
            lease_nanos=lease_nanos,
        )

    async def get_job(self, job_id: str) -> JobView | None:
        job = self._jobs.get(job_id)
        return None if job is None else self._view(job_id, job)

    async def list_jobs(
        self, *, prefix: str = "", after: str | None = None, limit: int = 100
    ) -> Page[JobView]:
        check_limit(limit)
        ids = sorted(j for j in self._jobs if j.startswith(prefix) and (after is None or j > after))
        page = ids[:limit]
        views = tuple(self._view(j, self._jobs[j]) for j in page)
        return Page(views, page[-1] if len(ids) > limit else None)

    async def get_lease(self, lease_id: str) -> LeaseView | None:
        lease = self._leases.get(lease_id)
        if lease is None:
            return None
        return LeaseView(
            lease_id=lease_id,
            job_id=lease.job_id,
            model=lease.model,
            provider=lease.provider,
            amount_nanos=lease.amount,
            expires_at=lease.expires_at,
            state=lease.state,
            spent_nanos=lease.spent,
        )

    async def summary(self, *, since: float | None = None, until: float | None = None) -> Summary:
        low = -math.inf if since is None else bucket_start(since)
        high = math.inf if until is None else until
        totals: dict[_Key, UsageTotals] = {}
        for (start, model, provider), row in self._buckets.items():
            if low <= start < high:
                key = (model, provider)
                totals[key] = (totals.get(key) or UsageTotals(model=model, provider=provider)).plus(
                    row
                )
        return Summary(by_model=sorted_totals(totals.values()))

    # -- writes --------------------------------------------------------------------------------

    async def set_budget(self, job_id: str, budget_nanos: int | None, *, now: float) -> JobView:
        check_id("job_id", job_id)
        check_nanos("budget_nanos", budget_nanos)
        check_finite("now", now)
        job = self._jobs.get(job_id)
        if job is None:
            job = self._jobs[job_id] = _Job(budget_nanos, now, now)
        else:
            job.budget = budget_nanos
            job.updated_at = now
        return self._view(job_id, job)

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
        op = ReserveOp(
            job_id=job_id,
            lease_id=lease_id,
            amount_nanos=amount_nanos,
            ttl_s=ttl_s,
            now=now,
            default_budget_nanos=default_budget_nanos,
            model=model,
            provider=provider,
        )
        check_op(op)
        return self._reserve(op)

    async def extend(
        self, lease_id: str, add_nanos: int, ttl_s: float, *, now: float
    ) -> Reservation:
        op = ExtendOp(lease_id=lease_id, add_nanos=add_nanos, ttl_s=ttl_s, now=now)
        check_op(op)
        return self._extend(op)

    async def settle(self, lease_id: str, spend: Spend, *, now: float) -> LeaseEnd:
        op = SettleOp(lease_id=lease_id, spend=spend, now=now)
        check_op(op)
        return self._settle(op)

    async def release(self, lease_id: str, *, now: float) -> LeaseEnd:
        op = ReleaseOp(lease_id=lease_id, now=now)
        check_op(op)
        return self._close(lease_id, LeaseState.RELEASED, now)[0]

    async def expire(self, *, now: float) -> int:
        op = ExpireOp(now=now)
        check_op(op)
        return self._expire(op)

    async def expire_all(self, *, now: float) -> int:
        check_finite("now", now)
        return self._expire_due(math.inf, now)

    async def apply(self, ops: Sequence[LedgerOp]) -> tuple[LedgerResult, ...]:
        for op in ops:  # every check before any change: all or nothing
            check_op(op)
        return tuple(self._apply_one(op) for op in ops)

    # -- the operations, checked already (no await: each runs as one step) ---------------------

    def _apply_one(self, op: LedgerOp) -> LedgerResult:
        match op:
            case ReserveOp():
                return self._reserve(op)
            case ExtendOp():
                return self._extend(op)
            case SettleOp():
                return self._settle(op)
            case ReleaseOp():
                return self._close(op.lease_id, LeaseState.RELEASED, op.now)[0]
            case ChargeOp():
                self._charge(op)
                return None
            case ExpireOp():
                return self._expire(op)
            case _:
                assert_never(op)

    def _job(self, job_id: str, default_budget: int | None, now: float) -> _Job:
        job = self._jobs.get(job_id)
        if job is None:
            job = self._jobs[job_id] = _Job(default_budget, now, now)
        return job

    def _reserve(self, op: ReserveOp) -> Reservation:
        job_id, lease_id, amount_nanos, now = op.job_id, op.lease_id, op.amount_nanos, op.now
        lease = self._leases.get(lease_id)
        if lease is not None:
            if lease.state is LeaseState.ACTIVE:
                return self._answer(ReserveStatus.GRANTED, lease.job_id, lease.amount)
            return self._answer(ReserveStatus.LEASE_CLOSED, lease.job_id)
        job = self._job(job_id, op.default_budget_nanos, now)
        if not fits(job.budget, job.spent, job.reserved, amount_nanos):
            return self._answer(ReserveStatus.OVER_BUDGET, job_id)
        job.reserved += amount_nanos
        job.active += 1
        job.updated_at = now
        expires_at = now + op.ttl_s
        self._leases[lease_id] = _Lease(job_id, op.model, op.provider, amount_nanos, expires_at)
        heapq.heappush(self._expiries, (expires_at, lease_id))
        return self._answer(ReserveStatus.GRANTED, job_id, amount_nanos)

    def _extend(self, op: ExtendOp) -> Reservation:
        lease_id, add_nanos = op.lease_id, op.add_nanos
        lease = self._leases.get(lease_id)
        if lease is None:
            return self._answer(ReserveStatus.LEASE_CLOSED, "")
        if lease.state is not LeaseState.ACTIVE:
            return self._answer(ReserveStatus.LEASE_CLOSED, lease.job_id)
        job = self._jobs[lease.job_id]
        if add_nanos and not fits(job.budget, job.spent, job.reserved, add_nanos):
            return self._answer(ReserveStatus.OVER_BUDGET, lease.job_id, lease.amount)
        lease.amount += add_nanos
        job.reserved += add_nanos
        job.updated_at = op.now
        lease.expires_at = op.now + op.ttl_s
        heapq.heappush(self._expiries, (lease.expires_at, lease_id))
        return self._answer(ReserveStatus.GRANTED, lease.job_id, lease.amount)

    def _close(
        self, lease_id: str, state: LeaseState, now: float
    ) -> tuple[LeaseEnd, _Lease | None]:
        lease = self._leases.get(lease_id)
        if lease is None:
            return LeaseEnd.UNKNOWN, None
        if lease.state in (LeaseState.SETTLED, LeaseState.RELEASED):
            return LeaseEnd.ALREADY, None
        job = self._jobs[lease.job_id]
        end = LeaseEnd.LATE
        if lease.state is LeaseState.ACTIVE:
            end = LeaseEnd.CLOSED
            job.reserved -= lease.amount
            job.active -= 1
        job.updated_at = now
        lease.state = state
        lease.closed_at = now
        self._closed.append((now, lease_id))
        return end, lease

    def _settle(self, op: SettleOp) -> LeaseEnd:
        end, lease = self._close(op.lease_id, LeaseState.SETTLED, op.now)
        if lease is not None:
            lease.spent = op.spend.cost_nanos
            self._spend(self._jobs[lease.job_id], lease.model, lease.provider, op.spend, op.now)
        return end

    def _charge(self, op: ChargeOp) -> None:
        job = self._job(op.job_id, op.default_budget_nanos, op.now)
        job.updated_at = op.now
        if not is_empty(op.spend):
            self._spend(job, op.model, op.provider, op.spend, op.now)

    def _spend(self, job: _Job, model: str, provider: str, spend: Spend, now: float) -> None:
        job.spent += spend.cost_nanos
        _add(job.by_model, (model, provider), spend)
        start = bucket_start(now)
        prev = self._buckets.get((start, model, provider))
        if prev is None:
            prev = UsageTotals(model=model, provider=provider)
        self._buckets[(start, model, provider)] = prev.plus(spend)

    def _expire(self, op: ExpireOp) -> int:
        now = op.now
        expired = self._expire_due(now, None)
        cutoff = now - self._retention_s
        while self._closed and self._closed[0][0] <= cutoff:
            closed_at, lease_id = self._closed.popleft()
            lease = self._leases.get(lease_id)
            # A lease settled after it expired was queued twice; only its last entry counts.
            if (
                lease is not None
                and lease.state is not LeaseState.ACTIVE
                and (lease.closed_at == closed_at)
            ):
                del self._leases[lease_id]
        return expired

    def _expire_due(self, due: float, closed_at: float | None) -> int:
        expired = 0
        while self._expiries and self._expiries[0][0] <= due:
            expires_at, lease_id = heapq.heappop(self._expiries)
            lease = self._leases.get(lease_id)
            if lease is None or lease.state is not LeaseState.ACTIVE:
                continue
            if lease.expires_at != expires_at:
                continue  # extended since; a later heap entry carries its expiry
            job = self._jobs[lease.job_id]
            job.reserved -= lease.amount
            job.active -= 1
            lease.state = LeaseState.EXPIRED
            lease.closed_at = expires_at if closed_at is None else closed_at
            self._closed.append((lease.closed_at, lease_id))
            expired += 1
        return expired
