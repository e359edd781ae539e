"""The in-memory ``TaskQueueStore``: a heap per pool, same semantics as the durable store.

No method awaits, so each runs as one atomic step on the event loop. Heap entries are never
removed in place; an entry whose task is no longer queued at that rank is skipped when popped.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import replace

from aurea.stores._common import Page, check_finite, check_limit, check_positive
from aurea.stores.tasks import (
    AGING_S_PER_PRIORITY,
    ALL_TASKS,
    DEADLINE_EXCEEDED,
    LEASE_EXPIRED,
    TERMINAL_STATES,
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

__all__ = ["MemoryTaskQueueStore"]

_Entry = tuple[float, int, str]  # (rank, seq, task_id)


def _matches(rec: TaskRecord, f: TaskFilter) -> bool:
    return (
        (f.state is None or rec.state is f.state)
        and (not f.kind or rec.kind == f.kind)
        and (not f.pool or rec.pool == f.pool)
        and (not f.job_id or rec.job_id == f.job_id)
    )


def _finish(
    rec: TaskRecord, state: TaskState, now: float, *, error: str | None = None, result: str = ""
) -> TaskRecord:
    return replace(
        rec,
        state=state,
        lease_until=None,
        updated_at=now,
        finished_at=now,
        error=rec.error if error is None else error,
        result=result,
    )


class MemoryTaskQueueStore:
    """Tasks in dicts and heaps; for tests and servers that need no durability."""

    def __init__(self, *, aging_s_per_priority: float = AGING_S_PER_PRIORITY) -> None:
        check_positive("aging_s_per_priority", aging_s_per_priority)
        self._aging_s = aging_s_per_priority
        self._tasks: dict[str, TaskRecord] = {}  # insertion order is submission order
        self._by_key: dict[str, str] = {}
        self._queues: dict[str, list[_Entry]] = {}
        self._running: set[str] = set()
        self._seq = 0

    def _push(self, rec: TaskRecord) -> None:
        heapq.heappush(self._queues.setdefault(rec.pool, []), (rec.rank, rec.seq, rec.task_id))

    def _store(self, rec: TaskRecord) -> TaskRecord:
        self._tasks[rec.task_id] = rec
        if rec.state is TaskState.RUNNING:
            self._running.add(rec.task_id)
        else:
            self._running.discard(rec.task_id)
        if rec.state is TaskState.QUEUED:
            self._push(rec)
        return rec

    async def enqueue(self, task: NewTask, *, now: float) -> Enqueued:
        check_new_task(task, now)
        existing = self._tasks.get(task.task_id)
        if existing is None and task.idempotency_key in self._by_key:
            existing = self._tasks[self._by_key[task.idempotency_key]]
        if existing is not None:
            return Enqueued(existing, False)
        self._seq += 1
        rec = TaskRecord(
            task_id=task.task_id,
            kind=task.kind,
            pool=task.pool,
            payload=task.payload,
            priority=task.priority,
            job_id=task.job_id,
            idempotency_key=task.idempotency_key,
            max_attempts=task.max_attempts,
            deadline=task.deadline,
            state=TaskState.QUEUED,
            seq=self._seq,
            rank=rank_of(task.priority, now, self._aging_s),
            attempts=0,
            worker_id="",
            lease_until=None,
            available_at=now,
            cancel_requested=False,
            result="",
            error="",
            created_at=now,
            updated_at=now,
            finished_at=None,
        )
        if task.idempotency_key:
            self._by_key[task.idempotency_key] = task.task_id
        return Enqueued(self._store(rec), True)

    def _reap(self, now: float) -> None:
        """Return expired leases to the queue, or end them when no attempt is left."""
        for task_id in list(self._running):
            rec = self._tasks[task_id]
            if rec.lease_until is None or rec.lease_until > now:
                continue
            if rec.cancel_requested:
                self._store(_finish(rec, TaskState.CANCELLED, now, error=LEASE_EXPIRED))
            elif rec.attempts >= rec.max_attempts:
                self._store(_finish(rec, TaskState.FAILED, now, error=LEASE_EXPIRED))
            else:
                queued = replace(
                    rec,
                    state=TaskState.QUEUED,
                    available_at=rec.lease_until,
                    lease_until=None,
                    error=LEASE_EXPIRED,
                    updated_at=now,
                )
                self._store(queued)

    async def claim(
        self, pool: str, worker_id: str, lease_s: float, *, now: float, limit: int = 1
    ) -> tuple[TaskRecord, ...]:
        check_claim(pool, worker_id, lease_s, now, limit)
        self._reap(now)
        heap = self._queues.get(pool, [])
        claimed: list[TaskRecord] = []
        later: list[_Entry] = []
        while heap and len(claimed) < limit:
            entry = heapq.heappop(heap)
            rec = self._tasks.get(entry[2])
            if rec is None or rec.state is not TaskState.QUEUED or rec.rank != entry[0]:
                continue  # stale entry
            if rec.available_at > now:
                later.append(entry)
            elif rec.deadline is not None and rec.deadline <= now:
                self._store(_finish(rec, TaskState.FAILED, now, error=DEADLINE_EXCEEDED))
            else:
                running = replace(
                    rec,
                    state=TaskState.RUNNING,
                    attempts=rec.attempts + 1,
                    worker_id=worker_id,
                    lease_until=now + lease_s,
                    updated_at=now,
                )
                claimed.append(self._store(running))
        for entry in later:
            heapq.heappush(heap, entry)
        return tuple(claimed)

    def _attempt(self, task_id: str, attempt: int) -> TaskRecord | None:
        rec = self._tasks.get(task_id)
        if rec is None or rec.state is not TaskState.RUNNING or rec.attempts != attempt:
            return None
        return rec

    async def heartbeat(self, task_id: str, attempt: int, lease_s: float, *, now: float) -> bool:
        check_positive("lease_s", lease_s)
        check_finite("now", now)
        rec = self._attempt(task_id, attempt)
        if rec is None:
            return False
        self._store(replace(rec, lease_until=now + lease_s, updated_at=now))
        return True

    async def ack(
        self, task_id: str, attempt: int, result: str, *, now: float
    ) -> TaskRecord | None:
        check_finite("now", now)
        rec = self._attempt(task_id, attempt)
        if rec is None:
            return None
        return self._store(_finish(rec, TaskState.SUCCEEDED, now, result=result))

    async def nack(
        self, task_id: str, attempt: int, error: str, *, retry_at: float | None, now: float
    ) -> TaskRecord | None:
        check_finite("now", now)
        if retry_at is not None:
            check_finite("retry_at", retry_at)
        rec = self._attempt(task_id, attempt)
        if rec is None:
            return None
        if rec.cancel_requested:
            return self._store(_finish(rec, TaskState.CANCELLED, now, error=error))
        if retry_at is None or rec.attempts >= rec.max_attempts:
            return self._store(_finish(rec, TaskState.FAILED, now, error=error))
        queued = replace(
            rec,
            state=TaskState.QUEUED,
            available_at=retry_at,
            rank=rank_of(rec.priority, retry_at, self._aging_s),
            lease_until=None,
            error=error,
            updated_at=now,
        )
        return self._store(queued)

    async def cancel(self, task_id: str, *, now: float) -> TaskRecord | None:
        check_finite("now", now)
        rec = self._tasks.get(task_id)
        if rec is None or rec.state in TERMINAL_STATES:
            return rec
        if rec.state is TaskState.QUEUED:
            return self._store(_finish(rec, TaskState.CANCELLED, now))
        return self._store(replace(rec, cancel_requested=True, updated_at=now))

    async def get(self, task_id: str) -> TaskRecord | None:
        return self._tasks.get(task_id)

    async def list_tasks(
        self, filter: TaskFilter = ALL_TASKS, *, after: str | None = None, limit: int = 100
    ) -> Page[TaskRecord]:
        check_limit(limit)
        after_seq = int(after) if after else 0
        items: list[TaskRecord] = []
        for rec in self._tasks.values():
            if rec.seq <= after_seq or not _matches(rec, filter):
                continue
            if len(items) == limit:
                return Page(tuple(items), str(items[-1].seq))
            items.append(rec)
        return Page(tuple(items))

    async def counts(self) -> tuple[PoolCount, ...]:
        counts = Counter((rec.pool, rec.state) for rec in self._tasks.values())
        return tuple(PoolCount(p, s, n) for (p, s), n in sorted(counts.items()))

    async def purge(self, *, finished_before: float) -> int:
        doomed = [
            rec
            for rec in self._tasks.values()
            if rec.finished_at is not None and rec.finished_at < finished_before
        ]
        for rec in doomed:
            del self._tasks[rec.task_id]
            if rec.idempotency_key:
                self._by_key.pop(rec.idempotency_key, None)
        return len(doomed)
