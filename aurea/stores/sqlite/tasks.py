"""The durable ``TaskQueueStore`` on SQLite: a task is committed before ``enqueue`` returns.

Claims walk the partial index ``tasks_queue`` (pool, rank, seq) over queued rows only, so the cost
of a claim does not grow with finished tasks kept for their results.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from aurea.stores._common import Page, check_finite, check_limit, check_positive
from aurea.stores.sqlite._db import SqliteDatabase
from aurea.stores.tasks import (
    AGING_S_PER_PRIORITY,
    ALL_TASKS,
    DEADLINE_EXCEEDED,
    LEASE_EXPIRED,
    Enqueued,
    NewTask,
    PoolCount,
    TaskFilter,
    TaskRecord,
    TaskState,
    check_claim,
    check_new_task,
    rank_of,
)

__all__ = ["SqliteTaskQueueStore"]

_COLS = (
    "task_id",
    "kind",
    "pool",
    "payload",
    "priority",
    "job_id",
    "idempotency_key",
    "max_attempts",
    "deadline",
    "state",
    "seq",
    "rank",
    "attempts",
    "worker_id",
    "lease_until",
    "available_at",
    "cancel_requested",
    "result",
    "error",
    "created_at",
    "updated_at",
    "finished_at",
)
_SELECT = f"SELECT {', '.join(_COLS)} FROM tasks"
_Q, _R = TaskState.QUEUED.value, TaskState.RUNNING.value


def _record(row: Any) -> TaskRecord:
    values = dict(zip(_COLS, row, strict=True))
    values["state"] = TaskState(values["state"])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return TaskRecord(**values)


def _get(conn: sqlite3.Connection, task_id: str) -> TaskRecord | None:
    row = conn.execute(f"{_SELECT} WHERE task_id = ?", (task_id,)).fetchone()
    return None if row is None else _record(row)


def _finish(
    conn: sqlite3.Connection, task_id: str, state: TaskState, now: float, **kv: str
) -> None:
    sets = "".join(f", {k} = ?" for k in kv)
    conn.execute(
        f"UPDATE tasks SET state = ?, lease_until = NULL, updated_at = ?, finished_at = ?{sets} "
        "WHERE task_id = ?",
        (state, now, now, *kv.values(), task_id),
    )


def _reap(conn: sqlite3.Connection, now: float) -> None:
    """Return expired leases to the queue, or end them when no attempt is left."""
    expired = f"state = '{_R}' AND lease_until <= ?"
    conn.execute(
        "UPDATE tasks SET state = CASE WHEN cancel_requested THEN ? ELSE ? END, "
        "finished_at = ?, updated_at = ?, error = ?, lease_until = NULL "
        f"WHERE {expired} AND (cancel_requested OR attempts >= max_attempts)",
        (TaskState.CANCELLED, TaskState.FAILED, now, now, LEASE_EXPIRED, now),
    )
    conn.execute(
        f"UPDATE tasks SET state = '{_Q}', available_at = lease_until, lease_until = NULL, "
        f"error = ?, updated_at = ? WHERE {expired}",
        (LEASE_EXPIRED, now, now),
    )


class SqliteTaskQueueStore:
    def __init__(
        self, db: SqliteDatabase, *, aging_s_per_priority: float = AGING_S_PER_PRIORITY
    ) -> None:
        check_positive("aging_s_per_priority", aging_s_per_priority)
        self._db = db
        self._aging_s = aging_s_per_priority

    async def enqueue(self, task: NewTask, *, now: float) -> Enqueued:
        check_new_task(task, now)
        rank = rank_of(task.priority, now, self._aging_s)

        def op(conn: sqlite3.Connection) -> Enqueued:
            existing = _get(conn, task.task_id)
            if existing is None and task.idempotency_key:
                row = conn.execute(
                    f"{_SELECT} WHERE idempotency_key = ?", (task.idempotency_key,)
                ).fetchone()
                existing = None if row is None else _record(row)
            if existing is not None:
                return Enqueued(existing, False)
            conn.execute(
                "INSERT INTO tasks (task_id, kind, pool, payload, priority, job_id, "
                "idempotency_key, max_attempts, deadline, state, rank, available_at, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task.task_id,
                    task.kind,
                    task.pool,
                    task.payload,
                    task.priority,
                    task.job_id,
                    task.idempotency_key,
                    task.max_attempts,
                    task.deadline,
                    _Q,
                    rank,
                    now,
                    now,
                    now,
                ),
            )
            created = _get(conn, task.task_id)
            assert created is not None
            return Enqueued(created, True)

        return await self._db.run(op)

    async def claim(
        self, pool: str, worker_id: str, lease_s: float, *, now: float, limit: int = 1
    ) -> tuple[TaskRecord, ...]:
        check_claim(pool, worker_id, lease_s, now, limit)

        def op(conn: sqlite3.Connection) -> tuple[TaskRecord, ...]:
            _reap(conn, now)
            claimed: list[TaskRecord] = []
            while len(claimed) < limit:
                # Whole batches, not a live cursor: the loop updates the rows it selected, and
                # SQLite leaves undefined what a running SELECT sees of its own connection's writes.
                want = limit - len(claimed)
                batch = conn.execute(
                    f"SELECT task_id, deadline FROM tasks WHERE pool = ? AND state = '{_Q}' "
                    "AND available_at <= ? ORDER BY rank, seq LIMIT ?",
                    (pool, now, want),
                ).fetchall()
                for task_id, deadline in batch:
                    if deadline is not None and deadline <= now:
                        _finish(conn, task_id, TaskState.FAILED, now, error=DEADLINE_EXCEEDED)
                        continue
                    conn.execute(
                        f"UPDATE tasks SET state = '{_R}', attempts = attempts + 1, "
                        "worker_id = ?, lease_until = ?, updated_at = ? WHERE task_id = ?",
                        (worker_id, now + lease_s, now, task_id),
                    )
                    rec = _get(conn, task_id)
                    assert rec is not None
                    claimed.append(rec)
                if len(batch) < want:
                    break
            return tuple(claimed)

        return await self._db.run(op)

    async def heartbeat(self, task_id: str, attempt: int, lease_s: float, *, now: float) -> bool:
        check_positive("lease_s", lease_s)
        check_finite("now", now)
        return await self._db.run(
            lambda conn: (
                conn.execute(
                    f"UPDATE tasks SET lease_until = ?, updated_at = ? WHERE task_id = ? "
                    f"AND state = '{_R}' AND attempts = ?",
                    (now + lease_s, now, task_id, attempt),
                ).rowcount
                == 1
            )
        )

    @staticmethod
    def _attempt(conn: sqlite3.Connection, task_id: str, attempt: int) -> TaskRecord | None:
        rec = _get(conn, task_id)
        if rec is None or rec.state is not TaskState.RUNNING or rec.attempts != attempt:
            return None
        return rec

    async def ack(
        self, task_id: str, attempt: int, result: str, *, now: float
    ) -> TaskRecord | None:
        check_finite("now", now)

        def op(conn: sqlite3.Connection) -> TaskRecord | None:
            if self._attempt(conn, task_id, attempt) is None:
                return None
            _finish(conn, task_id, TaskState.SUCCEEDED, now, result=result)
            return _get(conn, task_id)

        return await self._db.run(op)

    async def nack(
        self, task_id: str, attempt: int, error: str, *, retry_at: float | None, now: float
    ) -> TaskRecord | None:
        check_finite("now", now)
        if retry_at is not None:
            check_finite("retry_at", retry_at)

        def op(conn: sqlite3.Connection) -> TaskRecord | None:
            rec = self._attempt(conn, task_id, attempt)
            if rec is None:
                return None
            if rec.cancel_requested:
                _finish(conn, task_id, TaskState.CANCELLED, now, error=error)
            elif retry_at is None or rec.attempts >= rec.max_attempts:
                _finish(conn, task_id, TaskState.FAILED, now, error=error)
            else:
                conn.execute(
                    f"UPDATE tasks SET state = '{_Q}', available_at = ?, rank = ?, "
                    "lease_until = NULL, error = ?, updated_at = ? WHERE task_id = ?",
                    (retry_at, rank_of(rec.priority, retry_at, self._aging_s), error, now, task_id),
                )
            return _get(conn, task_id)

        return await self._db.run(op)

    async def cancel(self, task_id: str, *, now: float) -> TaskRecord | None:
        check_finite("now", now)

        def op(conn: sqlite3.Connection) -> TaskRecord | None:
            rec = _get(conn, task_id)
            if rec is None:
                return None
            if rec.state is TaskState.QUEUED:
                _finish(conn, task_id, TaskState.CANCELLED, now)
            elif rec.state is TaskState.RUNNING:
                conn.execute(
                    "UPDATE tasks SET cancel_requested = 1, updated_at = ? WHERE task_id = ?",
                    (now, task_id),
                )
            else:
                return rec
            return _get(conn, task_id)

        return await self._db.run(op)

    async def get(self, task_id: str) -> TaskRecord | None:
        return await self._db.read(lambda conn: _get(conn, task_id))

    async def list_tasks(
        self, filter: TaskFilter = ALL_TASKS, *, after: str | None = None, limit: int = 100
    ) -> Page[TaskRecord]:
        check_limit(limit)
        where: list[str] = ["seq > ?"]
        args: list[object] = [int(after) if after else 0]
        for column, value in (
            ("state", filter.state),
            ("kind", filter.kind),
            ("pool", filter.pool),
            ("job_id", filter.job_id),
        ):
            if value:
                where.append(f"{column} = ?")
                args.append(value)

        def op(conn: sqlite3.Connection) -> Page[TaskRecord]:
            rows = conn.execute(
                f"{_SELECT} WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?", (*args, limit + 1)
            ).fetchall()
            items = tuple(_record(r) for r in rows[:limit])
            return Page(items, str(items[-1].seq) if len(rows) > limit else None)

        return await self._db.read(op)

    async def counts(self) -> tuple[PoolCount, ...]:
        def op(conn: sqlite3.Connection) -> tuple[PoolCount, ...]:
            rows = conn.execute(
                "SELECT pool, state, COUNT(*) FROM tasks GROUP BY pool, state ORDER BY pool, state"
            ).fetchall()
            return tuple(PoolCount(p, TaskState(s), n) for p, s, n in rows)

        return await self._db.read(op)

    async def purge(self, *, finished_before: float) -> int:
        return await self._db.run(
            lambda conn: (
                conn.execute(
                    "DELETE FROM tasks WHERE finished_at IS NOT NULL AND finished_at < ?",
                    (finished_before,),
                ).rowcount
            )
        )
