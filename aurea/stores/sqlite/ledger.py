"""The durable ``LedgerStore`` on SQLite: each operation one ``BEGIN IMMEDIATE`` transaction, and
``apply`` many operations in one (group commit: one WAL commit for many calls' writes).

``ledger_jobs.reserved`` and ``active`` are kept equal to the sums over the job's active leases
inside the same transaction that changes a lease, so a ``kill -9`` at any point leaves them
consistent; ``expire_all`` on restart then returns a dead process's reservations.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Sequence

from aurea.stores._common import Page, check_finite, check_id, check_limit, check_positive
from aurea.stores.ledger import (
    CLOSED_LEASE_RETENTION_S,
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
    SettleOp,
    Spend,
    Summary,
    bucket_start,
    check_nanos,
    check_op,
)
from aurea.stores.sqlite._db import SqliteDatabase
from aurea.stores.sqlite._ledger_sql import (
    JOB_COLS,
    apply,
    close_lease,
    expire,
    expire_due,
    extend,
    job_view,
    reserve,
    settle,
    totals,
)

__all__ = ["SqliteLedgerStore"]


class SqliteLedgerStore:
    """Budgets, leases and spend in the shared SQLite file (see ``SqliteDatabase``)."""

    def __init__(
        self, db: SqliteDatabase, *, closed_lease_retention_s: float = CLOSED_LEASE_RETENTION_S
    ) -> None:
        check_positive("closed_lease_retention_s", closed_lease_retention_s)
        self._db = db
        self._retention_s = closed_lease_retention_s

    # -- reads ---------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> JobView | None:
        def op(conn: sqlite3.Connection) -> JobView | None:
            row = conn.execute(
                f"SELECT {JOB_COLS} FROM ledger_jobs WHERE job_id = ?", (job_id,)
            ).fetchone()
            return None if row is None else job_view(conn, row)

        return await self._db.read(op)

    async def list_jobs(
        self, *, prefix: str = "", after: str | None = None, limit: int = 100
    ) -> Page[JobView]:
        check_limit(limit)

        def op(conn: sqlite3.Connection) -> Page[JobView]:
            # substr() rather than LIKE: job ids may contain % and _.
            rows = conn.execute(
                f"SELECT {JOB_COLS} FROM ledger_jobs WHERE substr(job_id, 1, ?) = ? "
                "AND job_id > ? ORDER BY job_id LIMIT ?",
                (len(prefix), prefix, after or "", limit + 1),
            ).fetchall()
            views = tuple(job_view(conn, r) for r in rows[:limit])
            return Page(views, views[-1].job_id if len(rows) > limit else None)

        return await self._db.read(op)

    async def get_lease(self, lease_id: str) -> LeaseView | None:
        def op(conn: sqlite3.Connection) -> LeaseView | None:
            row = conn.execute(
                "SELECT job_id, model, provider, amount, expires_at, state, spent "
                "FROM ledger_leases WHERE lease_id = ?",
                (lease_id,),
            ).fetchone()
            if row is None:
                return None
            job_id, model, provider, amount, expires_at, state, spent = row
            return LeaseView(
                lease_id=lease_id,
                job_id=job_id,
                model=model,
                provider=provider,
                amount_nanos=amount,
                expires_at=expires_at,
                state=LeaseState(state),
                spent_nanos=spent,
            )

        return await self._db.read(op)

    async def summary(self, *, since: float | None = None, until: float | None = None) -> Summary:
        low = -math.inf if since is None else bucket_start(since)
        high = math.inf if until is None else until

        def op(conn: sqlite3.Connection) -> Summary:
            rows = conn.execute(
                "SELECT model, provider, SUM(calls), SUM(input_tokens), SUM(output_tokens), "
                "SUM(cost) FROM ledger_buckets WHERE bucket >= ? AND bucket < ? "
                "GROUP BY model, provider ORDER BY model, provider",
                (low, high),
            ).fetchall()
            return Summary(by_model=tuple(totals(r) for r in rows))

        return await self._db.read(op)

    # -- writes --------------------------------------------------------------------------------

    async def set_budget(self, job_id: str, budget_nanos: int | None, *, now: float) -> JobView:
        check_id("job_id", job_id)
        check_nanos("budget_nanos", budget_nanos)
        check_finite("now", now)

        def op(conn: sqlite3.Connection) -> JobView:
            row = conn.execute(
                "INSERT INTO ledger_jobs (job_id, budget, created_at, updated_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO UPDATE SET budget = excluded.budget, "
                f"updated_at = excluded.updated_at RETURNING {JOB_COLS}",
                (job_id, budget_nanos, now, now),
            ).fetchone()
            return job_view(conn, row)

        return await self._db.run(op)

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
        return await self._db.run(lambda conn: reserve(conn, op))

    async def extend(
        self, lease_id: str, add_nanos: int, ttl_s: float, *, now: float
    ) -> Reservation:
        op = ExtendOp(lease_id=lease_id, add_nanos=add_nanos, ttl_s=ttl_s, now=now)
        check_op(op)
        return await self._db.run(lambda conn: extend(conn, op))

    async def settle(self, lease_id: str, spend: Spend, *, now: float) -> LeaseEnd:
        op = SettleOp(lease_id=lease_id, spend=spend, now=now)
        check_op(op)
        return await self._db.run(lambda conn: settle(conn, op))

    async def release(self, lease_id: str, *, now: float) -> LeaseEnd:
        op = ReleaseOp(lease_id=lease_id, now=now)
        check_op(op)
        return await self._db.run(
            lambda conn: close_lease(conn, lease_id, LeaseState.RELEASED, 0, now)[0]
        )

    async def expire(self, *, now: float) -> int:
        op = ExpireOp(now=now)
        check_op(op)
        return await self._db.run(lambda conn: expire(conn, op, self._retention_s))

    async def expire_all(self, *, now: float) -> int:
        check_finite("now", now)
        return await self._db.run(lambda conn: expire_due(conn, math.inf, now))

    async def apply(self, ops: Sequence[LedgerOp]) -> tuple[LedgerResult, ...]:
        ops = tuple(ops)  # the caller's sequence may change while the store thread runs
        for op in ops:  # every check before the transaction: all or nothing
            check_op(op)
        if not ops:
            return ()
        return await self._db.run(lambda conn: apply(conn, ops, self._retention_s))
