"""Changes the store makes on its own, inside a claim, that no caller is told of: a queued task
failed because its start deadline passed, and a running task whose worker died (its lease
expired) requeued or ended. The scheduler tracks the tasks that may change so (its submissions
with a deadline; tasks found running at start, whose holders may be dead) and checks them now
and then, so watchers get those changes too, once each."""

from __future__ import annotations

from aurea.stores import TaskFilter, TaskQueueStore, TaskState
from aurea.stores.tasks import DEADLINE_EXCEEDED, LEASE_EXPIRED
from aurea.tasks.events import TaskHub
from aurea.tasks.model import Status

__all__ = ["Unseen"]

MAX_ORPHAN_PAGES = 100  # tasks found running at start that are tracked: at most 100 pages


class Unseen:
    def __init__(self) -> None:
        self._deadlines: dict[str, float] = {}  # task id -> its start deadline (wall)
        self._orphans: dict[str, int] = {}  # task id -> the attempt its dead worker ran

    def __len__(self) -> int:
        return len(self._deadlines) + len(self._orphans)

    def track_deadline(self, task_id: str, deadline: float) -> None:
        self._deadlines[task_id] = deadline

    async def find_orphans(self, store: TaskQueueStore, *, running_here: set[str]) -> None:
        """Track the tasks running now that no worker of this scheduler holds."""
        after: str | None = None
        for _ in range(MAX_ORPHAN_PAGES):
            page = await store.list_tasks(
                TaskFilter(state=TaskState.RUNNING), after=after, limit=1000
            )
            for rec in page.items:
                if rec.task_id not in running_here:
                    self._orphans[rec.task_id] = rec.attempts
            after = page.next_cursor
            if after is None:
                return

    async def check(self, store: TaskQueueStore, hub: TaskHub, *, now: float) -> None:
        """Publish what the store did to tracked tasks; forget those that cannot change so."""
        for task_id, deadline in list(self._deadlines.items()):
            if deadline > now:
                continue
            rec = await store.get(task_id)
            if rec is not None and rec.state is TaskState.QUEUED:
                continue  # the next claim that reaches it fails it
            del self._deadlines[task_id]
            if rec is not None and rec.state is TaskState.FAILED and rec.error == DEADLINE_EXCEEDED:
                hub.changed(rec, Status.QUEUED)
        for task_id, attempt in list(self._orphans.items()):
            rec = await store.get(task_id)
            if rec is not None and rec.state is TaskState.RUNNING and rec.attempts == attempt:
                continue  # its holder is alive, or its lease has not expired yet
            del self._orphans[task_id]
            # Requeued or ended by the store when the lease expired (not re-claimed since).
            expired = rec is not None and rec.attempts == attempt and rec.error == LEASE_EXPIRED
            if expired and rec is not None and rec.state is not TaskState.RUNNING:
                hub.changed(rec, Status.RUNNING)
