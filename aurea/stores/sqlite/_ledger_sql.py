"""The SQL steps the SQLite ledger's transactions share, and its row mapping.

Every function here runs inside a transaction that ``SqliteLedgerStore`` opened; none commits.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from aurea.stores.ledger import (
    JobView,
    LeaseEnd,
    LeaseState,
    Reservation,
    ReserveStatus,
    Spend,
    UsageTotals,
)

__all__ = [
    "JOB_COLS",
    "TOTALS_COLS",
    "add_totals",
    "answer",
    "close_lease",
    "expire_due",
    "job_view",
    "totals",
]

JOB_COLS = "job_id, budget, spent, reserved, active, created_at, updated_at"
TOTALS_COLS = "model, provider, calls, input_tokens, output_tokens, cost"


def totals(row: Any) -> UsageTotals:
    model, provider, calls, input_tokens, output_tokens, cost = row
    return UsageTotals(
        model=model,
        provider=provider,
        calls=calls,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cost_nanos=cost,
    )


def job_view(conn: sqlite3.Connection, row: Any) -> JobView:
    job_id, budget, spent, reserved, active, created_at, updated_at = row
    by_model = conn.execute(
        f"SELECT {TOTALS_COLS} FROM ledger_job_models WHERE job_id = ? ORDER BY model, provider",
        (job_id,),
    ).fetchall()
    return JobView(
        job_id=job_id,
        budget_nanos=budget,
        spent_nanos=spent,
        reserved_nanos=reserved,
        active_leases=active,
        created_at=created_at,
        updated_at=updated_at,
        by_model=tuple(totals(r) for r in by_model),
    )


def answer(
    conn: sqlite3.Connection, status: ReserveStatus, job_id: str, lease_nanos: int = 0
) -> Reservation:
    row = conn.execute(
        "SELECT budget, spent, reserved FROM ledger_jobs WHERE job_id = ?", (job_id,)
    ).fetchone()
    budget, spent, reserved = row if row is not None else (0, 0, 0)
    return Reservation(
        status=status,
        job_id=job_id,
        budget_nanos=budget,
        spent_nanos=spent,
        reserved_nanos=reserved,
        lease_nanos=lease_nanos,
    )


def add_totals(
    conn: sqlite3.Connection,
    table: str,
    key: str,
    key_value: object,
    model: str,
    provider: str,
    spend: Spend,
) -> None:
    conn.execute(
        f"INSERT INTO {table} ({key}, {TOTALS_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
        f"ON CONFLICT DO UPDATE SET calls = calls + excluded.calls, "
        "input_tokens = input_tokens + excluded.input_tokens, "
        "output_tokens = output_tokens + excluded.output_tokens, cost = cost + excluded.cost",
        (
            key_value,
            model,
            provider,
            spend.calls,
            spend.input_tokens,
            spend.output_tokens,
            spend.cost_nanos,
        ),
    )


def close_lease(
    conn: sqlite3.Connection, lease_id: str, state: LeaseState, spent: int, now: float
) -> tuple[LeaseEnd, tuple[str, str, str] | None]:
    """Close the lease; returns what happened and, if it closed, (job, model, provider)."""
    lease = conn.execute(
        "SELECT job_id, model, provider, amount, state FROM ledger_leases WHERE lease_id = ?",
        (lease_id,),
    ).fetchone()
    if lease is None:
        return LeaseEnd.UNKNOWN, None
    job_id, model, provider, amount, old_state = lease
    if old_state in (LeaseState.SETTLED, LeaseState.RELEASED):
        return LeaseEnd.ALREADY, None
    active = old_state == LeaseState.ACTIVE
    conn.execute(
        "UPDATE ledger_jobs SET reserved = reserved - ?, active = active - ?, "
        "spent = spent + ?, updated_at = ? WHERE job_id = ?",
        (amount if active else 0, int(active), spent, now, job_id),
    )
    conn.execute(
        "UPDATE ledger_leases SET state = ?, spent = ?, closed_at = ? WHERE lease_id = ?",
        (state, spent, now, lease_id),
    )
    return (LeaseEnd.CLOSED if active else LeaseEnd.LATE), (job_id, model, provider)


def expire_due(conn: sqlite3.Connection, due: float, closed_at: float | None) -> int:
    # Per-job sums first (from the leases about to expire), then the leases themselves.
    conn.execute(
        "UPDATE ledger_jobs SET reserved = reserved - e.amount, active = active - e.n "
        "FROM (SELECT job_id, SUM(amount) AS amount, COUNT(*) AS n FROM ledger_leases "
        "WHERE state = 'active' AND expires_at <= ? GROUP BY job_id) AS e "
        "WHERE ledger_jobs.job_id = e.job_id",
        (due,),
    )
    return conn.execute(
        "UPDATE ledger_leases SET state = 'expired', closed_at = coalesce(?, expires_at) "
        "WHERE state = 'active' AND expires_at <= ?",
        (closed_at, due),
    ).rowcount
