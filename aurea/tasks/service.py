"""The task capability as the edge sees it, in domain types: validate a submission completely
before anything is stored, then submit, get (optionally waiting), list, cancel, watch, and
read or scale the pools. Changes go through the Scheduler actor; reads go to the store.

Listing pages continue after a task's ``seq`` (its submission order), which is also what every
``TaskQueueStore`` uses as its cursor.
"""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import json
import os
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable

from aurea.config import TasksSettings
from aurea.errors import (
    FieldViolation,
    IdempotencyConflict,
    InvalidRequest,
    ShuttingDown,
    TaskFinished,
    TaskNotFound,
    UnknownTaskKind,
)
from aurea.runtime import ActorRef
from aurea.stores import (
    MAX_PAGE_SIZE,
    NewTask,
    TaskFilter,
    TaskQueueStore,
    TaskRecord,
    TaskState,
    WallClock,
    wall_clock,
)
from aurea.tasks._service_types import (
    Current,
    ListQuery,
    SubmitSpec,
    Submitted,
    WatchItem,
    _parse_payload,
    _Token,
)
from aurea.tasks.events import TaskChanged, TaskHub, WatchFilter
from aurea.tasks.model import (
    Status,
    TaskInfo,
    canonical_json,
    encode_envelope,
    split_envelope,
)
from aurea.tasks.registry import MAX_ATTEMPTS, MAX_TIMEOUT_S, TaskKind, TaskRegistry
from aurea.tasks.scheduler import Cancel, GetPools, PoolStats, Scale, SchedulerMsg, Submit
from aurea.tasks.schema import violations
from aurea.telemetry.events import Dropped

__all__ = [
    "CANCEL_WAIT_S",
    "MAX_KEY_CHARS",
    "MAX_WAIT_S",
    "Current",
    "ListQuery",
    "SubmitSpec",
    "Submitted",
    "Tasks",
    "WatchItem",
]

MAX_WAIT_S = 60.0
CANCEL_WAIT_S = 10.0
MAX_KEY_CHARS = 128
MAX_WORKERS = 1024
DEFAULT_PAGE = 100
FULL_PAGE_BYTES = 3 << 20  # a FULL listing stops adding tasks past this (grpc's limit is 4 MiB)
_RECHECK_S = 1.0  # a wait re-reads the store this often (a change made by another replica)

_STATE_OF = {
    Status.QUEUED: TaskState.QUEUED,
    Status.RUNNING: TaskState.RUNNING,
    Status.SUCCEEDED: TaskState.SUCCEEDED,
    Status.FAILED: TaskState.FAILED,
    Status.TIMED_OUT: TaskState.FAILED,
    Status.CANCELLED: TaskState.CANCELLED,
}


