"""The actor system: starts actors in spawn (dependency) order, supervises their mailbox loops with
bounded, backed-off restarts, and stops them in reverse order after draining their mailboxes."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import structlog

from aurea.errors import ActorCrashed, AureaError, ShuttingDown, Unavailable
from aurea.runtime.actor import (
    CLOSED,
    DEAD,
    DRAINING,
    Actor,
    ActorRef,
    Envelope,
    Later,
    current_system,
    deliver,
)
from aurea.runtime.context import request_id_var

__all__ = ["ActorStats", "ActorSystem", "RestartPolicy"]

M = TypeVar("M")

_log = structlog.get_logger("aurea.runtime")
_STOP: Final = Envelope(None, None)  # wakes an idle mailbox loop at stop
_YIELD_EVERY: Final = 64  # a loop with a full mailbox yields this often, so askers' wakeups run

_NEW, _STARTING, _STARTED, _STOPPING, _STOPPED = range(5)
_PENDING: Final = object()  # the reply will come from a Later's child task


async def _reply_later(later: Later, fut: asyncio.Future[Any] | None, name: str, msg: Any) -> None:
    """Run a ``Later``'s work and deliver its outcome; an error goes to the asker, not the
    actor (an ``AureaError`` as is, anything else as ``ActorCrashed``-like ``Unavailable``)."""
    try:
        result = await later.work
    except AureaError as exc:
        if fut is not None and not fut.done():
            fut.set_exception(exc)
        elif fut is None:
            _log.warning("actor_message_rejected", actor=name, message=type(msg).__name__)
    except Exception as exc:
        _log.error("actor_later_failed", actor=name, error=repr(exc), exc_info=exc)
        if fut is not None and not fut.done():
            err = Unavailable(f"actor {name} failed replying to {type(msg).__name__}; retry")
            err.__cause__ = exc
            fut.set_exception(err)
    else:
        settle = deliver(fut, result)
        if settle is not None:
            _log.warning("actor_later_abandoned", actor=name, message=type(msg).__name__)


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Restart budget and backoff for crashed actors."""

    max_restarts: int = 5  # within within_s; exceeding it marks the actor dead
    within_s: float = 60.0
    backoff_base_s: float = 0.01  # before restart n: min(base * 2**(n-1), backoff_max_s)
    backoff_max_s: float = 1.0


@dataclass(frozen=True, slots=True)
class ActorStats:
    name: str
    depth: int
    capacity: int
    restarts: int
    processed: int
    alive: bool
    handling_seconds_total: float  # sum of receive() durations


class _Cell:
    """The system's private record of one actor."""

    __slots__ = ("current", "factory", "instance", "policy", "ref", "stopped", "task", "window")

    def __init__(
        self, ref: ActorRef[Any], factory: Callable[[], Actor[Any]], policy: RestartPolicy
    ) -> None:
        self.ref = ref
        self.factory = factory
        self.policy = policy
        self.instance: Actor[Any] | None = None  # None before start and after a crash
        self.task: asyncio.Task[None] | None = None
        self.current: Envelope | None = None  # the envelope receive() is handling
        self.window: deque[float] = deque()  # clock() of recent restarts
        self.stopped = False


def _fail(env: Envelope, err: AureaError, cause: BaseException | None = None) -> None:
    fut = env.reply
    if fut is not None and not fut.done():
        if cause is not None:
            err.__cause__ = cause  # as `raise err from cause` would
        fut.set_exception(err)


