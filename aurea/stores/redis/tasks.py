"""The shared ``TaskQueueStore`` on Redis: one queue that several replicas' schedulers claim
from, so each task runs once, and a dead replica's running task is claimed by another.

Layout (``P:tq:{tasks}:*``: every key shares the ``{tasks}`` hash tag, one Redis Cluster slot
by design, as tasks are not the per-call hot path). Every key a script call touches is passed
in KEYS, so the layout works on Cluster, with ACL key patterns and as a Redis Function:

* ``rec``: one hash of every task record (field = task id, value = JSON of string fields);
  ``seq`` (submission counter), ``all`` (ids by submission), ``keys`` (idempotency key -> id),
  ``counts`` (``POOL\\x1fSTATE`` -> n), ``leases`` (running ids by lease expiry, all pools),
  ``finished`` (finished ids by end time, all pools);
* per pool: ``ready:POOL`` (queued tasks by rank then submission: priority order with aging, as
  the protocol defines it) and ``run:POOL``, a **Redis Stream with a consumer group**
  (``workers``).

Python knows the pool each script call needs: ``claim`` gets it as an argument, ``enqueue``
reads it from the task, and ``ack``/``nack``/``cancel`` read the task's record first (one
``HGET``), then run the script with that pool's keys; the script checks the pool again and the
call repeats if the task moved (purged and submitted again elsewhere). ``heartbeat`` and
``purge`` touch no pool key (a finished task holds no ready entry and no stream entry).

Every claim appends the attempt to its pool's stream and reads it with ``XREADGROUP`` as the
claiming worker, in one MULTI/EXEC with the script (``XGROUP CREATE``, the script, then
``XREADGROUP``: no other command runs in between), so each replica's running attempts are its
consumer's pending entries (``XPENDING`` shows who holds what), acknowledged (``XACK``) when the
attempt ends. A replica that dies leaves its entries pending; the next claim on any replica
finds their leases expired and takes them over: the attempt is acknowledged and the task queued
again (or failed when no attempt is left), then claimed in its turn. A claim reaps its own
pool's expired leases in its script and learns which other pools have expired ones, which it
then reaps with their keys, so expiry stays global, as the protocol says. The takeover is
decided by the task's own lease deadline (on the callers' clock, renewed by heartbeats), not by
the stream's idle time, which is the Redis server's clock and counts from the last delivery.

On a Redis Cluster (``client.cluster``) the slot is one shard, but a transaction there may not
run a script, so a claim sends the three steps one after another: ``XGROUP CREATE``
(idempotent), the script, then ``XREADGROUP`` of every undelivered entry. The task's state is
decided by the script alone; the stream only mirrors who holds what, and the scripts
acknowledge and delete an attempt's entry by the id kept in the task's record, whoever's
pending list holds it (or none). So what a gap between the steps can leave is safe: two
replicas claiming one pool at once may each read the other's new entries (``XPENDING`` names
the wrong holder until they end); a replica that dies after the script and before its
``XREADGROUP`` leaves its attempts RUNNING with no delivery: the next claim anywhere reads those
entries, and the attempts' leases, never renewed, expire and are reaped as for any dead
replica (the task runs again elsewhere, once). A claim whose answer is lost is the same case.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

from redis.exceptions import ResponseError

from aurea.stores._common import Page, StoreUnavailable, check_finite, check_limit, check_positive
from aurea.stores.redis._client import RedisClient, fmt, text
from aurea.stores.redis._tasks_lua import TASKS
from aurea.stores.tasks import (
    AGING_S_PER_PRIORITY,
    ALL_TASKS,
    Enqueued,
    NewTask,
    PoolCount,
    TaskFilter,
    TaskRecord,
    TaskState,
    check_claim,
    check_new_task,
)

__all__ = ["RedisTaskQueueStore"]

_SEP = "\x1f"
_PAGE_SCAN = 500
_GROUP = "workers"
_MOVED = -1  # the script's answer when the task is not in the pool the caller read
_GLOBAL = ("rec", "seq", "all", "keys", "counts", "leases", "finished")  # KEYS order


def _opt(value: str) -> float | None:
    return None if value == "" else float(value)


def _record(raw: bytes | str) -> TaskRecord:
    f: dict[str, str] = json.loads(raw)
    return TaskRecord(
        task_id=f["task_id"],
        kind=f["kind"],
        pool=f["pool"],
        payload=f["payload"],
        priority=int(f["priority"]),
        job_id=f["job_id"],
        idempotency_key=f["idempotency_key"],
        max_attempts=int(f["max_attempts"]),
        deadline=_opt(f["deadline"]),
        state=TaskState(f["state"]),
        seq=int(f["seq"]),
        rank=float(f["rank"]),
        attempts=int(f["attempts"]),
        worker_id=f["worker_id"],
        lease_until=_opt(f["lease_until"]),
        available_at=float(f["available_at"]),
        cancel_requested=f["cancel_requested"] == "1",
        result=f["result"],
        error=f["error"],
        created_at=float(f["created_at"]),
        updated_at=float(f["updated_at"]),
        finished_at=_opt(f["finished_at"]),
    )


def _matches(rec: TaskRecord, f: TaskFilter) -> bool:
    return (
        (f.state is None or rec.state is f.state)
        and (not f.kind or rec.kind == f.kind)
        and (not f.pool or rec.pool == f.pool)
        and (not f.job_id or rec.job_id == f.job_id)
    )


class RedisTaskQueueStore:
    """A task queue that every replica sharing the Redis server claims from."""

    def __init__(
        self, client: RedisClient, *, aging_s_per_priority: float = AGING_S_PER_PRIORITY
    ) -> None:
        check_positive("aging_s_per_priority", aging_s_per_priority)
        self._client = client
        self._aging = fmt(aging_s_per_priority)
        self._script = client.script(TASKS)
        self._keys = [client.key("tq", "{tasks}", name) for name in _GLOBAL]
        self._rec, self._all, self._counts = self._keys[0], self._keys[2], self._keys[4]

    def _pool_keys(self, pool: str) -> list[str]:
        ready = self._client.key("tq", "{tasks}", "ready", pool)
        return [*self._keys, ready, self._client.key("tq", "{tasks}", "run", pool)]

    async def _run(self, op: str, keys: list[str], *args: str) -> Any:
        full = [self._aging, op, *args]
        return await self._client.call(f"tasks {op}", lambda: self._script(keys=keys, args=full))

    async def _on_task(self, op: str, task_id: str, *args: str) -> Any:
        """Run ``op`` on a task with its pool's keys: None if the task is unknown."""
        while True:
            raw = await self._client.call(
                f"tasks {op}", lambda: self._client.redis.hget(self._rec, task_id)
            )
            if raw is None:
                return None
            pool: str = json.loads(raw)["pool"]
            out = await self._run(op, self._pool_keys(pool), pool, task_id, *args)
            if out != _MOVED:
                return out

    async def enqueue(self, task: NewTask, *, now: float) -> Enqueued:
        check_new_task(task, now)
        created, raw = await self._run(
            "enqueue",
            self._pool_keys(task.pool),
            task.task_id,
            task.kind,
            task.pool,
            task.payload,
            str(task.priority),
            task.job_id,
            task.idempotency_key,
            str(task.max_attempts),
            "" if task.deadline is None else fmt(task.deadline),
            fmt(now),
        )
        return Enqueued(_record(raw), bool(int(created)))

    async def claim(
        self, pool: str, worker_id: str, lease_s: float, *, now: float, limit: int = 1
    ) -> tuple[TaskRecord, ...]:
        check_claim(pool, worker_id, lease_s, now, limit)
        keys = self._pool_keys(pool)
        run = keys[-1]
        args = [self._aging, "claim", pool, worker_id, fmt(lease_s), fmt(now), str(limit)]

        async def transaction() -> Any:
            async with self._client.redis.pipeline(transaction=True) as pipe:
                pipe.xgroup_create(run, _GROUP, id="$", mkstream=True)
                await self._script(keys=keys, args=args, client=pipe)
                # Delivered to this worker's consumer: its pending list is what it holds.
                pipe.xreadgroup(_GROUP, worker_id, {run: ">"}, count=limit)
                created, out, read = await pipe.execute(raise_on_error=False)
            if isinstance(created, Exception) and "BUSYGROUP" not in str(created):
                raise created
            for result in (out, read):
                if isinstance(result, Exception):
                    raise result
            return out

        async def one_by_one() -> Any:
            # A Redis Cluster refuses a script inside MULTI (its pipelines refuse scripts):
            # the same three steps, each on its own (see the module's docstring).
            try:
                await self._client.redis.xgroup_create(run, _GROUP, id="$", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
            out = await self._script(keys=keys, args=args)
            # Every undelivered entry, not ``limit``: one a crash left behind is not read in
            # place of this claim's own forever after.
            await self._client.redis.xreadgroup(_GROUP, worker_id, {run: ">"})
            return out

        op = one_by_one if self._client.cluster else transaction
        claimed, others = await self._client.call("tasks claim", op)
        for other in sorted(text(p) for p in others):
            try:
                await self._run("reap", self._pool_keys(other), other, fmt(now))
            except StoreUnavailable:
                # The claimed tasks are RUNNING already: hand them out. The other pool's
                # expired leases stay in the index, and the next claim reaps them.
                break
        return tuple(_record(r) for r in claimed)

    async def heartbeat(self, task_id: str, attempt: int, lease_s: float, *, now: float) -> bool:
        check_positive("lease_s", lease_s)
        check_finite("now", now)
        args = (task_id, str(attempt), fmt(lease_s), fmt(now))
        return bool(await self._run("heartbeat", self._keys, *args))

    async def ack(
        self, task_id: str, attempt: int, result: str, *, now: float
    ) -> TaskRecord | None:
        check_finite("now", now)
        raw = await self._on_task("ack", task_id, str(attempt), result, fmt(now))
        return _record(raw) if raw else None

    async def nack(
        self, task_id: str, attempt: int, error: str, *, retry_at: float | None, now: float
    ) -> TaskRecord | None:
        check_finite("now", now)
        if retry_at is not None:
            check_finite("retry_at", retry_at)
        retry = "" if retry_at is None else fmt(retry_at)
        raw = await self._on_task("nack", task_id, str(attempt), error, retry, fmt(now))
        return _record(raw) if raw else None

    async def cancel(self, task_id: str, *, now: float) -> TaskRecord | None:
        check_finite("now", now)
        raw = await self._on_task("cancel", task_id, fmt(now))
        return _record(raw) if raw else None

    async def get(self, task_id: str) -> TaskRecord | None:
        redis = self._client.redis
        raw = await self._client.call("tasks get", lambda: redis.hget(self._rec, task_id))
        return None if raw is None else _record(raw)

    async def list_tasks(
        self, filter: TaskFilter = ALL_TASKS, *, after: str | None = None, limit: int = 100
    ) -> Page[TaskRecord]:
        check_limit(limit)
        redis = self._client.redis
        low = f"({int(after)}" if after else "-inf"
        items: list[TaskRecord] = []

        async def page_of(low: str) -> tuple[list[TaskRecord], str | None]:
            rows: list[Any] = list(
                await redis.zrangebyscore(
                    self._all, low, "+inf", start=0, num=_PAGE_SCAN, withscores=True
                )
            )
            if not rows:
                return [], None
            raws = await redis.hmget(self._rec, [task_id for task_id, _ in rows])
            recs = [_record(raw) for raw in raws if raw is not None]
            nxt = f"({int(rows[-1][1])}" if len(rows) == _PAGE_SCAN else None
            return recs, nxt

        cursor: str | None = low
        while cursor is not None:
            recs, cursor = await self._client.call("tasks list", partial(page_of, cursor))
            for rec in recs:
                if not _matches(rec, filter):
                    continue
                if len(items) == limit:
                    return Page(tuple(items), str(items[-1].seq))
                items.append(rec)
        return Page(tuple(items))

    async def counts(self) -> tuple[PoolCount, ...]:
        redis = self._client.redis
        raw = await self._client.call("tasks counts", lambda: redis.hgetall(self._counts))
        out: list[PoolCount] = []
        for k, v in raw.items():
            n = int(v)
            if n:
                pool, state = text(k).split(_SEP, 1)
                out.append(PoolCount(pool, TaskState(state), n))
        return tuple(sorted(out, key=lambda c: (c.pool, c.state)))

    async def purge(self, *, finished_before: float) -> int:
        return int(await self._run("purge", self._keys, fmt(finished_before)))
