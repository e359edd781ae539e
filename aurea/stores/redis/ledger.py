"""The shared ``LedgerStore`` on Redis: budgets, leases and spend that every replica sees, each
job's operations applied atomically by one Lua script (``_ledger_lua.JOB``), so the store
decides every reservation atomically across replicas.

**Layout** (``P`` is the key prefix). Everything a job owns carries its hash tag, so one job's
script lands on one Redis Cluster shard and declares every key it touches: ``P:led:{job:ID}``
(figures), ``:exp`` (active leases by expiry), ``:l`` (leases), ``:la`` (their amounts),
``:closed`` (closed leases by closing time), ``:m`` (totals by model), ``:sum`` (hourly summary),
``:seen`` (each writer's last consume batch). Across jobs, under ``{ledger}``: ``:jobs`` (the job
index, for ListJobs and the summary), ``:exp`` (jobs by when they next need a sweep) and ``:touch``
(each job's last reserve, see below). ``P:led:{lease:ID}`` names a lease's job, so that an
operation given a lease id alone finds the job (the ledger always passes the job and never reads
it).

**apply**: operations are grouped by job (each job's in order; different jobs share no key),
and one store call carries the index writes and one script per job, inside MULTI/EXEC: on one
server (or a Sentinel primary) the whole sequence is still one atomic step, so a failed call
is retried whole. On a Redis Cluster each job's script goes to its own shard: atomic per job,
which is all a ledger decision needs (see ``_execute_on_cluster`` for why a retry is safe).

**Expiry.** Leases expire by their TTL alone (``expire``, run by every replica's ledger tick):
a replica killed mid-call stops renewing, and its reservations return once their expiry
passes. A sweep reads the jobs due in the expiry index (``CLAIM``, with each job's last
reserve), runs each due job's ``E`` operation (which answers when the job is next due), and
then moves the index (``SETTLE``) only for jobs with no reserve since the claim. A reserve
records its lease id as its job's last reserve and lowers the job's index entry before the
reserve itself (in the same MULTI; first, on a Cluster), so a sweep whose claim came before a
reserve never drops the entry that reserve needs; an index that is left too early only costs
an extra visit. A job leaves both ``{ledger}`` hashes once it holds no lease, active or
remembered. ``expire_all`` exists for the protocol's sake and is never run by a server on
a shared store.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

import structlog

from aurea.stores._common import (
    Page,
    check_finite,
    check_id,
    check_limit,
    check_positive,
)
from aurea.stores.ledger import (
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
    SettleOp,
    Spend,
    Summary,
    UsageTotals,
    bucket_start,
    check_nanos,
    check_op,
    sorted_totals,
)
from aurea.stores.redis._client import fmt, text
from aurea.stores.redis._ledger_calls import SWEEP_JOBS, LedgerCalls
from aurea.stores.redis._ledger_codec import (
    _SEP,
    _UNKNOWN_LEASE,
    _budget,
    _Call,
    _consume,
    _decode,
    _encode,
)

__all__ = ["RedisLedgerStore"]

log = structlog.get_logger("aurea.stores")


class RedisLedgerStore(LedgerCalls):
    """Budgets and leases on the Redis server the replicas share."""

    # -- writes --------------------------------------------------------------------------------

    async def apply(self, ops: Sequence[LedgerOp]) -> tuple[LedgerResult, ...]:
        for op in ops:  # every check before any change: all or nothing
            check_op(op)
        if not ops:
            return ()
        owners = await self._owners(ops)
        claims: dict[int, list[tuple[str, str]]] = {}
        for i, op in enumerate(ops):
            if isinstance(op, ExpireOp):
                claims[i] = await self._claim_due(op.now)
        results: list[LedgerResult] = [None] * len(ops)
        calls: list[_Call] = []
        index: list[tuple[str, tuple[Any, ...]]] = []  # plain index writes, before the scripts
        segment: dict[str, _Call] = {}  # this run of job operations' script per job
        leased: dict[str, None] = {}  # jobs whose leases this sequence reserved or extended
        new_jobs: set[str] = set()
        for i, op in enumerate(ops):
            if isinstance(op, ExpireOp):
                calls += segment.values()
                segment = {}
                results[i] = 0
                seen = dict(claims[i])
                for job in [*seen, *(j for j in leased if j not in seen)]:
                    calls.append(_Call(job, ["E", fmt(op.now)], [i], claimed=seen.get(job)))
                continue
            owner = op.job_id if isinstance(op, ReserveOp | ChargeOp) else owners.get(op.lease_id)
            if not owner:  # a lease this store has never seen
                results[i] = _UNKNOWN_LEASE if isinstance(op, ExtendOp) else LeaseEnd.UNKNOWN
                continue
            job = owner
            call = segment.get(job) or segment.setdefault(job, _Call(job))
            call.args += _encode(op)
            call.answers.append(i)
            if isinstance(op, ReserveOp | ChargeOp) and job not in self._indexed:
                new_jobs.add(job)
            if isinstance(op, ReserveOp):
                leased[job] = None
                # Before the reserve itself: a sweep that claimed before it must not drop it.
                index.append(("zadd_lt", (job, op.now + op.ttl_s, op.lease_id)))
            if isinstance(op, ReserveOp | ExtendOp):
                leased[job] = None
                index.append(("owner", (op.lease_id, job, op.ttl_s)))
            elif isinstance(op, SettleOp | ReleaseOp):
                index.append(("owner", (op.lease_id, job, 0.0)))
        calls += segment.values()
        rows = await self._client.call(
            "ledger apply", lambda: self._execute(sorted(new_jobs), index, calls)
        )
        visits: dict[int, list[tuple[_Call, str]]] = {}
        for call, answer in zip(calls, rows, strict=True):
            for i, row in zip(call.answers, answer, strict=True):
                if isinstance(ops[i], ExpireOp):
                    expired = results[i]
                    assert isinstance(expired, int)
                    results[i] = expired + int(row[1])
                    visits.setdefault(i, []).append((call, text(row[2])))
                else:
                    results[i] = _decode(row)
        self._remember(new_jobs)
        await self._settle_due(visits)
        return tuple(results)

    async def _one(self, op: LedgerOp) -> LedgerResult:
        return (await self.apply((op,)))[0]

    async def consume(
        self, items: Sequence[tuple[str, ChargeOp]], *, writer: str = "", seq: int = 0
    ) -> None:
        """Charges that also shrink a lease: per ``(lease_id, charge)``, the job spends the
        charge (as ``ChargeOp``) and the lease, while active and the job's, holds that much less
        (at most all it holds). One store call for all: the multi-replica ledger's group
        commit.

        ``writer`` and ``seq`` (a writer's batches numbered upward, a retry keeping its number)
        make a retried batch apply once: per job, a batch whose ``seq`` is not above the last
        one applied from ``writer`` changes nothing, so a store call whose answer was lost
        (a timeout after Redis ran it) can be sent again without charging twice."""
        for _, op in items:
            check_op(op)
        if writer:
            check_positive("seq", seq)
        if not items:
            return
        per_job: dict[str, _Call] = {}
        new_jobs: set[str] = set()
        for lease_id, op in items:
            call = per_job.get(op.job_id)
            if call is None:
                call = per_job[op.job_id] = _Call(
                    op.job_id, ["D", writer, str(seq)] if writer else []
                )
            call.args += _consume(lease_id, op)
            if op.job_id not in self._indexed:
                new_jobs.add(op.job_id)
        calls = list(per_job.values())
        await self._client.call(
            "ledger consume", lambda: self._execute(sorted(new_jobs), [], calls)
        )
        self._remember(new_jobs)

    async def set_budget(self, job_id: str, budget_nanos: int | None, *, now: float) -> JobView:
        check_id("job_id", job_id)
        check_nanos("budget_nanos", budget_nanos)
        check_finite("now", now)
        call = _Call(job_id, ["B", _budget(budget_nanos), fmt(now)])
        await self._client.call("ledger set budget", lambda: self._execute([job_id], [], [call]))
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
        self, lease_id: str, add_nanos: int, ttl_s: float, *, now: float, job_id: str = ""
    ) -> Reservation:
        op = ExtendOp(lease_id=lease_id, add_nanos=add_nanos, ttl_s=ttl_s, now=now, job_id=job_id)
        result = await self._one(op)
        assert isinstance(result, Reservation)
        return result

    async def settle(
        self, lease_id: str, spend: Spend, *, now: float, job_id: str = ""
    ) -> LeaseEnd:
        result = await self._one(SettleOp(lease_id=lease_id, spend=spend, now=now, job_id=job_id))
        assert isinstance(result, LeaseEnd)
        return result

    async def release(self, lease_id: str, *, now: float, job_id: str = "") -> LeaseEnd:
        result = await self._one(ReleaseOp(lease_id=lease_id, now=now, job_id=job_id))
        assert isinstance(result, LeaseEnd)
        return result

    async def expire(self, *, now: float) -> int:
        result = await self._one(ExpireOp(now=now))
        assert isinstance(result, int)
        return result

    async def expire_all(self, *, now: float) -> int:
        """Every job in the index, a page at a time: not a server's path (see the module)."""
        check_finite("now", now)
        redis = self._client.redis
        total, after = 0, "-"
        while True:
            page = await self._client.call(
                "ledger expire all",
                partial(redis.zrangebylex, self._jobs, after, "+", start=0, num=SWEEP_JOBS),
            )
            jobs = [text(j) for j in page]
            if not jobs:
                return total
            calls = [_Call(job, ["A", fmt(now)]) for job in jobs]
            rows = await self._client.call(
                "ledger expire all", partial(self._execute, [], [], calls)
            )
            total += sum(int(answer[0][1]) for answer in rows)
            after = f"({jobs[-1]}"

    # -- reads ---------------------------------------------------------------------------------

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

    async def get_lease(self, lease_id: str, *, job_id: str = "") -> LeaseView | None:
        redis = self._client.redis
        if not job_id:
            owner = await self._client.call(
                "ledger get lease", lambda: redis.get(self._lease_key(lease_id))
            )
            if owner is None:
                return None
            job_id = text(owner)
        keys = self._job_keys(job_id)

        async def op() -> list[Any]:
            async with redis.pipeline(transaction=False) as pipe:
                pipe.hget(keys[2], lease_id)
                pipe.hget(keys[3], lease_id)
                return list(await pipe.execute())

        raw, amount = await self._client.call("ledger get lease", op)
        if raw is None or amount is None:
            return None
        state, expires_at, spent, _, model, provider = text(raw).split(_SEP)
        return LeaseView(
            lease_id=lease_id,
            job_id=job_id,
            model=model,
            provider=provider,
            amount_nanos=int(amount),
            expires_at=float(expires_at),
            state=LeaseState(state),
            spent_nanos=int(spent),
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
