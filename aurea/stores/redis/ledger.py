"""The shared ``LedgerStore`` on Redis: budgets, leases and spend that every replica sees, each
operation (or ``apply`` sequence) one Lua script (``_ledger_lua``), so the store decides every
reservation atomically across replicas.

Leases expire by their TTL alone (``expire``, run by every replica's ledger tick): a replica
killed mid-call stops renewing, and its reservations return once their expiry passes.
``expire_all`` exists for the protocol's sake and is never run by a server on a shared store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

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
    sorted_totals,
)
from aurea.stores.redis._client import RedisClient, fmt, num, text
from aurea.stores.redis._ledger_lua import APPLY

__all__ = ["RedisLedgerStore"]

_SEP = "\x1f"
_JOB_FIELDS = ("budget", "spent", "reserved", "active", "created_at", "updated_at")


def _budget(value: int | None) -> str:
    return "" if value is None else str(value)


def _encode(op: LedgerOp) -> list[str]:
    match op:
        case ReserveOp():
            return [
                "R",
                op.job_id,
                op.lease_id,
                str(op.amount_nanos),
                fmt(op.ttl_s),
                fmt(op.now),
                _budget(op.default_budget_nanos),
                op.model,
                op.provider,
            ]
        case ExtendOp():
            return ["X", op.lease_id, str(op.add_nanos), fmt(op.ttl_s), fmt(op.now)]
        case SettleOp():
            s = op.spend
            return [
                "S",
                op.lease_id,
                str(s.cost_nanos),
                str(s.input_tokens),
                str(s.output_tokens),
                str(s.calls),
                fmt(op.now),
            ]
        case ReleaseOp():
            return ["L", op.lease_id, fmt(op.now)]
        case ChargeOp():
            s = op.spend
            return [
                "C",
                op.job_id,
                str(s.cost_nanos),
                str(s.input_tokens),
                str(s.output_tokens),
                str(s.calls),
                fmt(op.now),
                _budget(op.default_budget_nanos),
                op.model,
                op.provider,
            ]
        case ExpireOp():
            return ["E", fmt(op.now)]
    raise ValueError(f"not a ledger operation: {op!r}")  # pragma: no cover (check_op first)


def _decode(row: list[Any]) -> LedgerResult:
    kind = text(row[0])
    if kind == "r":
        status, job, budget, spent, reserved, lease = (text(v) for v in row[1:7])
        return Reservation(
            status=ReserveStatus(status),
            job_id=job,
            budget_nanos=None if budget == "" else int(budget),
            spent_nanos=int(spent),
            reserved_nanos=int(reserved),
            lease_nanos=int(lease),
        )
    if kind == "e":
        return LeaseEnd(text(row[1]))
    if kind == "n":
        return int(row[1])
    return None


def _totals(raw: dict[Any, Any]) -> list[UsageTotals]:
    """Rows of a ``model SEP provider SEP field -> int`` hash (a job's or a bucket's)."""
    rows: dict[tuple[str, str], dict[str, int]] = {}
    for k, v in raw.items():
        model, provider, field = text(k).rsplit(_SEP, 2)
        rows.setdefault((model, provider), {})[field] = int(v)
    return [
        UsageTotals(
            model=m,
            provider=p,
            calls=f.get("calls", 0),
            input_tokens=f.get("input", 0),
            output_tokens=f.get("output", 0),
            cost_nanos=f.get("cost", 0),
        )
        for (m, p), f in rows.items()
    ]


class RedisLedgerStore:
    """Budgets and leases on the Redis server the replicas share."""

    def __init__(
        self, client: RedisClient, *, closed_lease_retention_s: float = CLOSED_LEASE_RETENTION_S
    ) -> None:
        check_positive("closed_lease_retention_s", closed_lease_retention_s)
        self._client = client
        self._retention = fmt(closed_lease_retention_s)
        self._apply = client.script(APPLY)
        self._jobs = client.key("led", "{ledger}", "jobs")
        self._leases = client.key("led", "{ledger}", "leases")

    def _job_key(self, job_id: str, *parts: str) -> str:
        return self._client.key("led", f"{{job:{job_id}}}", *parts)

    async def _run(self, what: str, args: list[str]) -> list[Any]:
        full = [self._client.prefix, self._retention, *args]
        rows: list[Any] = await self._client.call(what, lambda: self._apply(keys=[], args=full))
        return rows

    # -- writes --------------------------------------------------------------------------------

    async def apply(self, ops: Sequence[LedgerOp]) -> tuple[LedgerResult, ...]:
        for op in ops:  # every check before any change: all or nothing
            check_op(op)
        if not ops:
            return ()
        args: list[str] = []
        for op in ops:
            args += _encode(op)
        return tuple(_decode(row) for row in await self._run("ledger apply", args))

    async def _one(self, op: LedgerOp) -> LedgerResult:
        return (await self.apply((op,)))[0]

    async def consume(self, items: Sequence[tuple[str, ChargeOp]]) -> None:
        """Charges that also shrink a lease: per ``(lease_id, charge)``, the job spends the
        charge (as ``ChargeOp``) and the lease, while active and the job's, holds that much less
        (at most all it holds). One script for all: the multi-replica ledger's group commit."""
        for _, op in items:
            check_op(op)
        if not items:
            return
        args: list[str] = []
        for lease_id, op in items:
            s = op.spend
            args += [
                "K",
                op.job_id,
                lease_id,
                str(s.cost_nanos),
                str(s.input_tokens),
                str(s.output_tokens),
                str(s.calls),
                fmt(op.now),
                _budget(op.default_budget_nanos),
                op.model,
                op.provider,
            ]
        await self._run("ledger consume", args)

    async def set_budget(self, job_id: str, budget_nanos: int | None, *, now: float) -> JobView:
        check_id("job_id", job_id)
        check_nanos("budget_nanos", budget_nanos)
        check_finite("now", now)
        await self._run("ledger set budget", ["B", job_id, _budget(budget_nanos), fmt(now)])
        view = await self.get_job(job_id)
        assert view is not None
        return view

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
        result = await self._one(op)
        assert isinstance(result, Reservation)
        return result

    async def extend(
        self, lease_id: str, add_nanos: int, ttl_s: float, *, now: float
    ) -> Reservation:
        result = await self._one(
            ExtendOp(lease_id=lease_id, add_nanos=add_nanos, ttl_s=ttl_s, now=now)
        )
        assert isinstance(result, Reservation)
        return result

    async def settle(self, lease_id: str, spend: Spend, *, now: float) -> LeaseEnd:
        result = await self._one(SettleOp(lease_id=lease_id, spend=spend, now=now))
        assert isinstance(result, LeaseEnd)
        return result

    async def release(self, lease_id: str, *, now: float) -> LeaseEnd:
        result = await self._one(ReleaseOp(lease_id=lease_id, now=now))
        assert isinstance(result, LeaseEnd)
        return result

    async def expire(self, *, now: float) -> int:
        result = await self._one(ExpireOp(now=now))
        assert isinstance(result, int)
        return result

    async def expire_all(self, *, now: float) -> int:
        check_finite("now", now)
        rows = await self._run("ledger expire all", ["A", fmt(now)])
        result = _decode(rows[0])
        assert isinstance(result, int)
        return result

    # -- reads ---------------------------------------------------------------------------------

    async def _views(self, job_ids: Sequence[str]) -> list[JobView | None]:
        if not job_ids:
            return []
        redis = self._client.redis

        async def op() -> list[Any]:
            # Plain one-key commands, pipelined: each job is its own slot on a Cluster.
            async with redis.pipeline(transaction=False) as pipe:
                for job_id in job_ids:
                    pipe.hmget(self._job_key(job_id), list(_JOB_FIELDS))
                    pipe.hgetall(self._job_key(job_id, "m"))
                results = await pipe.execute()
            return [(results[i], dict(results[i + 1])) for i in range(0, len(results), 2)]

        rows = await self._client.call("ledger read", op)
        views: list[JobView | None] = []
        for job_id, (fields, by_model) in zip(job_ids, rows, strict=True):
            budget, spent, reserved, active, created, updated = fields
            if spent is None:
                views.append(None)
                continue
            pairs = by_model
            views.append(
                JobView(
                    job_id=job_id,
                    budget_nanos=None if text(budget) == "" else int(budget),
                    spent_nanos=int(spent),
                    reserved_nanos=int(reserved),
                    active_leases=int(active),
                    created_at=num(created),
                    updated_at=num(updated),
                    by_model=sorted_totals(_totals(pairs)),
                )
            )
        return views

    async def get_job(self, job_id: str) -> JobView | None:
        return (await self._views([job_id]))[0]

    async def list_jobs(
        self, *, prefix: str = "", after: str | None = None, limit: int = 100
    ) -> Page[JobView]:
        check_limit(limit)
        low = f"({after}" if after is not None and after >= prefix else f"[{prefix}"
        high = f"[{prefix}\xff" if prefix else "+"
        redis = self._client.redis
        raw = await self._client.call(
            "ledger list jobs",
            lambda: redis.zrangebylex(self._jobs, low, high, start=0, num=limit + 1),
        )
        ids = [text(j) for j in raw]
        ids = [j for j in ids if j.startswith(prefix)]
        page = ids[:limit]
        views = tuple(v for v in await self._views(page) if v is not None)
        return Page(views, page[-1] if len(ids) > limit else None)

    async def get_lease(self, lease_id: str) -> LeaseView | None:
        redis = self._client.redis
        job = await self._client.call(
            "ledger get lease", lambda: redis.hget(self._leases, lease_id)
        )
        if job is None:
            return None
        job_id = text(job)
        key = self._job_key(job_id, "l", lease_id)
        raw = await self._client.call("ledger get lease", lambda: redis.hgetall(key))
        if not raw:
            return None
        f = {text(k): text(v) for k, v in raw.items()}
        return LeaseView(
            lease_id=lease_id,
            job_id=job_id,
            model=f["model"],
            provider=f["provider"],
            amount_nanos=int(f["amount"]),
            expires_at=float(f["expires_at"]),
            state=LeaseState(f["state"]),
            spent_nanos=int(f["spent"]),
        )

    async def summary(self, *, since: float | None = None, until: float | None = None) -> Summary:
        low = -math.inf if since is None else bucket_start(since)
        high = math.inf if until is None else until
        redis = self._client.redis

        async def op() -> list[dict[Any, Any]]:
            # Each job keeps its own hourly buckets (no cross-job hot key); the summary is
            # their sum: one read of the job index, then one pipelined read per job.
            jobs = [text(j) for j in await redis.zrangebylex(self._jobs, "-", "+")]
            async with redis.pipeline(transaction=False) as pipe:
                for job_id in jobs:
                    pipe.hgetall(self._job_key(job_id, "sum"))
                return list(await pipe.execute())

        picked: dict[str, int] = {}
        for raw in await self._client.call("ledger summary", op):
            for k, v in raw.items():
                key = text(k)
                bucket = key.split(_SEP, 1)[0]
                if low <= int(bucket) < high:
                    picked[key] = picked.get(key, 0) + int(v)
        # The range's buckets summed per (model, provider).
        per_key: dict[tuple[str, str], UsageTotals] = {}
        for k, v in picked.items():
            _, model, provider, field = k.split(_SEP, 3)
            prev = per_key.get((model, provider)) or UsageTotals(model=model, provider=provider)
            add = v
            per_key[(model, provider)] = UsageTotals(
                model=model,
                provider=provider,
                calls=prev.calls + (add if field == "calls" else 0),
                input_tokens=prev.input_tokens + (add if field == "input" else 0),
                output_tokens=prev.output_tokens + (add if field == "output" else 0),
                cost_nanos=prev.cost_nanos + (add if field == "cost" else 0),
            )
        return Summary(by_model=sorted_totals(per_key.values()))