class Tasks:
    def __init__(
        self,
        *,
        scheduler: ActorRef[SchedulerMsg],
        store: TaskQueueStore | Callable[[], TaskQueueStore],
        registry: TaskRegistry,
        hub: TaskHub,
        settings: TasksSettings,
        ask_timeout_s: float = 5.0,
        wall: WallClock = wall_clock,
        clock: Callable[[], float] = time.monotonic,
        new_id: Callable[[], str] = lambda: os.urandom(12).hex(),
    ) -> None:
        self._scheduler = scheduler
        # A callable gives the store once it is open (the server opens it as actors start).
        self._store_of: Callable[[], TaskQueueStore] = store if callable(store) else lambda: store
        self.registry = registry
        self._hub = hub
        self._settings = settings
        self._timeout = ask_timeout_s
        self._wall = wall
        self._clock = clock
        self._new_id = new_id

    # -- submit ----------------------------------------------------------------------------------

    def _kind(self, name: str) -> TaskKind:
        if not name:
            raise InvalidRequest.field("kind", "is required")
        kind = self.registry.get(name)
        if kind is None:
            known = ", ".join(k.name for k in self.registry)
            raise UnknownTaskKind(f"no task kind is named {name[:128]!r}; registered: {known}")
        return kind

    def _checked_payload(self, spec: SubmitSpec, kind: TaskKind) -> str:
        """The payload as canonical JSON, checked against size, schema and the kind."""
        payload = _parse_payload(spec)
        where = "payload_json" if spec.payload_json is not None else "payload"
        if not isinstance(payload, dict):
            raise InvalidRequest.field(where, "must be a JSON object")
        try:
            text = canonical_json(payload)
        except ValueError as exc:  # NaN or infinity in a Struct
            raise InvalidRequest.field(where, f"is not JSON: {exc}") from None
        size, limit = len(text.encode()), self._settings.max_payload_bytes
        if size > limit:
            raise InvalidRequest.field(
                where,
                f"is {size} bytes as JSON, over the limit of {limit} (tasks.max_payload_bytes)",
            )
        if kind.payload_schema is not None:
            bad = violations(payload, kind.payload_schema)
            if bad:
                raise InvalidRequest(
                    f"the payload does not match kind {kind.name!r}'s schema: "
                    f"{bad[0].field} {bad[0].description}",
                    bad,
                )
        if kind.validate is not None:
            kind.validate(payload)
        return text

    def _new_task(self, spec: SubmitSpec) -> NewTask:
        kind = self._kind(spec.kind)
        payload = self._checked_payload(spec, kind)
        bad: list[FieldViolation] = []
        if not 0 <= spec.max_attempts <= MAX_ATTEMPTS:
            bad.append(FieldViolation("max_attempts", f"must be in [0, {MAX_ATTEMPTS}]"))
        if not 0 <= spec.timeout_s <= MAX_TIMEOUT_S:
            bad.append(FieldViolation("timeout_ms", "must be in [0, 86400000]"))
        if spec.deadline is not None and spec.deadline <= self._wall():
            bad.append(FieldViolation("deadline", "has already passed"))
        for name, value in (("idempotency_key", spec.idempotency_key), ("job_id", spec.job_id)):
            if len(value) > MAX_KEY_CHARS:
                bad.append(FieldViolation(name, f"must be at most {MAX_KEY_CHARS} characters"))
        if bad:
            raise InvalidRequest("; ".join(f"{v.field}: {v.description}" for v in bad), bad)
        return NewTask(
            task_id=self._new_id(),
            kind=kind.name,
            pool=spec.pool or kind.pool,
            payload=encode_envelope(payload, timeout_s=spec.timeout_s or kind.timeout_s),
            priority=int(spec.priority),
            job_id=spec.job_id,
            idempotency_key=spec.idempotency_key,
            max_attempts=spec.max_attempts or kind.retry.max_attempts,
            deadline=spec.deadline,
        )

    async def submit(self, spec: SubmitSpec) -> Submitted:
        task = self._new_task(spec)
        done = await self._scheduler.ask(Submit(task=task), timeout_s=self._timeout)
        if not done.created:
            old = done.task
            same = (old.kind, old.pool, split_envelope(old.payload)[1]) == (
                task.kind,
                task.pool,
                split_envelope(task.payload)[1],
            )
            if not same:
                raise IdempotencyConflict(
                    f"idempotency_key {task.idempotency_key!r} was used for task {old.task_id} "
                    "with a different kind, payload or pool"
                )
        return Submitted(self._hub.info(done.task), deduplicated=not done.created)

    # -- get, cancel -----------------------------------------------------------------------------

    async def _read(self, task_id: str) -> TaskRecord:
        rec = await self._store_of().get(task_id)
        if rec is None:
            raise TaskNotFound(f"no task has the id {task_id[:128]!r}")
        return rec

    async def _until_terminal(self, info: TaskInfo, wait_s: float) -> TaskInfo:
        end = self._clock() + wait_s
        task_id = info.task_id
        with self._hub.watch_ids((task_id,)) as sub:
            info = self._hub.info(await self._read(task_id))  # after subscribing: no gap
            while not info.status.terminal and (left := end - self._clock()) > 0:
                try:
                    async with asyncio.timeout(min(left, _RECHECK_S)):
                        await sub.get()
                except TimeoutError:
                    pass
                except ShuttingDown:
                    break
                info = self._hub.info(await self._read(task_id))
        return info

    async def get(self, task_id: str, wait_s: float = 0.0) -> TaskInfo:
        if not task_id:
            raise InvalidRequest.field("task_id", "is required")
        if wait_s < 0:
            raise InvalidRequest.field("wait_ms", "must not be negative")
        info = self._hub.info(await self._read(task_id))
        if wait_s > 0 and not info.status.terminal:
            info = await self._until_terminal(info, min(wait_s, MAX_WAIT_S))
        return info

    async def cancel(self, task_id: str) -> TaskInfo:
        if not task_id:
            raise InvalidRequest.field("task_id", "is required")
        rec = await self._scheduler.ask(Cancel(task_id=task_id), timeout_s=self._timeout)
        if rec is None:
            raise TaskNotFound(f"no task has the id {task_id[:128]!r}")
        info = self._hub.info(rec)
        if info.status in (Status.SUCCEEDED, Status.FAILED, Status.TIMED_OUT):
            raise TaskFinished(f"task {task_id} already ended: {info.status.value}")
        if not info.status.terminal:
            info = await self._until_terminal(info, CANCEL_WAIT_S)
        return info

    # -- list, watch -----------------------------------------------------------------------------

    @staticmethod
    def _digest(q: ListQuery) -> str:
        key = json.dumps([sorted(q.statuses), q.pool, q.kind, q.job_id, q.full])
        return hashlib.sha256(key.encode()).hexdigest()[:12]

    async def _merged(
        self, states: Iterable[TaskState | None], base: TaskFilter, after: int, limit: int
    ) -> tuple[list[TaskRecord], bool]:
        """Up to ``limit`` tasks after ``after`` in one of ``states``, in seq order, and
        whether more follow."""
        pages = [
            await self._store_of().list_tasks(
                TaskFilter(state=state, kind=base.kind, pool=base.pool, job_id=base.job_id),
                after=str(after) if after else None,
                limit=limit,
            )
            for state in states
        ]
        merged = list(heapq.merge(*(p.items for p in pages), key=lambda r: r.seq))
        more = len(merged) > limit or any(p.next_cursor is not None for p in pages)
        return merged[:limit], more

    async def list(self, q: ListQuery) -> tuple[list[TaskInfo], str]:
        if q.page_size < 0:
            raise InvalidRequest.field("page_size", "must not be negative")
        digest = self._digest(q)
        after = _Token.decode(q.page_token, digest).after if q.page_token else 0
        size = min(q.page_size or DEFAULT_PAGE, MAX_PAGE_SIZE)
        states: list[TaskState | None] = [None]
        if q.statuses:
            states = list(sorted({_STATE_OF[s] for s in q.statuses}))
        base = TaskFilter(kind=q.kind, pool=q.pool, job_id=q.job_id)
        records, more = await self._merged(states, base, after, size)
        out: list[TaskInfo] = []
        used = 0
        for rec in records:
            if q.full and out and used + len(rec.payload) + len(rec.result) > FULL_PAGE_BYTES:
                more = True
                break
            after = rec.seq
            used += len(rec.payload) + len(rec.result)
            info = self._hub.info(rec)
            if not q.statuses or info.status in q.statuses:
                out.append(info)
        token = _Token(after, digest).encode() if more and records else ""
        return out, token

    async def _current(self, flt: WatchFilter) -> AsyncIterator[TaskInfo]:
        base = TaskFilter(kind=flt.kind, pool=flt.pool, job_id=flt.job_id)
        after, more = 0, True
        while more:
            records, more = await self._merged(
                (TaskState.QUEUED, TaskState.RUNNING), base, after, MAX_PAGE_SIZE
            )
            for rec in records:
                after = rec.seq
                if flt.matches(rec):
                    yield self._hub.info(rec)
            more = more and bool(records)

    async def watch(
        self, flt: WatchFilter, *, include_current: bool
    ) -> AsyncGenerator[WatchItem, None]:
        """Changes of matching tasks (after their current states, if asked) until the caller
        stops; raises SubscriberLagged for a reader too slow, ShuttingDown at drain."""
        with self._hub.watch(flt) as sub:
            seen: dict[str, float] = {}
            if include_current:
                async for info in self._current(flt):
                    seen[info.task_id] = info.record.updated_at
                    yield Current(info)
            while True:
                item = await sub.get()
                if isinstance(item, Dropped):  # not with this hub's overflow; never skip quietly
                    raise ShuttingDown("the watch lost events; reconnect")
                if isinstance(item, TaskChanged):
                    rec = item.info.record
                    shown = seen.get(rec.task_id)
                    if shown is not None and rec.updated_at <= shown:
                        continue  # already part of the current state sent
                yield item

    # -- pools -----------------------------------------------------------------------------------

    async def pools(self) -> tuple[PoolStats, ...]:
        return await self._scheduler.ask(GetPools(), timeout_s=self._timeout)

    async def scale(self, pool: str, workers: int) -> PoolStats:
        if not pool:
            raise InvalidRequest.field("pool", "is required")
        if not 0 <= workers <= MAX_WORKERS:
            raise InvalidRequest.field("workers", f"must be in [0, {MAX_WORKERS}]")
        return await self._scheduler.ask(Scale(pool=pool, workers=workers), timeout_s=self._timeout)