class ActorSystem:
    """Owns the actors: ``spawn`` them, ``start``, ``stop`` (or ``async with``)."""

    def __init__(
        self,
        *,
        policy: RestartPolicy = RestartPolicy(),  # frozen, so one shared default is safe
        clock: Callable[[], float] = time.monotonic,
        on_restart: Callable[[str, BaseException], None] | None = None,
        on_dead: Callable[[str], None] | None = None,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._on_restart = on_restart
        self._on_dead = on_dead
        self._cells: dict[str, _Cell] = {}
        self._order: list[_Cell] = []
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
        cell = _Cell(ref, factory, policy or self._policy)
        if self._phase == _STARTED:
            cell.task = asyncio.get_running_loop().create_task(self._run(cell), name=name)
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
                    if await self._incarnate(cell):
                        cell.task = asyncio.create_task(self._run(cell), name=cell.ref.name)
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

    async def _stop_one(
        self, cell: _Cell, deadline: float, loop: asyncio.AbstractEventLoop
    ) -> None:
        ref, task = cell.ref, cell.task
        if ref._gate != DEAD:
            ref._gate = CLOSED
        if task is not None:
            if not task.done():
                ref._mailbox.put_nowait(_STOP)
                await asyncio.wait((task,), timeout=max(0.0, deadline - loop.time()))
            if not task.done():
                task.cancel()  # out of grace: interrupt whatever receive() is awaiting
                await asyncio.wait((task,))
            if not task.cancelled() and (exc := task.exception()) is not None:
                _log.error("actor_task_failed", actor=ref.name, error=repr(exc), exc_info=exc)
        left = 0
        if cell.current is not None:
            left += 1
            _fail(cell.current, ShuttingDown(f"actor {ref.name} stopped while handling the call"))
            cell.current = None
        while not ref._mailbox.empty():
            env = ref._mailbox.get_nowait()
            if env is not _STOP:
                left += 1
                _fail(env, ShuttingDown(f"actor {ref.name} stopped before handling the call"))
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

    async def _run(self, cell: _Cell) -> None:
        """The mailbox loop of one actor; it returns at stop or when the actor is dead."""
        current_system.set(self)
        if cell.instance is None and not await self._incarnate(cell):
            return
        actor = cell.instance
        assert actor is not None
        ref = cell.ref
        mailbox = ref._mailbox
        clock = time.perf_counter
        burst = 0
        while True:
            if mailbox.empty():
                if ref._gate >= CLOSED:
                    return
                burst = 0
                env = await mailbox.get()
            else:
                burst += 1
                if burst == _YIELD_EVERY:
                    burst = 0
                    await asyncio.sleep(0)
                    continue
                env = mailbox.get_nowait()
            if env is _STOP:
                return
            fut = env.reply
            cell.current = env
            crash: BaseException | None = None
            started = clock()
            request_id_var.set(env.request_id)
            try:
                result = await actor.receive(env.msg)
                if type(result) is Later:
                    actor.spawn_child(_reply_later(result, fut, ref.name, env.msg))
                    result = _PENDING
            except AureaError as exc:  # protocol, not a crash: the asker gets it as is
                if fut is None:
                    _log.warning(
                        "actor_message_rejected",
                        actor=ref.name,
                        message=type(env.msg).__name__,
                        error=repr(exc),
                    )
                elif not fut.done():
                    fut.set_exception(exc)
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise
                crash = exc  # receive() leaked a CancelledError of its own: a bug, so a crash
            except Exception as exc:
                crash = exc
            else:
                if result is not _PENDING:
                    settle = deliver(fut, result)
                    if settle is not None:  # the asker left: settle the grant before anything
                        try:
                            await actor.receive(settle)
                        except Exception as exc:
                            crash = exc
            ref._processed += 1
            ref._handling_s += clock() - started
            cell.current = None
            if crash is not None:
                if not await self._crashed(cell, crash, env) or not await self._incarnate(cell):
                    return
                actor = cell.instance
                assert actor is not None

    async def _incarnate(self, cell: _Cell) -> bool:
        """Create and start a fresh instance, restarting on failure; False if the actor died."""
        while True:
            try:
                instance = cell.factory()
                instance.ref = cell.ref
                await instance.on_start()
            except Exception as exc:
                if not await self._crashed(cell, exc, None):
                    return False
            else:
                cell.instance = instance
                return True

    async def _crashed(self, cell: _Cell, exc: BaseException, env: Envelope | None) -> bool:
        """Count a crash against the budget; back off and return True, or mark the actor dead."""
        ref, policy = cell.ref, cell.policy
        if cell.instance is not None:
            await cell.instance.cancel_children()  # a crashed incarnation's tasks die with it
        cell.instance = None
        now = self._clock()
        window = cell.window
        while window and now - window[0] >= policy.within_s:
            window.popleft()
        if len(window) >= policy.max_restarts:
            self._kill(cell, exc, env)
            return False
        window.append(now)
        ref._restarts += 1
        if env is not None:
            what = type(env.msg).__name__
            msg = f"actor {ref.name} crashed handling {what}; it was restarted, retry"
            _fail(env, ActorCrashed(msg), exc)
        _log.error(
            "actor_restarted", actor=ref.name, error=repr(exc), restarts=ref._restarts, exc_info=exc
        )
        if self._on_restart is not None:
            try:
                self._on_restart(ref.name, exc)
            except Exception as cb_exc:
                _log.error("on_restart_failed", actor=ref.name, error=repr(cb_exc), exc_info=cb_exc)
        await asyncio.sleep(
            min(policy.backoff_base_s * 2 ** (len(window) - 1), policy.backoff_max_s)
        )
        return True

    def _kill(self, cell: _Cell, exc: BaseException, env: Envelope | None) -> None:
        ref = cell.ref
        ref._gate = DEAD
        down = f"actor {ref.name} is down after {ref._restarts} restarts"
        if env is not None:
            _fail(env, Unavailable(down), exc)
        while not ref._mailbox.empty():
            _fail(ref._mailbox.get_nowait(), Unavailable(down))
        _log.error(
            "actor_dead", actor=ref.name, error=repr(exc), restarts=ref._restarts, exc_info=exc
        )
        if self._on_dead is not None:
            try:
                self._on_dead(ref.name)
            except Exception as cb_exc:
                _log.error("on_dead_failed", actor=ref.name, error=repr(cb_exc), exc_info=cb_exc)
