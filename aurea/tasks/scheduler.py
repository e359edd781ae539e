"""The Scheduler actor: owns the worker pools (their dispatchers and workers are its child
tasks, so they stop with it), admits submissions against each pool's queue capacity, cancels
tasks, scales pools, renews the leases of running attempts and purges old results.

The queues themselves live in the ``TaskQueueStore`` (durable with SQLite; shared by replicas
with Redis later), so a restart of this actor, or of the server, loses no task: a restarted
incarnation rebuilds its pools (sizes set at run time survive in the ``PoolBook``) and claims
again; attempts that were running are requeued (INTERRUPTED) or come back when their lease
expires.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, assert_never

import structlog

from aurea.errors import QueueFull, UnknownPool
from aurea.runtime import Actor, Ask, Later
from aurea.stores import (
    Enqueued,
    NewTask,
    StoreUnavailable,
    TaskQueueStore,
    TaskRecord,
    TaskState,
    WallClock,
    wall_clock,
)
from aurea.tasks.events import TaskHub
from aurea.tasks.model import Reason, Status
from aurea.tasks.pool import Pool
from aurea.tasks.registry import TaskRegistry
from aurea.tasks.runner import Runner
from aurea.tasks.unseen import Unseen

__all__ = [
    "Autoscaler",
    "Cancel",
    "GetPools",
    "PoolBook",
    "PoolStats",
    "Scale",
    "Scheduler",
    "SchedulerMsg",
    "SchedulerSettings",
    "Submit",
]

log = structlog.get_logger("aurea.tasks")

COUNT_EVERY_S = 30.0  # how often queue sizes are re-read (capacity checks count locally between)
UNSEEN_EVERY_S = 1.0  # at most; tasks the store changes on its own are checked this often
PURGE_EVERY_S = 60.0  # at most; a shorter retention purges 4 times per retention period


@dataclass(frozen=True, slots=True, kw_only=True)
class SchedulerSettings:
    pools: Mapping[str, int]  # configured workers per pool
    queue_capacity: int = 100_000
    cpu_threshold_percent: float = 90.0  # >= 100: no threshold
    lease_s: float = 15.0
    poll_interval_s: float = 0.5
    result_retention_s: float = 86_400.0
    max_result_bytes: int = 1 << 20


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolStats:
    name: str
    workers: int  # the pool's target size on this server
    busy: int  # this server's workers running a task
    queued: int
    running: int  # on any server sharing the store
    queue_capacity: int


class Autoscaler(Protocol):
    """Something the scheduler calls every ``interval_s`` with each pool's queue length (the
    resource-backed pools' autoscaler, aurea.infra.pools); its loop stops with the scheduler."""

    @property
    def interval_s(self) -> float: ...

    async def tick(self, queued: Mapping[str, int]) -> None: ...


class PoolBook:
    """Pool sizes set at run time (ScalePool); outlives actor restarts."""

    def __init__(self) -> None:
        self.sizes: dict[str, int] = {}


# -- messages ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Submit(Ask[Enqueued]):
    task: NewTask


@dataclass(frozen=True, slots=True, kw_only=True)
class Cancel(Ask[TaskRecord | None]):
    task_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Scale(Ask[PoolStats]):
    pool: str
    workers: int


@dataclass(frozen=True, slots=True, kw_only=True)
class GetPools(Ask[tuple[PoolStats, ...]]):
    pass


SchedulerMsg = Submit | Cancel | Scale | GetPools


def _holder_id() -> str:
    """This incarnation's name as a lease holder: host, process, and a random part."""
    return f"{socket.gethostname()[:32]}:{os.getpid()}:{os.urandom(3).hex()}"


