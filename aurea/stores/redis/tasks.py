"""The shared ``TaskQueueStore`` on Redis: one queue that several replicas' schedulers claim
from, so each task runs once, and a dead replica's running task is claimed by another.

Layout (all under the ``{tasks}`` hash tag, one shard: tasks are not the per-call hot path):
a hash per task (``t:ID``), a sorted set per pool of queued tasks by rank then submission
(``ready:POOL``: priority order with aging, as the protocol defines it), running leases by
expiry (``leases``), and per pool a **Redis Stream with a consumer group** (``run:POOL``,
group ``workers``): every claim appends the attempt to the stream and reads it with
``XREADGROUP`` as the claiming worker, so each replica's running attempts are its consumer's
pending entries (``XPENDING`` shows who holds what), acknowledged (``XACK``) when the attempt
ends. A replica that dies leaves its entries pending; the next claim on any replica finds their
leases expired and takes them over: the attempt is acknowledged and the task queued again (or
failed when no attempt is left), then claimed in its turn. The takeover is decided by the
task's own lease deadline (on the callers' clock, renewed by heartbeats), not by the stream's
idle time, which is the Redis server's clock and counts from the last delivery only.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from aurea.stores._common import Page, check_finite, check_limit, check_positive
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


def _opt(value: str) -> float | None:
    return None if value == "" else float(value)


def _record(flat: list[Any]) -> TaskRecord:
    f = {text(k): text(v) for k, v in zip(flat[::2], flat[1::2], strict=True)}
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
        self._p = client.key("tq", "{tasks}", "")

    async def _run(self, op: str, *args: str) -> Any:
        full = [self._client.prefix, self._aging, op, *args]
        return await self._client.call(f"tasks {op}", lambda: self._script(keys=[], args=full))

    async def enqueue(self, task: NewTask, *, now: float) -> Enqueued:
        check_new_task(task, now)
        created, flat = await self._run(
            "enqueue",
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
        return Enqueued(_record(flat), bool(int(created)))

    async def claim(
        self, pool: str, worker_id: str, lease_s: float, *, now: float, limit: int = 1
    ) -> tuple[TaskRecord, ...]:
        check_claim(pool, worker_id, lease_s, now, limit)
        rows = await self._run("claim", pool, worker_id, fmt(lease_s), fmt(now), str(limit))
        return tuple(_record(r) for r in rows)

    async def heartbeat(self, task_id: str, attempt: int, lease_s: float, *, now: float) -> bool:
        check_positive("lease_s", lease_s)
        check_finite("now", now)
        return bool(await self._run("heartbeat", task_id, str(attempt), fmt(lease_s), fmt(now)))

    async def ack(
        self, task_id: str, attempt: int, result: str, *, now: float
    ) -> TaskRecord | None:
        check_finite("now", now)
        flat = await self._run("ack", task_id, str(attempt), result, fmt(now))
        return _record(flat) if flat else None

    async def nack(
        self, task_id: str, attempt: int, error: str, *, retry_at: float | None, now: float
    ) -> TaskRecord | None:
        check_finite("now", now)
        if retry_at is not None:
            check_finite("retry_at", retry_at)
        retry = "" if retry_at is None else fmt(retry_at)
        flat = await self._run("nack", task_id, str(attempt), error, retry, fmt(now))
        return _record(flat) if flat else None

    async def cancel(self, task_id: str, *, now: float) -> TaskRecord | None:
        check_finite("now", now)
        flat = await self._run("cancel", task_id, fmt(now))
        return _record(flat) if flat else None

    async def get(self, task_id: str) -> TaskRecord | None:
        redis = self._client.redis
        raw = await self._client.call("tasks get", lambda: redis.hgetall(f"{self._p}t:{task_id}"))
        if not raw:
            return None
        flat: list[Any] = []
        for k, v in raw.items():
            flat += [k, v]
        return _record(flat)

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
                    f"{self._p}all", low, "+inf", start=0, num=_PAGE_SCAN, withscores=True
                )
            )
            if not rows:
                return [], None
            async with redis.pipeline(transaction=False) as pipe:
                for task_id, _ in rows:
                    pipe.hgetall(f"{self._p}t:{text(task_id)}")
                raws = await pipe.execute()
            recs: list[TaskRecord] = []
            for raw in raws:
                if raw:
                    flat: list[Any] = []
                    for k, v in raw.items():
                        flat += [k, v]
                    recs.append(_record(flat))
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
        raw = await self._client.call("tasks counts", lambda: redis.hgetall(f"{self._p}counts"))
        out: list[PoolCount] = []
        for k, v in raw.items():
            n = int(v)
            if n:
                pool, state = text(k).split(_SEP, 1)
                out.append(PoolCount(pool, TaskState(state), n))
        return tuple(sorted(out, key=lambda c: (c.pool, c.state)))

    async def purge(self, *, finished_before: float) -> int:
        return int(await self._run("purge", fmt(finished_before)))
