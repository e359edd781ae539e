"""The ledger store's value types: budgets, leases, spend and summaries, and each store
operation as a value (``LedgerOp``) with its argument checks, for ``LedgerStore.apply``."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from aurea.stores._common import (
    check_finite,
    check_id,
    check_non_negative,
    check_positive,
)

MAX_NANOS = 2**62
"""The largest amount one argument may carry (about $4.6 billion): sums stay inside int64."""

SUMMARY_BUCKET_S = 3600
"""Spend is summed per (hour, model, provider); ``summary`` ranges widen to whole hours."""

CLOSED_LEASE_RETENTION_S = 86_400.0
"""How long a settled/released lease id is remembered (default of the stores' option)."""


class ReserveStatus(enum.StrEnum):
    GRANTED = "granted"
    OVER_BUDGET = "over_budget"  # budget - spent - reserved < amount; nothing changed
    LEASE_CLOSED = "lease_closed"  # the lease exists but is not active (or extend: unknown)


class LeaseState(enum.StrEnum):
    ACTIVE = "active"
    SETTLED = "settled"
    RELEASED = "released"
    EXPIRED = "expired"


class LeaseEnd(enum.StrEnum):
    """What a ``settle`` or ``release`` did."""

    CLOSED = "closed"  # the lease was active; it is closed now
    LATE = "late"  # the lease had expired (its reservation already returned); settle still spends
    ALREADY = "already"  # already settled or released: nothing changed
    UNKNOWN = "unknown"  # no such lease (never reserved, or forgotten after retention)


@dataclass(frozen=True, slots=True, kw_only=True)
class Spend:
    """What one attempt consumed: its cost, tokens, and whether it counts as a call (0 or 1)."""

    cost_nanos: int
    input_tokens: int = 0
    output_tokens: int = 0
    calls: int = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageTotals:
    """Sums of settled spend for one (model, provider); "" when the lease named none."""

    model: str
    provider: str
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_nanos: int = 0

    def plus(self, other: UsageTotals | Spend) -> UsageTotals:
        return UsageTotals(
            model=self.model,
            provider=self.provider,
            calls=self.calls + other.calls,
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cost_nanos=self.cost_nanos + other.cost_nanos,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Reservation:
    """The answer to ``reserve`` / ``extend``, with the job's figures *after* the operation."""

    status: ReserveStatus
    job_id: str
    budget_nanos: int | None  # None: unlimited
    spent_nanos: int
    reserved_nanos: int  # the job's total reserved, this lease included when granted
    lease_nanos: int = 0  # this lease's reserved amount (0 when nothing is held)

    @property
    def granted(self) -> bool:
        return self.status is ReserveStatus.GRANTED

    @property
    def remaining_nanos(self) -> int | None:
        return remaining(self.budget_nanos, self.spent_nanos, self.reserved_nanos)


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseView:
    lease_id: str
    job_id: str
    model: str
    provider: str
    amount_nanos: int  # reserved while ACTIVE; what was held when it closed otherwise
    expires_at: float
    state: LeaseState
    spent_nanos: int = 0  # what settle recorded


@dataclass(frozen=True, slots=True, kw_only=True)
class JobView:
    """A job's budget and money. ``spent_nanos`` equals the sum of ``by_model`` costs."""

    job_id: str
    budget_nanos: int | None  # None: unlimited
    spent_nanos: int
    reserved_nanos: int
    active_leases: int
    created_at: float
    updated_at: float
    by_model: tuple[UsageTotals, ...] = ()  # sorted by (model, provider)

    @property
    def remaining_nanos(self) -> int | None:
        return remaining(self.budget_nanos, self.spent_nanos, self.reserved_nanos)


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """Spend over a time range across all jobs, per (model, provider), sorted."""

    by_model: tuple[UsageTotals, ...] = ()
    by_provider: tuple[UsageTotals, ...] = field(init=False)
    total: UsageTotals = field(init=False)

    def __post_init__(self) -> None:
        providers: dict[str, UsageTotals] = {}
        total = UsageTotals(model="", provider="")
        for row in self.by_model:
            prev = providers.get(row.provider, UsageTotals(model="", provider=row.provider))
            providers[row.provider] = prev.plus(row)
            total = total.plus(row)
        object.__setattr__(self, "by_provider", tuple(providers[p] for p in sorted(providers)))
        object.__setattr__(self, "total", total)


def remaining(budget: int | None, spent: int, reserved: int) -> int | None:
    """What may still be reserved (never negative); None when the budget is unlimited."""
    return None if budget is None else max(0, budget - spent - reserved)


def fits(budget: int | None, spent: int, reserved: int, amount: int) -> bool:
    """The one reserve rule: refuse when ``budget - spent - reserved < amount``."""
    return budget is None or budget - spent - reserved >= amount


def bucket_start(now: float) -> int:
    """The start of the summary bucket a settle at ``now`` is counted in."""
    return int(now // SUMMARY_BUCKET_S) * SUMMARY_BUCKET_S


def check_nanos(name: str, value: int | None) -> None:
    if value is not None and not 0 <= value <= MAX_NANOS:
        raise ValueError(f"{name} must be in [0, {MAX_NANOS}], got {value}")


def check_lease_args(lease_id: str, amount_nanos: int, ttl_s: float, now: float) -> None:
    check_id("lease_id", lease_id)
    check_nanos("amount_nanos", amount_nanos)
    check_positive("ttl_s", ttl_s)
    check_finite("ttl_s", ttl_s)
    check_finite("now", now)


def check_spend(spend: Spend, now: float) -> None:
    check_nanos("spend.cost_nanos", spend.cost_nanos)
    check_nanos("spend.input_tokens", spend.input_tokens)
    check_nanos("spend.output_tokens", spend.output_tokens)
    check_non_negative("spend.calls", spend.calls)
    check_finite("now", now)


def sorted_totals(rows: Iterable[UsageTotals]) -> tuple[UsageTotals, ...]:
    return tuple(sorted(rows, key=lambda r: (r.model, r.provider)))


# -- operations as values, for ``LedgerStore.apply`` ------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReserveOp:
    """``LedgerStore.reserve`` as a value; its result is a ``Reservation``."""

    job_id: str
    lease_id: str
    amount_nanos: int
    ttl_s: float
    now: float
    default_budget_nanos: int | None
    model: str = ""
    provider: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExtendOp:
    """``LedgerStore.extend`` as a value; its result is a ``Reservation``."""

    lease_id: str
    add_nanos: int
    ttl_s: float
    now: float
    job_id: str = ""
    """The lease's job, when the caller knows it. A store that keeps each job's leases with the
    job (Redis: one shard per job) then finds the lease in one step, and a lease of another job
    is unknown there; a store that finds leases by id alone ignores it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class SettleOp:
    """``LedgerStore.settle`` as a value; its result is a ``LeaseEnd``."""

    lease_id: str
    spend: Spend
    now: float
    job_id: str = ""
    """The lease's job, when the caller knows it. A store that keeps each job's leases with the
    job (Redis: one shard per job) then finds the lease in one step, and a lease of another job
    is unknown there; a store that finds leases by id alone ignores it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReleaseOp:
    """``LedgerStore.release`` as a value; its result is a ``LeaseEnd``."""

    lease_id: str
    now: float
    job_id: str = ""
    """The lease's job, when the caller knows it. A store that keeps each job's leases with the
    job (Redis: one shard per job) then finds the lease in one step, and a lease of another job
    is unknown there; a store that finds leases by id alone ignores it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ChargeOp:
    """Record ``spend`` with no lease: the job spends ``spend.cost_nanos`` as told (no budget
    check: deciding is the ledger's job, as for ``settle``), and its totals by (model, provider)
    and the summary bucket of ``now`` grow by ``spend``. A job seen for the first time is created
    with ``default_budget_nanos``. An empty spend (all zero, ``calls`` 0 included) only creates
    the job. Its result is None.

    For a store that one process owns: that process holds its calls' reservations in memory,
    and an attempt's only write is what it spent (see the module docstring)."""

    job_id: str
    spend: Spend
    now: float
    default_budget_nanos: int | None
    model: str = ""
    provider: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpireOp:
    """``LedgerStore.expire`` as a value; its result is the number of leases expired."""

    now: float


LedgerOp = ReserveOp | ExtendOp | SettleOp | ReleaseOp | ChargeOp | ExpireOp
"""One operation of ``LedgerStore.apply``."""

LedgerResult = Reservation | LeaseEnd | int | None
"""What one ``LedgerOp`` answers (see each operation)."""


def check_op(op: LedgerOp) -> None:
    """The argument checks of ``op``'s method: ``ValueError`` for nonsense, before any change."""
    match op:
        case ReserveOp():
            check_id("job_id", op.job_id)
            check_lease_args(op.lease_id, op.amount_nanos, op.ttl_s, op.now)
            check_nanos("default_budget_nanos", op.default_budget_nanos)
        case ExtendOp():
            check_lease_args(op.lease_id, op.add_nanos, op.ttl_s, op.now)
        case SettleOp():
            check_id("lease_id", op.lease_id)
            check_spend(op.spend, op.now)
        case ReleaseOp():
            check_id("lease_id", op.lease_id)
            check_finite("now", op.now)
        case ChargeOp():
            check_id("job_id", op.job_id)
            check_spend(op.spend, op.now)
            check_nanos("default_budget_nanos", op.default_budget_nanos)
        case ExpireOp():
            check_finite("now", op.now)
        case _:
            raise ValueError(f"not a ledger operation: {op!r}")


def is_empty(spend: Spend) -> bool:
    """Nothing to add to any total (a ``ChargeOp`` that only creates its job)."""
    return not (spend.calls or spend.cost_nanos or spend.input_tokens or spend.output_tokens)