class Scheduler(Actor[SchedulerMsg]):
    def __init__(
        self,
        *,
        store: TaskQueueStore,
        registry: TaskRegistry,
        hub: TaskHub,
        settings: SchedulerSettings,
        book: PoolBook,
        cpu_percent: Callable[[], float] = lambda: 0.0,
        wall: WallClock = wall_clock,
        clock: Callable[[], float] = time.monotonic,
        autoscaler: Autoscaler | None = None,
    ) -> None:
        self._store = store
        self._autoscaler = autoscaler
        self._registry = registry
        self._hub = hub
        self._settings = settings
        self._book = book
        self._cpu_percent = cpu_percent
        self._wall = wall
        self._clock = clock
        self._pools: dict[str, Pool] = {}
        self._queued: dict[str, int] = {}  # estimates for capacity checks
        self._running: dict[str, int] = {}
        self._unseen = Unseen()
        self._runner = Runner(
            store=store,
            registry=registry,
            hub=hub,
            max_result_bytes=settings.max_result_bytes,
            on_requeued=self._requeued,
            wall=wall,
            clock=clock,
        )

    # -- lifecycle -------------------------------------------------------------------------------

    async def on_start(self) -> None:
        holder = _holder_id()
        s = self._settings
        for name, configured in s.pools.items():
            pool = Pool(
                name,
                store=self._store,
                runner=self._runner,
                hub=self._hub,
                spawn=lambda work, label: self.spawn_child(work, name=label),
                holder=f"{holder}/{name}",
                lease_s=s.lease_s,
                poll_s=s.poll_interval_s,
                cpu_busy=self._cpu_busy,
                wall=self._wall,
                on_claimed=self._claimed,
            )
            self._pools[name] = pool
            pool.start(self._book.sizes.get(name, configured))
        self.spawn_child(self._heartbeats(), name="scheduler:heartbeats")
        self.spawn_child(self._housekeeping(), name="scheduler:housekeeping")
        if self._autoscaler is not None:
            self.spawn_child(self._autoscale(self._autoscaler), name="scheduler:autoscaler")

    async def on_stop(self) -> None:
        for pool in self._pools.values():
            pool.close()

    # -- messages --------------------------------------------------------------------------------

    async def receive(self, msg: SchedulerMsg) -> Any:
        match msg:
            case Submit(task=task):
                if task.pool not in self._pools:
                    raise UnknownPool(self._unknown(task.pool))
                capacity = self._settings.queue_capacity
                if self._queued.get(task.pool, 0) >= capacity:
                    raise QueueFull(
                        f"pool {task.pool!r} has {capacity} tasks queued, its capacity; "
                        "retry later",
                        retry_after_s=1.0,
                    )
                return Later(self._submit(task))
            case Cancel(task_id=task_id):
                return Later(self._cancel(task_id))
            case Scale(pool=name, workers=workers):
                pool = self._pools.get(name)
                if pool is None:
                    raise UnknownPool(self._unknown(name))
                pool.scale(workers)
                self._book.sizes[name] = workers
                log.info("task_pool_scaled", pool=name, workers=workers)
                return Later(self._one(name))
            case GetPools():
                return Later(self._stats(tuple(sorted(self._pools))))
            case _:
                assert_never(msg)

    def _unknown(self, name: str) -> str:
        return f"no pool is named {name!r}; pools: {', '.join(sorted(self._pools))}"

    async def _submit(self, task: NewTask) -> Enqueued:
        done = await self._store.enqueue(task, now=self._wall())
        # Published before any other await: see aurea.tasks.events on ordering.
        if done.created:
            self._queued[task.pool] = self._queued.get(task.pool, 0) + 1
            self._hub.changed(done.task, None)
            self._pools[task.pool].wake()
            if task.deadline is not None:
                self._unseen.track_deadline(task.task_id, task.deadline)
        return done

    async def _cancel(self, task_id: str) -> TaskRecord | None:
        now = self._wall()
        rec = await self._store.cancel(task_id, now=now)
        if rec is None:
            return None
        if rec.state is TaskState.CANCELLED and rec.finished_at == now:  # this call ended it
            self._queued[rec.pool] = max(self._queued.get(rec.pool, 0) - 1, 0)
            self._hub.changed(rec, Status.QUEUED)
        elif rec.state is TaskState.RUNNING and rec.cancel_requested:
            attempt = self._runner.running.get(task_id)
            if attempt is not None:
                attempt.cancel(Reason.CANCELLED)
        return rec

    async def _one(self, name: str) -> PoolStats:
        return (await self._stats((name,)))[0]

    async def _stats(self, names: tuple[str, ...]) -> tuple[PoolStats, ...]:
        await self._count()
        return tuple(
            PoolStats(
                name=name,
                workers=self._pools[name].target,
                busy=self._pools[name].busy,
                queued=self._queued.get(name, 0),
                running=self._running.get(name, 0),
                queue_capacity=self._settings.queue_capacity,
            )
            for name in names
        )

    # -- child tasks and callbacks ----------------------------------------------------------------

    def _cpu_busy(self) -> bool:
        threshold = self._settings.cpu_threshold_percent
        return threshold < 100 and self._cpu_percent() >= threshold

    def _claimed(self, pool: str, n: int) -> None:
        self._queued[pool] = max(self._queued.get(pool, 0) - n, 0)

    def _requeued(self, pool: str, delay_s: float) -> None:
        self._queued[pool] = self._queued.get(pool, 0) + 1
        target = self._pools.get(pool)
        if target is not None:
            target.wake_later(delay_s)

    async def _count(self) -> None:
        counts = await self._store.counts()
        queued: dict[str, int] = {}
        running: dict[str, int] = {}
        for c in counts:
            if c.state is TaskState.QUEUED:
                queued[c.pool] = c.count
            elif c.state is TaskState.RUNNING:
                running[c.pool] = c.count
        self._queued, self._running = queued, running

    async def _heartbeats(self) -> None:
        """Renew the lease of every running attempt; stop an attempt whose lease was lost, or
        whose cancellation was requested (on another replica, or while this one was down)."""
        lease_s = self._settings.lease_s
        while True:
            await asyncio.sleep(lease_s / 3)
            for task_id, attempt in list(self._runner.running.items()):
                try:
                    ok = await self._store.heartbeat(
                        task_id, attempt.record.attempts, lease_s, now=self._wall()
                    )
                    rec = await self._store.get(task_id) if ok else None
                except StoreUnavailable as exc:
                    log.warning("task_heartbeat_failed", task_id=task_id, error=str(exc))
                    continue
                if not ok:
                    attempt.cancel(Reason.LEASE_LOST)
                elif rec is not None and rec.cancel_requested:
                    attempt.cancel(Reason.CANCELLED)

    async def _housekeeping(self) -> None:
        purge_every_s = min(PURGE_EVERY_S, self._settings.result_retention_s / 4)
        check_every_s = min(UNSEEN_EVERY_S, self._settings.lease_s / 2)
        next_count = next_purge = next_check = self._clock()
        try:
            await self._unseen.find_orphans(self._store, running_here=set(self._runner.running))
        except StoreUnavailable as exc:
            log.warning("task_orphan_scan_failed", error=str(exc))
        while True:
            now = self._clock()
            try:
                if now >= next_check:
                    next_check = now + check_every_s
                    if self._unseen:
                        await self._unseen.check(self._store, self._hub, now=self._wall())
                if now >= next_count:
                    next_count = now + COUNT_EVERY_S
                    await self._count()
                if now >= next_purge:
                    next_purge = now + purge_every_s
                    cutoff = self._wall() - self._settings.result_retention_s
                    purged = await self._store.purge(finished_before=cutoff)
                    if purged:
                        log.info("tasks_purged", count=purged)
            except StoreUnavailable as exc:
                log.warning("task_housekeeping_failed", error=str(exc))
            await asyncio.sleep(max(min(next_count, next_purge, next_check) - self._clock(), 0.01))

    async def _autoscale(self, autoscaler: Autoscaler) -> None:
        """Re-count the queues and let the autoscaler act on them, every ``interval_s``."""
        while True:
            await asyncio.sleep(autoscaler.interval_s)
            try:
                await self._count()
            except StoreUnavailable as exc:
                log.warning("task_autoscale_count_failed", error=str(exc))
                continue
            try:
                await autoscaler.tick(dict(self._queued))
            except Exception:  # one bad round must not stop the scheduler (this is its child)
                log.exception("task_autoscale_failed")
