"""The actor system: starts actors in spawn (dependency) order, supervises their mailbox loops with
bounded, backed-off restarts, and stops them in reverse order after draining their mailboxes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog

from aurea.errors import ShuttingDown
from aurea.runtime._supervise import STOP, Cell, RestartPolicy, Supervisor, fail
from aurea.runtime.actor import CLOSED, DEAD, DRAINING, Actor, ActorRef, current_system

__all__ = ["ActorStats", "ActorSystem", "RestartPolicy"]

M = TypeVar("M")

_log = structlog.get_logger("aurea.runtime")

_NEW, _STARTING, _STARTED, _STOPPING, _STOPPED = range(5)
_DEFAULT_POLICY = RestartPolicy()  # frozen, so one shared default is safe


@dataclass(frozen=True, slots=True)
class ActorStats:
    name: str
    depth: int
    capacity: int
    restarts: int
    processed: int
    alive: bool
    handling_seconds_total: float  # sum of receive() durations


class ActorSystem:
    """Owns the actors: ``spawn`` them, ``start``, ``stop`` (or ``async with``)."""

    def __init__(
        self,
        *,
        policy: RestartPolicy = _DEFAULT_POLICY,
        clock: Callable[[], float] = time.monotonic,
        on_restart: Callable[[str, BaseException], None] | None = None,
        on_dead: Callable[[str], None] | None = None,
    ) -> None:
        self._policy = policy
        self._sup = Supervisor(owner=self, clock=clock, on_restart=on_restart, on_dead=on_dead)
        self._cells: dict[str, Cell] = {}
        self._order: list[Cell] = []
        self._phase = _NEW
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> ActorSystem:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    def spawn(
        self,
        name: str,
        factory: Callable[[], Actor[M]],
        *,
        capacity: int = 1024,
        policy: RestartPolicy | None = None,
    ) -> ActorRef[M]:
        """Register an actor (spawn order is start order); start it now if the system runs."""
        if self._phase >= _STOPPING:
            raise ShuttingDown(f"actor system is shutting down; cannot spawn {name}")
        if name in self._cells:
            raise ValueError(f"an actor named {name!r} already exists")
        ref: ActorRef[M] = ActorRef(name, capacity, self)
        cell = Cell(ref, factory, policy or self._policy)
        if self._phase == _STARTED:
            cell.task = asyncio.get_running_loop().create_task(self._sup.run(cell), name=name)
        self._cells[name] = cell
        self._order.append(cell)
        return ref

    def get(self, name: str) -> ActorRef[Any]:
        return self._cells[name].ref  # KeyError(name) for an unknown actor

    def stats(self) -> list[ActorStats]:
        return [
            ActorStats(
                name=c.ref.name,
                depth=c.ref.depth,
                capacity=c.ref.capacity,
                restarts=c.ref._restarts,
                processed=c.ref._processed,
                alive=c.ref.alive,
                handling_seconds_total=c.ref._handling_s,
            )
            for c in self._order
        ]

    async def start(self) -> None:
        """Start every actor in spawn order: factory(), on_start(), then its mailbox loop."""
        async with self._lock:
            if self._phase == _STARTED:
                return
            if self._phase != _NEW:
                raise ShuttingDown("actor system is stopped; it cannot be started again")
            self._phase = _STARTING
            token = current_system.set(self)  # tasks started by on_start() count as the system's
            try:
                for cell in self._order:  # also visits actors an on_start() spawns meanwhile
                    if await self._sup.incarnate(cell):
                        cell.task = asyncio.create_task(self._sup.run(cell), name=cell.ref.name)
            finally:
                current_system.reset(token)
            self._phase = _STARTED

    async def stop(self, grace_s: float = 5.0) -> None:
        """Refuse outside calls, then per actor in reverse order: drain, fail leftovers, on_stop().

        Draining shares ``grace_s`` across all actors. While it runs, actors not yet stopped still
        accept messages from this system's actors, so upstream work can finish downstream.
        """
        async with self._lock:
            if self._phase == _STOPPED:
                return
            self._phase = _STOPPING
            for cell in self._order:
                if cell.ref._gate < DRAINING:
                    cell.ref._gate = DRAINING
            loop = asyncio.get_running_loop()
            deadline = loop.time() + grace_s
            token = current_system.set(self)  # on_stop() may still tell actors not yet stopped
            try:
                for cell in reversed(self._order):
                    if not cell.stopped:
                        await self._stop_one(cell, deadline, loop)
            finally:
                current_system.reset(token)
            self._phase = _STOPPED

    async def _stop_one(self, cell: Cell, deadline: float, loop: asyncio.AbstractEventLoop) -> None:
        ref, task = cell.ref, cell.task
        if ref._gate != DEAD:
            ref._gate = CLOSED
        if task is not None:
            if not task.done():
                ref._mailbox.put_nowait(STOP)
                await asyncio.wait((task,), timeout=max(0.0, deadline - loop.time()))
            if not task.done():
                task.cancel()  # out of grace: interrupt whatever receive() is awaiting
                await asyncio.wait((task,))
            if not task.cancelled() and (exc := task.exception()) is not None:
                _log.error("actor_task_failed", actor=ref.name, error=repr(exc), exc_info=exc)
        left = 0
        if cell.current is not None:
            left += 1
            fail(cell.current, ShuttingDown(f"actor {ref.name} stopped while handling the call"))
            cell.current = None
        while not ref._mailbox.empty():
            env = ref._mailbox.get_nowait()
            if env is not STOP:
                left += 1
                fail(env, ShuttingDown(f"actor {ref.name} stopped before handling the call"))
        if left:
            _log.warning("actor_stop_abandoned", actor=ref.name, messages=left)
        if cell.instance is not None:
            await cell.instance.cancel_children()
            try:
                await cell.instance.on_stop()
            except Exception as exc:
                _log.error("actor_stop_failed", actor=ref.name, error=repr(exc), exc_info=exc)
            cell.instance = None
        cell.stopped = True
