"""Supervision: the mailbox loop of one actor, and what happens when it crashes (a fresh
instance after a backoff, within a restart budget; past it the actor is dead and its queued asks
fail). Used by ``ActorSystem``, which owns the lifecycle."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import structlog

from aurea.errors import ActorCrashed, AureaError, Unavailable
from aurea.runtime.actor import (
    CLOSED,
    DEAD,
    Actor,
    ActorRef,
    Envelope,
    Later,
    current_system,
    deliver,
)
from aurea.runtime.context import request_id_var

_log = structlog.get_logger("aurea.runtime")
STOP: Final = Envelope(None, None)  # wakes an idle mailbox loop at stop
_YIELD_EVERY: Final = 64  # a loop with a full mailbox yields this often, so askers' wakeups run
_PENDING: Final = object()  # the reply will come from a Later's child task


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Restart budget and backoff for crashed actors."""

    max_restarts: int = 5  # within within_s; exceeding it marks the actor dead
    within_s: float = 60.0
    backoff_base_s: float = 0.01  # before restart n: min(base * 2**(n-1), backoff_max_s)
    backoff_max_s: float = 1.0


class Cell:
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


def fail(env: Envelope, err: AureaError, cause: BaseException | None = None) -> None:
    fut = env.reply
    if fut is not None and not fut.done():
        if cause is not None:
            err.__cause__ = cause  # as `raise err from cause` would
        fut.set_exception(err)


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


class Supervisor:
    """Runs mailbox loops and restarts crashed actors; holds no per-actor state (that is in
    each ``Cell``)."""

    def __init__(
        self,
        *,
        owner: object,
        clock: Callable[[], float] = time.monotonic,
        on_restart: Callable[[str, BaseException], None] | None = None,
        on_dead: Callable[[str], None] | None = None,
    ) -> None:
        self.owner = owner
        self.clock = clock
        self.on_restart = on_restart
        self.on_dead = on_dead

    async def run(self, cell: Cell) -> None:
        """The mailbox loop of one actor; it returns at stop or when the actor is dead."""
        current_system.set(self.owner)
        if cell.instance is None and not await self.incarnate(cell):
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
            if env is STOP:
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
                if not await self.crashed(cell, crash, env) or not await self.incarnate(cell):
                    return
                actor = cell.instance
                assert actor is not None

    async def incarnate(self, cell: Cell) -> bool:
        """Create and start a fresh instance, restarting on failure; False if the actor died."""
        while True:
            try:
                instance = cell.factory()
                instance.ref = cell.ref
                await instance.on_start()
            except Exception as exc:
                if not await self.crashed(cell, exc, None):
                    return False
            else:
                cell.instance = instance
                return True

    async def crashed(self, cell: Cell, exc: BaseException, env: Envelope | None) -> bool:
        """Count a crash against the budget; back off and return True, or mark the actor dead."""
        ref, policy = cell.ref, cell.policy
        if cell.instance is not None:
            await cell.instance.cancel_children()  # a crashed incarnation's tasks die with it
        cell.instance = None
        now = self.clock()
        window = cell.window
        while window and now - window[0] >= policy.within_s:
            window.popleft()
        if len(window) >= policy.max_restarts:
            self.kill(cell, exc, env)
            return False
        window.append(now)
        ref._restarts += 1
        if env is not None:
            what = type(env.msg).__name__
            msg = f"actor {ref.name} crashed handling {what}; it was restarted, retry"
            fail(env, ActorCrashed(msg), exc)
        _log.error(
            "actor_restarted", actor=ref.name, error=repr(exc), restarts=ref._restarts, exc_info=exc
        )
        if self.on_restart is not None:
            try:
                self.on_restart(ref.name, exc)
            except Exception as cb_exc:
                _log.error("on_restart_failed", actor=ref.name, error=repr(cb_exc), exc_info=cb_exc)
        await asyncio.sleep(
            min(policy.backoff_base_s * 2 ** (len(window) - 1), policy.backoff_max_s)
        )
        return True

    def kill(self, cell: Cell, exc: BaseException, env: Envelope | None) -> None:
        ref = cell.ref
        ref._gate = DEAD
        down = f"actor {ref.name} is down after {ref._restarts} restarts"
        if env is not None:
            fail(env, Unavailable(down), exc)
        while not ref._mailbox.empty():
            fail(ref._mailbox.get_nowait(), Unavailable(down))
        _log.error(
            "actor_dead", actor=ref.name, error=repr(exc), restarts=ref._restarts, exc_info=exc
        )
        if self.on_dead is not None:
            try:
                self.on_dead(ref.name)
            except Exception as cb_exc:
                _log.error("on_dead_failed", actor=ref.name, error=repr(cb_exc), exc_info=cb_exc)
