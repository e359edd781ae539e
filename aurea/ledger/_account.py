"""The book's per-job records: an ``Account`` (a job's budget, spend and reservations) and a
``Lease`` (one attempt's reservation), and the ``BudgetExceeded`` an account refuses with."""

from __future__ import annotations

from dataclasses import dataclass

from aurea.errors import BudgetExceeded


@dataclass(slots=True, eq=False)
class Account:
    """One job as the book knows it: the store's figures plus what this process holds."""

    job_id: str
    budget: int | None  # None: unlimited
    spent: int
    reserved: int = 0
    active: int = 0

    def room(self) -> int | None:
        """What may still be reserved; None when unlimited (may be negative after a cut)."""
        return None if self.budget is None else self.budget - self.spent - self.reserved


@dataclass(slots=True, eq=False)
class Lease:
    """One attempt's reservation."""

    lease_id: str
    account: Account
    amount: int
    model: str
    provider: str
    renewed_at: float
    open: bool = True


def _budget_error(acct: Account, message: str, retry_after_s: float | None) -> BudgetExceeded:
    return BudgetExceeded(
        message,
        job_id=acct.job_id,
        spent_nanos=acct.spent,
        budget_nanos=acct.budget if acct.budget is not None else 0,
        reserved_nanos=acct.reserved,
        retry_after_s=retry_after_s,
    )
