"""Tasks and worker pools: named task kinds (``@task``) run with a JSON payload on worker pools,
from a durable priority queue (the ``TaskQueueStore``), with timeouts, retries with backoff,
cancellation, and a live stream of their changes.

The pieces: ``registry`` (kinds and the decorator), ``scheduler`` (the actor that owns the
pools), ``pool`` (a dispatcher and its workers), ``runner`` (one attempt), ``events`` (changes
fanned out to watchers), ``service`` (what the edge calls), ``builtins`` (``llm.generate``,
``llm.embed``, ``compute.invoke``).
"""

from aurea.tasks.context import TaskContext
from aurea.tasks.events import TaskChanged, TaskHub, TaskProgressed, WatchFilter
from aurea.tasks.model import Priority, Progress, Reason, Status, TaskInfo
from aurea.tasks.registry import (
    DEFAULT_REGISTRY,
    RetryPolicy,
    TaskKind,
    TaskRegistry,
    load_modules,
    task,
)
from aurea.tasks.scheduler import PoolBook, PoolStats, Scheduler, SchedulerSettings
from aurea.tasks.service import Current, ListQuery, SubmitSpec, Submitted, Tasks, WatchItem

__all__ = [
    "DEFAULT_REGISTRY",
    "Current",
    "ListQuery",
    "PoolBook",
    "PoolStats",
    "Priority",
    "Progress",
    "Reason",
    "RetryPolicy",
    "Scheduler",
    "SchedulerSettings",
    "Status",
    "SubmitSpec",
    "Submitted",
    "TaskChanged",
    "TaskContext",
    "TaskHub",
    "TaskInfo",
    "TaskKind",
    "TaskProgressed",
    "TaskRegistry",
    "Tasks",
    "WatchFilter",
    "WatchItem",
    "load_modules",
    "task",
]
