"""Wiring the task capability into a server: open the configured store, gather the task kinds
(built-in ones, ``@task`` ones, and those of ``tasks.modules``), spawn the Scheduler actor, and
build the ``Tasks`` facade the edge calls; end watches at drain and close the store at stop.

The SQLite file defaults to the one the other durable stores use (``$AUREA_HOME/aurea.db``,
else ``~/.local/share/aurea/aurea.db``); it is opened on its own connection.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import structlog

from aurea.config import ConfigError, TasksSettings
from aurea.inference import Inference
from aurea.paths import default_db_path
from aurea.runtime import ActorRef, ActorSystem
from aurea.stores import StoreUnavailable, TaskQueueStore, WallClock, wall_clock
from aurea.stores.memory.tasks import MemoryTaskQueueStore
from aurea.stores.sqlite import SqliteDatabase, SqliteTaskQueueStore
from aurea.tasks.builtins import builtin_kinds, compute_backends
from aurea.tasks.events import TaskHub
from aurea.tasks.registry import DEFAULT_REGISTRY, TaskRegistry, load_modules
from aurea.tasks.scheduler import (
    Autoscaler,
    PoolBook,
    Scheduler,
    SchedulerMsg,
    SchedulerSettings,
)
from aurea.tasks.service import Tasks
from aurea.telemetry.events import EventBus

__all__ = ["TaskSystem", "default_sqlite_path"]

log = structlog.get_logger("aurea.tasks")


def default_sqlite_path() -> Path:
    """The shared default database (``aurea.paths.default_db_path``)."""
    return default_db_path()


class TaskSystem:
    """The task capability of one server."""

    def __init__(
        self,
        settings: TasksSettings,
        *,
        events: EventBus,
        wall: WallClock = wall_clock,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.hub = TaskHub(events, clock=wall)
        self.book = PoolBook()  # outlives scheduler restarts
        self._wall = wall
        self._clock = clock
        self._db: SqliteDatabase | None = None
        self.store: TaskQueueStore | None = None
        self.scheduler: ActorRef[SchedulerMsg] | None = None
        self.tasks: Tasks | None = None

    async def open(self) -> TaskQueueStore:
        """Open the configured store (idempotent); a SQLite file's directory is created."""
        if self.store is not None:
            return self.store
        s = self.settings
        if s.store == "memory":
            self.store = MemoryTaskQueueStore(aging_s_per_priority=s.aging_s_per_priority)
            return self.store
        path = Path(s.sqlite_path) if s.sqlite_path else default_sqlite_path()
        try:
            await asyncio.to_thread(path.parent.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError("tasks.sqlite_path", f"cannot create {path.parent}: {exc}") from exc
        self._db = await SqliteDatabase.open(path)
        self.store = SqliteTaskQueueStore(self._db, aging_s_per_priority=s.aging_s_per_priority)
        return self.store

    def registry(self, *, inference: Inference, providers: Mapping[str, object]) -> TaskRegistry:
        """Built-in kinds, then every ``@task`` kind (after importing ``tasks.modules``)."""
        load_modules(self.settings.modules)
        registry = TaskRegistry(
            builtin_kinds(inference=inference, backends=compute_backends(providers))
        )
        for kind in DEFAULT_REGISTRY:
            try:
                registry.add(kind)
            except ValueError as exc:
                raise ConfigError("tasks.modules", str(exc)) from exc
        pools = self.settings.pool_sizes
        for kind in registry:
            if kind.pool not in pools:
                log.warning(
                    "task_kind_pool_missing",
                    kind=kind.name,
                    pool=kind.pool,
                    hint="add the pool to tasks.pools, or submit with a pool",
                )
        return registry

    def spawn(
        self,
        system: ActorSystem,
        *,
        registry: TaskRegistry,
        cpu_percent: Callable[[], float],
        ask_timeout_s: float,
        mailbox_capacity: int,
        autoscaler: Autoscaler | None = None,
    ) -> Tasks:
        """Spawn the Scheduler and return the facade. The store may be opened later, before the
        actor system starts (the Scheduler is built then)."""
        s = self.settings
        settings = SchedulerSettings(
            pools=s.pool_sizes,
            queue_capacity=s.queue_capacity,
            cpu_threshold_percent=s.cpu_threshold_percent,
            lease_s=s.lease_s,
            poll_interval_s=s.poll_interval_s,
            result_retention_s=s.result_retention_s,
            max_result_bytes=s.max_result_bytes,
        )
        hub, book, wall, clock = self.hub, self.book, self._wall, self._clock
        self.scheduler = system.spawn(
            "scheduler",
            lambda: Scheduler(
                store=self.opened(),
                registry=registry,
                hub=hub,
                settings=settings,
                book=book,
                cpu_percent=cpu_percent,
                wall=wall,
                clock=clock,
                autoscaler=autoscaler,
            ),
            capacity=mailbox_capacity,
        )
        self.tasks = Tasks(
            scheduler=self.scheduler,
            store=self.opened,
            registry=registry,
            hub=hub,
            settings=s,
            ask_timeout_s=ask_timeout_s,
            wall=wall,
            clock=clock,
        )
        return self.tasks

    def opened(self) -> TaskQueueStore:
        if self.store is None:
            raise StoreUnavailable("the task store is not open (the server is starting)")
        return self.store

    def drain(self) -> None:
        """End every watch and wait (the server is draining)."""
        self.hub.close()

    async def close(self) -> None:
        """Close the store (after the scheduler stopped: its last writes went through)."""
        if self._db is not None:
            await self._db.close()
            self._db = None
