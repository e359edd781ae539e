"""The task queue store protocol: a durable priority queue with leases (visibility timeouts).

A task's life::

    enqueue ─▶ QUEUED ──claim──▶ RUNNING ──ack──▶ SUCCEEDED
                 ▲                  │  ──nack(retry_at, attempts left)──▶ QUEUED again
                 └─lease expired────┤  ──nack(no retry / none left)──▶ FAILED
                   (attempts left)  └─lease expired, none left──▶ FAILED
    cancel: QUEUED ─▶ CANCELLED at once; RUNNING: ``cancel_requested`` is set and the worker's
    nack (or an expired lease) ends it CANCELLED; an ack still records SUCCEEDED.

Claim order is ``rank`` then submission order, where ``rank = available_at - priority *
aging_s_per_priority`` (a store option): within a priority FIFO, across priorities one level is
worth ``aging_s_per_priority`` seconds of waiting, so nothing starves. ``claim`` first returns
expired leases to the queue (the worker died: ``kill -9`` loses no task) and never hands out a
task whose ``deadline`` has passed (it fails it instead). Each claim increments ``attempts``;
``heartbeat``/``ack``/``nack`` must quote that attempt number, so a worker whose lease expired and
was re-claimed elsewhere can no longer touch the task.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from aurea.stores._common import Page, check_finite, check_id, check_limit, check_positive

__all__ = [
    "AGING_S_PER_PRIORITY",
    "ALL_TASKS",
    "DEADLINE_EXCEEDED",
    "LEASE_EXPIRED",
    "TERMINAL_STATES",
    "Enqueued",
    "NewTask",
    "PoolCount",
    "TaskFilter",
    "TaskQueueStore",
    "TaskRecord",
    "TaskState",
    "check_claim",
    "check_new_task",
    "rank_of",
]

AGING_S_PER_PRIORITY = 300.0
"""Default of the stores' ``aging_s_per_priority`` option."""

LEASE_EXPIRED = "lease expired: the worker holding the task stopped renewing it"
DEADLINE_EXCEEDED = "deadline exceeded before the task started"


class TaskState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset({TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED})


@dataclass(frozen=True, slots=True, kw_only=True)
class NewTask:
    """What ``enqueue`` stores. ``payload`` is opaque text (JSON); "" means none."""

    task_id: str
    kind: str
    pool: str
    payload: str = ""
    priority: int = 1  # 0 low, 1 normal, 2 high, 3 critical (any int works)
    job_id: str = ""
    idempotency_key: str = ""  # "": none; else unique among retained tasks
    max_attempts: int = 1
    deadline: float | None = None  # wall time; a task not started by then fails


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskRecord:
    task_id: str
    kind: str
    pool: str
    payload: str
    priority: int
    job_id: str
    idempotency_key: str
    max_attempts: int
    deadline: float | None
    state: TaskState
    seq: int  # submission order, unique
    rank: float
    attempts: int  # claims so far
    worker_id: str  # the current (RUNNING) or last claimant; "" if never claimed
    lease_until: float | None  # RUNNING only
    available_at: float  # QUEUED: the earliest claim time
    cancel_requested: bool
    result: str
    error: str
    created_at: float
    updated_at: float
    finished_at: float | None  # terminal states only


@dataclass(frozen=True, slots=True)
class Enqueued:
    """The stored task and whether this call created it (False: its id or key existed)."""

    task: TaskRecord
    created: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskFilter:
    """Every field set must match; defaults match everything."""

    state: TaskState | None = None
    kind: str = ""
    pool: str = ""
    job_id: str = ""


ALL_TASKS = TaskFilter()


@dataclass(frozen=True, slots=True)
class PoolCount:
    pool: str
    state: TaskState
    count: int


def check_new_task(task: NewTask, now: float) -> None:
    check_id("task_id", task.task_id)
    check_id("kind", task.kind)
    check_id("pool", task.pool)
    check_positive("max_attempts", task.max_attempts)
    if task.deadline is not None:
        check_finite("deadline", task.deadline)
    check_finite("now", now)


def check_claim(pool: str, worker_id: str, lease_s: float, now: float, limit: int) -> None:
    check_id("pool", pool)
    check_id("worker_id", worker_id)
    check_positive("lease_s", lease_s)
    check_finite("lease_s", lease_s)
    check_finite("now", now)
    check_limit(limit)


def rank_of(priority: int, available_at: float, aging_s_per_priority: float) -> float:
    return available_at - priority * aging_s_per_priority


class TaskQueueStore(Protocol):
    """Bad arguments raise ``ValueError``; a failing backend raises ``StoreUnavailable``."""

    async def enqueue(self, task: NewTask, *, now: float) -> Enqueued:
        """Store ``task`` as QUEUED (durably, for a durable store, before returning). If its
        ``task_id`` or non-empty ``idempotency_key`` is already stored, nothing changes and the
        existing task is returned with ``created=False``."""
        ...

    async def claim(
        self, pool: str, worker_id: str, lease_s: float, *, now: float, limit: int = 1
    ) -> tuple[TaskRecord, ...]:
        """Up to ``limit`` tasks of ``pool``, now RUNNING for ``worker_id`` until
        ``now + lease_s``; see the module docstring for order, expiry and deadlines."""
        ...

    async def heartbeat(self, task_id: str, attempt: int, lease_s: float, *, now: float) -> bool:
        """Extend a running task's lease to ``now + lease_s``; False if ``attempt`` is not the
        running one (the task was re-claimed, finished or cancelled)."""
        ...

    async def ack(
        self, task_id: str, attempt: int, result: str, *, now: float
    ) -> TaskRecord | None:
        """Finish a running attempt as SUCCEEDED; None (nothing changed) if not that attempt."""
        ...

    async def nack(
        self, task_id: str, attempt: int, error: str, *, retry_at: float | None, now: float
    ) -> TaskRecord | None:
        """End a running attempt with ``error``: QUEUED again from ``retry_at`` when given and
        attempts remain, else FAILED (CANCELLED if cancel was requested). None if not that
        attempt."""
        ...

    async def cancel(self, task_id: str, *, now: float) -> TaskRecord | None:
        """Cancel a queued task, or request cancellation of a running one; a finished task is
        returned unchanged; None if unknown."""
        ...

    async def get(self, task_id: str) -> TaskRecord | None: ...

    async def list_tasks(
        self, filter: TaskFilter = ALL_TASKS, *, after: str | None = None, limit: int = 100
    ) -> Page[TaskRecord]:
        """Matching tasks in submission order, after the cursor ``after``."""
        ...

    async def counts(self) -> tuple[PoolCount, ...]:
        """How many tasks each pool has in each state (only non-zero counts), sorted."""
        ...

    async def purge(self, *, finished_before: float) -> int:
        """Delete finished tasks (and so free their idempotency keys) that ended before the
        given time; returns how many."""
        ...
