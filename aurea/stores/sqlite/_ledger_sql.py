"""The SQL steps of the SQLite ledger's transactions (one function per operation, and ``apply``
for a sequence of them), and its row mapping.

Every function here runs inside a transaction that ``SqliteLedgerStore`` opened, on arguments it
checked already; none commits.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, assert_never

from aurea.stores.ledger import (
    ChargeOp,
    ExpireOp,
    ExtendOp,
    JobView,
    LeaseEnd,
    LeaseState,
    LedgerOp,
    LedgerResult,
    ReleaseOp,
    Reservation,
    ReserveOp,
    ReserveStatus,
    SettleOp,
    Spend,
    UsageTotals,
    bucket_start,
    fits,
    is_empty,
)

__all__ = [
    "JOB_COLS",
    "TOTALS_COLS",
    "add_totals",
    "answer",
    "apply",
    "charge",
    "close_lease",
    "expire",
    "expire_due",
    "extend",
    "job_view",
    "reserve",
    "settle",
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


def reserve(conn: sqlite3.Connection, op: ReserveOp) -> Reservation:
    job_id, lease_id, amount, now = op.job_id, op.lease_id, op.amount_nanos, op.now
    lease = conn.execute(
        "SELECT job_id, state, amount FROM ledger_leases WHERE lease_id = ?", (lease_id,)
    ).fetchone()
    if lease is not None:
        if lease[1] == LeaseState.ACTIVE:
            return answer(conn, ReserveStatus.GRANTED, lease[0], lease[2])
        return answer(conn, ReserveStatus.LEASE_CLOSED, lease[0])
    conn.execute(
        "INSERT INTO ledger_jobs (job_id, budget, created_at, updated_at) "
        "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        (job_id, op.default_budget_nanos, now, now),
    )
    budget, spent, reserved = conn.execute(
        "SELECT budget, spent, reserved FROM ledger_jobs WHERE job_id = ?", (job_id,)
    ).fetchone()
    if not fits(budget, spent, reserved, amount):
        return answer(conn, ReserveStatus.OVER_BUDGET, job_id)
    conn.execute(
        "UPDATE ledger_jobs SET reserved = reserved + ?, active = active + 1, "
        "updated_at = ? WHERE job_id = ?",
        (amount, now, job_id),
    )
    conn.execute(
        "INSERT INTO ledger_leases (lease_id, job_id, model, provider, amount, "
        "expires_at, state) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (lease_id, job_id, op.model, op.provider, amount, now + op.ttl_s, LeaseState.ACTIVE),
    )
    return answer(conn, ReserveStatus.GRANTED, job_id, amount)


def extend(conn: sqlite3.Connection, op: ExtendOp) -> Reservation:
    lease_id, add, now = op.lease_id, op.add_nanos, op.now
    lease = conn.execute(
        "SELECT job_id, state, amount FROM ledger_leases WHERE lease_id = ?", (lease_id,)
    ).fetchone()
    if lease is None:
        return answer(conn, ReserveStatus.LEASE_CLOSED, "")
    job_id, state, amount = lease
    if state != LeaseState.ACTIVE:
        return answer(conn, ReserveStatus.LEASE_CLOSED, job_id)
    budget, spent, reserved = conn.execute(
        "SELECT budget, spent, reserved FROM ledger_jobs WHERE job_id = ?", (job_id,)
    ).fetchone()
    if add and not fits(budget, spent, reserved, add):
        return answer(conn, ReserveStatus.OVER_BUDGET, job_id, amount)
    conn.execute(
        "UPDATE ledger_jobs SET reserved = reserved + ?, updated_at = ? WHERE job_id = ?",
        (add, now, job_id),
    )
    conn.execute(
        "UPDATE ledger_leases SET amount = amount + ?, expires_at = ? WHERE lease_id = ?",
        (add, now + op.ttl_s, lease_id),
    )
    return answer(conn, ReserveStatus.GRANTED, job_id, amount + add)


def settle(conn: sqlite3.Connection, op: SettleOp) -> LeaseEnd:
    spend = op.spend
    end, closed = close_lease(conn, op.lease_id, LeaseState.SETTLED, spend.cost_nanos, op.now)
    if closed is not None:
        job_id, model, provider = closed
        add_totals(conn, "ledger_job_models", "job_id", job_id, model, provider, spend)
        add_totals(conn, "ledger_buckets", "bucket", bucket_start(op.now), model, provider, spend)
    return end


def expire(conn: sqlite3.Connection, op: ExpireOp, retention_s: float) -> int:
    expired = expire_due(conn, op.now, None)
    conn.execute(
        "DELETE FROM ledger_leases WHERE state != 'active' AND closed_at <= ?",
        (op.now - retention_s,),
    )
    return expired


_TotalsKey = tuple[Any, str, str]  # (job id or bucket, model, provider)


def charge(conn: sqlite3.Connection, ops: Sequence[ChargeOp]) -> None:
    """Apply consecutive charges. They only add, so they are summed first: one row update per
    job, per (job, model, provider) and per (bucket, model, provider), however many calls."""
    jobs: dict[str, list[Any]] = {}  # job -> [default budget, cost, first now, last now]
    by_job: dict[_TotalsKey, list[int]] = {}  # [calls, input, output, cost]
    by_bucket: dict[_TotalsKey, list[int]] = {}
    for op in ops:
        spend = op.spend
        job = jobs.get(op.job_id)
        if job is None:
            jobs[op.job_id] = [op.default_budget_nanos, spend.cost_nanos, op.now, op.now]
        else:
            job[1] += spend.cost_nanos
            job[3] = op.now
        if is_empty(spend):
            continue
        for sums, key in (
            (by_job, (op.job_id, op.model, op.provider)),
            (by_bucket, (bucket_start(op.now), op.model, op.provider)),
        ):
            row = sums.get(key)
            if row is None:
                sums[key] = [spend.calls, spend.input_tokens, spend.output_tokens, spend.cost_nanos]
            else:
                row[0] += spend.calls
                row[1] += spend.input_tokens
                row[2] += spend.output_tokens
                row[3] += spend.cost_nanos
    conn.executemany(
        "INSERT INTO ledger_jobs (job_id, budget, spent, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO UPDATE SET spent = spent + excluded.spent, "
        "updated_at = excluded.updated_at",
        [(job_id, *row) for job_id, row in jobs.items()],
    )
    for table, column, sums in (
        ("ledger_job_models", "job_id", by_job),
        ("ledger_buckets", "bucket", by_bucket),
    ):
        if sums:
            conn.executemany(
                f"INSERT INTO {table} ({column}, {TOTALS_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT DO UPDATE SET calls = calls + excluded.calls, "
                "input_tokens = input_tokens + excluded.input_tokens, "
                "output_tokens = output_tokens + excluded.output_tokens, "
                "cost = cost + excluded.cost",
                [(*k, *row) for k, row in sums.items()],
            )


def apply(
    conn: sqlite3.Connection, ops: Sequence[LedgerOp], retention_s: float
) -> tuple[LedgerResult, ...]:
    """Run ``ops`` in order inside the caller's one transaction. A run of consecutive charges
    is applied at once (``charge``): they commute with one another, and nothing between them
    reads what they change."""
    results: list[LedgerResult] = []
    run: list[ChargeOp] = []
    for op in ops:
        if isinstance(op, ChargeOp):
            run.append(op)
            results.append(None)
            continue
        if run:
            charge(conn, run)
            run = []
        results.append(_one(conn, op, retention_s))
    if run:
        charge(conn, run)
    return tuple(results)


def _one(conn: sqlite3.Connection, op: LedgerOp, retention_s: float) -> LedgerResult:
    match op:
        case ReserveOp():
            return reserve(conn, op)
        case ExtendOp():
            return extend(conn, op)
        case SettleOp():
            return settle(conn, op)
        case ReleaseOp():
            return close_lease(conn, op.lease_id, LeaseState.RELEASED, 0, op.now)[0]
        case ChargeOp():
            charge(conn, (op,))
            return None
        case ExpireOp():
            return expire(conn, op, retention_s)
        case _:
            assert_never(op)
