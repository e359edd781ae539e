"""The actor base class and ``ActorRef``, the handle that owns an actor's bounded mailbox.

An ``ActorRef`` outlives the actor instances behind it, so a restart keeps the queued messages.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from contextvars import ContextVar
from typing import Any, Final, Generic, TypeVar

from aurea.errors import Overloaded, ShuttingDown, Unavailable

__all__ = ["Actor", "ActorRef", "Envelope"]

M = TypeVar("M")

# Gate states of a mailbox; anything but OPEN takes the slow path in tell()/ask().
OPEN: Final = 0
DRAINING: Final = 1  # the system is stopping: only its own actors (and their tasks) may still send
CLOSED: Final = 2
DEAD: Final = 3

# Set in every mailbox task (and so inherited by tasks an actor starts) to the owning system, so a
# stopping system can tell its own actors' sends from outside calls.
current_system: ContextVar[object | None] = ContextVar("aurea_current_system", default=None)


class Actor(ABC, Generic[M]):
    """Subclass; state lives on self; the runtime calls these one at a time."""

    async def on_start(self) -> None:
        """Run before the first message (and again on each fresh instance after a restart)."""

    async def on_stop(self) -> None:
        """Run on graceful stop, after the mailbox is drained; never after a crash."""

    @abstractmethod
    async def receive(self, msg: M) -> Any:
        """Handle one message; the return value is the reply to ``ask``."""


class Envelope:
    """One queued message and, for ``ask``, the future its reply goes to."""

    __slots__ = ("msg", "reply")

    def __init__(self, msg: Any, reply: asyncio.Future[Any] | None) -> None:
        self.msg = msg
        self.reply = reply


def _expire(fut: asyncio.Future[Any], name: str, timeout_s: float) -> None:
    if not fut.done():
        fut.set_exception(Unavailable(f"actor {name} did not reply within {timeout_s:g}s"))


class ActorRef(Generic[M]):
    """Send messages to an actor: ``tell`` never blocks, ``ask`` awaits exactly one reply.

    Built by ``ActorSystem.spawn``; the counters below are written by the system's mailbox loop.
    """

    __slots__ = (
        "_gate",
        "_handling_s",
        "_mailbox",
        "_owner",
        "_processed",
        "_restarts",
        "capacity",
        "name",
    )

    def __init__(self, name: str, capacity: int, owner: object) -> None:
        if capacity < 1:
            raise ValueError(f"actor {name}: capacity must be >= 1, got {capacity}")
        self.name = name
        self.capacity = capacity
        self._mailbox: asyncio.Queue[Envelope] = asyncio.Queue(maxsize=capacity)
        self._owner = owner
        self._gate: int = OPEN
        self._restarts = 0
        self._processed = 0
        self._handling_s = 0.0

    def __repr__(self) -> str:
        return f"<ActorRef {self.name} depth={self.depth}/{self.capacity} alive={self.alive}>"

    @property
    def depth(self) -> int:
        """Messages waiting in the mailbox (not counting the one being handled)."""
        return self._mailbox.qsize()

    @property
    def restarts(self) -> int:
        return self._restarts

    @property
    def alive(self) -> bool:
        """False once the actor is stopped or dead (out of restarts)."""
        return self._gate <= DRAINING

    def tell(self, msg: M) -> None:
        """Queue ``msg`` without waiting; raise ``Overloaded`` if the mailbox is full."""
        if self._gate:
            self._check_gate()
        try:
            self._mailbox.put_nowait(Envelope(msg, None))
        except asyncio.QueueFull:
            raise self._overloaded() from None

    async def ask(self, msg: M, *, timeout_s: float | None = None) -> Any:
        """Queue ``msg`` and await the reply; ``Overloaded`` at once if the mailbox is full.

        A timeout raises ``Unavailable``; the actor still handles the message and never learns
        that the asker left. An ``AureaError`` from ``receive`` is re-raised here as is; any other
        exception arrives as ``ActorCrashed`` (the actor was restarted).
        """
        if self._gate:
            self._check_gate()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        try:
            self._mailbox.put_nowait(Envelope(msg, fut))
        except asyncio.QueueFull:
            raise self._overloaded() from None
        if timeout_s is None:
            return await fut
        # A timer that fails the future is cheaper than wait_for/timeout (no task cancellation).
        timer = loop.call_later(timeout_s, _expire, fut, self.name, timeout_s)
        try:
            return await fut
        finally:
            timer.cancel()

    def _check_gate(self) -> None:
        gate = self._gate
        if gate == DRAINING and current_system.get() is self._owner:
            return
        if gate == DEAD:
            raise Unavailable(f"actor {self.name} is down after {self._restarts} restarts")
        raise ShuttingDown(f"actor {self.name} is shutting down")

    def _overloaded(self) -> Overloaded:
        # Suggest retrying after roughly the time the queued messages take, within [10 ms, 1 s].
        per_msg_s = self._handling_s / self._processed if self._processed else 0.001
        retry_after_s = min(max(per_msg_s * self.capacity, 0.01), 1.0)
        return Overloaded(
            f"actor {self.name} mailbox full ({self.capacity})", retry_after_s=retry_after_s
        )
