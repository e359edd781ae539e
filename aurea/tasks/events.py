"""Task events: every status change and progress report of a task, fanned out to ``WatchTasks``
streams and ``GetTask`` waits, and copied to the server's system events (``task.queued``,
``task.running``, ``task.succeeded``, ...) for ``AdminService.WatchEvents``.

A task's changes are published by whoever made them in the store, right after the store
returned and before anything else is awaited: the store applies one task's steps one after the
other (submit, claim, finish), and the loop resumes their callers in that order, so a task's
events leave here in the order the store applied them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass

from aurea.stores.tasks import TaskRecord, TaskState
from aurea.tasks.model import Progress, Status, TaskInfo, info_of
from aurea.telemetry.events import EventBus, Hub, Overflow, Subscription

__all__ = ["WATCH_CAPACITY", "TaskChanged", "TaskEvent", "TaskHub", "TaskProgressed", "WatchFilter"]

WATCH_CAPACITY = 10_000  # messages a watcher may fall behind before its stream ends


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskChanged:
    info: TaskInfo
    previous: Status | None  # None: the submission
    time_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TaskProgressed:
    record: TaskRecord  # as claimed for the attempt
    progress: Progress


TaskEvent = TaskChanged | TaskProgressed


@dataclass(frozen=True, slots=True, kw_only=True)
class WatchFilter:
    """Every field set must match; defaults match every task."""

    task_ids: frozenset[str] = frozenset()
    pool: str = ""
    kind: str = ""
    job_id: str = ""

    def matches(self, rec: TaskRecord) -> bool:
        return (
            (not self.task_ids or rec.task_id in self.task_ids)
            and (not self.pool or rec.pool == self.pool)
            and (not self.kind or rec.kind == self.kind)
            and (not self.job_id or rec.job_id == self.job_id)
        )

    def __call__(self, ev: TaskEvent) -> bool:
        return self.matches(ev.info.record if isinstance(ev, TaskChanged) else ev.record)


class TaskHub:
    """Publishes task events; remembers the latest progress of each running task."""

    def __init__(
        self, bus: EventBus | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self._bus = bus
        self._clock = clock
        self._hub: Hub[TaskEvent] = Hub()
        self._progress: dict[str, Progress] = {}

    def changed(self, record: TaskRecord, previous: Status | None) -> TaskInfo:
        """Publish that ``record`` reached its state (from ``previous``); returns its info."""
        if record.state is not TaskState.RUNNING:
            self._progress.pop(record.task_id, None)
        info = info_of(record, self._progress.get(record.task_id))
        self._hub.publish(TaskChanged(info=info, previous=previous, time_s=self._clock()))
        if self._bus is not None:
            attrs = {
                "task_id": record.task_id,
                "kind": record.kind,
                "pool": record.pool,
                "attempt": record.attempts,
            }
            if record.job_id:
                attrs["job_id"] = record.job_id
            if info.error_reason and info.status is not Status.RUNNING:
                attrs["reason"] = info.error_reason
            self._bus.publish(f"task.{info.status.value}", **attrs)
        return info

    def progressed(self, record: TaskRecord, fraction: float, message: str) -> None:
        progress = Progress(fraction=fraction, message=message, time_s=self._clock())
        self._progress[record.task_id] = progress
        self._hub.publish(TaskProgressed(record=record, progress=progress))

    @property
    def watchers(self) -> int:
        """Open watches (WatchTasks streams and GetTask waits)."""
        return self._hub.subscribers

    def forget_progress(self, task_id: str) -> None:
        """An attempt ended without a change of ours to publish (its lease was lost)."""
        self._progress.pop(task_id, None)

    def progress_of(self, task_id: str) -> Progress | None:
        return self._progress.get(task_id)

    def info(self, record: TaskRecord) -> TaskInfo:
        """``record`` as the API shows it, with its latest progress."""
        return info_of(record, self._progress.get(record.task_id))

    def watch(
        self, flt: WatchFilter = WatchFilter(), *, capacity: int = WATCH_CAPACITY
    ) -> Subscription[TaskEvent]:
        return self._hub.subscribe(flt, capacity=capacity, overflow=Overflow.CLOSE)

    def watch_ids(self, task_ids: Collection[str]) -> Subscription[TaskEvent]:
        return self.watch(WatchFilter(task_ids=frozenset(task_ids)))

    def close(self) -> None:
        """End every watch (the server is draining)."""
        self._hub.close()
