"""How the Redis ledger talks to Redis: its keys, one store call (the index writes and one
script per job, in MULTI/EXEC on one server, one by one on a Cluster), the owners of leases
named by id alone, and the expiry sweep's index. ``RedisLedgerStore`` (``ledger``) builds on
it; see its docstring for the layout and why each step is safe."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Sequence
from typing import Any

import structlog
from redis.exceptions import NoScriptError

from aurea.stores._common import StoreUnavailable, check_positive
from aurea.stores.ledger import (
    CLOSED_LEASE_RETENTION_S,
    ExtendOp,
    JobView,
    LedgerOp,
    ReleaseOp,
    ReserveOp,
    SettleOp,
    sorted_totals,
)
from aurea.stores.redis import _ledger_lua as lua
from aurea.stores.redis._client import RedisClient, fmt, num, text
from aurea.stores.redis._ledger_codec import _JOB_FIELDS, _Call, _totals

log = structlog.get_logger("aurea.stores")

_JOB_KEYS = ("", "exp", "l", "la", "closed", "m", "sum", "seen")
SWEEP_JOBS = 500  # due jobs one expire visits; the rest wait for the next tick
_INDEXED_MAX = 100_000  # job ids this process remembers having indexed
_LEASE_SLACK_S = 3600  # how much longer than its lease a lease's job is named


class LedgerCalls:
    """The keys, scripts and store calls of a ``RedisLedgerStore``."""

    def __init__(
        self, client: RedisClient, *, closed_lease_retention_s: float = CLOSED_LEASE_RETENTION_S
    ) -> None:
        check_positive("closed_lease_retention_s", closed_lease_retention_s)
        self._client = client
        self._retention_s = closed_lease_retention_s
        self._retention = fmt(closed_lease_retention_s)
        self._job_script = client.script(lua.JOB)
        self._claim = client.script(lua.CLAIM)
        self._settle_index = client.script(lua.SETTLE)
        self._jobs = client.key("led", "{ledger}", "jobs")
        self._due = client.key("led", "{ledger}", "exp")
        self._touch = client.key("led", "{ledger}", "touch")
        self._indexed: set[str] = set()  # jobs this process has put in the job index

    def _job_key(self, job_id: str, *parts: str) -> str:
        return self._client.key("led", f"{{job:{job_id}}}", *parts)

    def _job_keys(self, job_id: str) -> list[str]:
        return [self._job_key(job_id, *([p] if p else [])) for p in _JOB_KEYS]

    def _lease_key(self, lease_id: str) -> str:
        return self._client.key("led", f"{{lease:{lease_id}}}")

    async def _execute(
        self,
        new_jobs: list[str],
        index: list[tuple[str, tuple[Any, ...]]],
        calls: list[_Call],
    ) -> list[list[Any]]:
        """One store call: the index writes, then each job's script; in MULTI/EXEC when it is
        more than one command. Answers each script's rows, in order."""
        if self._client.cluster:
            return await self._execute_on_cluster(new_jobs, index, calls)
        redis = self._client.redis
        if not new_jobs and not index and len(calls) == 1:
            c = calls[0]
            return [await self._job_script(keys=self._job_keys(c.job), args=self._args(c))]
        # The scripts go in by SHA, not as redis-py Script objects: a pipeline holding those
        # first asks SCRIPT EXISTS, one more round trip on every call. If Redis lost the script
        # (a restart), every script of the MULTI fails alike and nothing of a job ran; only the
        # index writes (repeatable) did: load it and send the call again.
        for _ in range(2):
            async with redis.pipeline(transaction=True) as pipe:
                self._index_writes(pipe, new_jobs, index)  # queued in the MULTI
                for c in calls:
                    keys = self._job_keys(c.job)
                    pipe.evalsha(self._job_script.sha, len(keys), *keys, *self._args(c))
                try:
                    answers = await pipe.execute()
                except NoScriptError:
                    self._job_script.sha = await redis.script_load(lua.JOB)
                    continue
            return list(answers[len(answers) - len(calls) :])
        raise StoreUnavailable(f"Redis at {self._client.where} keeps losing the ledger script")

    async def _execute_on_cluster(
        self,
        new_jobs: list[str],
        index: list[tuple[str, tuple[Any, ...]]],
        calls: list[_Call],
    ) -> list[list[Any]]:
        """The same on Redis Cluster, where no MULTI spans slots and pipelines refuse scripts:
        the index writes first (a reserve's index entry before the reserve, as the sweep needs),
        then each job's script on its own shard, concurrently. Atomic per job only, so a store
        call that fails part-way may have applied some jobs' scripts; its retry is safe: a
        reserve of an existing lease, a release, a sweep and a budget change repeat harmlessly,
        and a numbered consume batch applies once (``consume``)."""
        writes: list[Awaitable[Any]] = self._index_writes(self._client.redis, new_jobs, index)
        await asyncio.gather(*writes)
        answers = await asyncio.gather(
            *(self._job_script(keys=self._job_keys(c.job), args=self._args(c)) for c in calls)
        )
        return list(answers)

    def _index_writes(
        self, target: Any, new_jobs: list[str], index: list[tuple[str, tuple[Any, ...]]]
    ) -> list[Any]:
        """The cross-job index writes of a store call, made on ``target``: a pipeline (queued
        there) or a client (the commands' awaitables, returned)."""
        out = []
        if new_jobs:
            out.append(target.zadd(self._jobs, dict.fromkeys(new_jobs, 0), nx=True))
        for kind, what in index:
            if kind == "zadd_lt":
                job, due, lease_id = what
                out.append(target.zadd(self._due, {job: due}, lt=True))
                out.append(target.hset(self._touch, job, lease_id))
            else:
                lease_id, job, ttl_s = what
                out.append(target.set(self._lease_key(lease_id), job, ex=self._keep_s(ttl_s)))
        return out

    def _keep_s(self, ttl_s: float) -> int:
        """How long a lease's job is named: past the lease and its retention, with slack."""
        return math.ceil(ttl_s + self._retention_s) + _LEASE_SLACK_S

    def _args(self, call: _Call) -> list[str]:
        return [call.job, self._retention, *call.args]

    def _remember(self, jobs: set[str]) -> None:
        if len(self._indexed) + len(jobs) > _INDEXED_MAX:
            self._indexed.clear()  # re-indexing is idempotent (ZADD NX): forgetting is cheap
        self._indexed |= jobs

    async def _owners(self, ops: Sequence[LedgerOp]) -> dict[str, str]:
        """The job of each lease the sequence names by id alone: from a reserve before it in
        the sequence, else from the store (one read, only for ids no operation resolved)."""
        owners: dict[str, str] = {}
        unresolved: list[str] = []
        for op in ops:
            if isinstance(op, ReserveOp):
                owners.setdefault(op.lease_id, op.job_id)
            elif isinstance(op, ExtendOp | SettleOp | ReleaseOp):
                if op.job_id:
                    owners[op.lease_id] = op.job_id
                elif op.lease_id not in owners:
                    unresolved.append(op.lease_id)
        if unresolved:
            redis = self._client.redis
            keys = [self._lease_key(lease) for lease in unresolved]
            # Each lease's name is its own slot: MGET across slots only without Cluster.
            mget = redis.mget_nonatomic if self._client.cluster else redis.mget  # type: ignore[attr-defined]
            found = await self._client.call("ledger find leases", lambda: mget(keys))
            for lease, job in zip(unresolved, found, strict=True):
                if job is not None:
                    owners.setdefault(lease, text(job))
        # An operation given its job uses it (a lease of another job is unknown there).
        for op in ops:
            if isinstance(op, ExtendOp | SettleOp | ReleaseOp) and op.job_id:
                owners[op.lease_id] = op.job_id
        return owners

    async def _claim_due(self, now: float) -> list[tuple[str, str]]:
        """Jobs due for a sweep at ``now``, each with its last reserve."""
        flat = await self._client.call(
            "ledger expire",
            lambda: self._claim(keys=[self._due, self._touch], args=[fmt(now), SWEEP_JOBS]),
        )
        return [(text(flat[i]), text(flat[i + 1])) for i in range(0, len(flat), 2)]

    async def _settle_due(self, visits: dict[int, list[tuple[_Call, str]]]) -> None:
        """Move the expiry index after a sweep's visits. Only a hint: if Redis fails here, the
        entries stay early and the next sweep visits those jobs again."""
        args: list[str] = []
        for pairs in visits.values():
            for call, nxt in pairs:
                mode = "o" if call.claimed is None else "c"
                args += [call.job, mode, call.claimed or "", nxt]
        if not args:
            return
        try:
            await self._client.call(
                "ledger expire",
                lambda: self._settle_index(keys=[self._due, self._touch], args=args),
            )
        except StoreUnavailable as exc:
            log.warning("ledger_expiry_index_stale", error=exc.message)

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
