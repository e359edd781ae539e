"""The actor base class and ``ActorRef``, the handle that owns an actor's bounded mailbox.

An ``ActorRef`` outlives the actor instances behind it, so a restart keeps the queued messages.
Asks are typed: a message that wants a reply subclasses ``Ask[R]`` and ``ask`` returns an ``R``.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Coroutine
from contextvars import ContextVar
from typing import Any, Final, Generic, Protocol, TypeVar, runtime_checkable

from aurea.errors import Overloaded, ShuttingDown, Unavailable
from aurea.runtime.context import request_id_var

__all__ = ["Abandonable", "Actor", "ActorRef", "Ask", "Envelope", "Later"]

M = TypeVar("M")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Ask(Generic[R_co]):
    """Base of a message that wants a reply of type ``R_co`` (Akka Typed style): mypy then
    checks ``await ref.ask(GetJob(...))`` against the reply type."""

    __slots__ = ()


@runtime_checkable
class Abandonable(Protocol):
    """A reply that holds a grant (a permit): if its asker has gone, the runtime calls
    ``abandon()`` so that nothing stays reserved for nobody. It returns the message that
    settles the grant, which the actor handles before its next message (or None)."""

    def abandon(self) -> object | None: ...


class Later:
    """Returned by ``receive`` to reply after I/O without blocking the mailbox: the runtime
    runs ``work`` as a child task of the actor and replies with its result (or error)."""

    __slots__ = ("work",)

    def __init__(self, work: Coroutine[Any, Any, Any]) -> None:
        self.work = work


def deliver(fut: asyncio.Future[Any] | None, result: Any) -> object | None:
    """Set a reply. A reply nobody awaits any more gives back what it holds: the message that
    settles it is returned, for the actor to handle at once."""
    if fut is not None and not fut.done():
        fut.set_result(result)
        return None
    # A duck-typed check: isinstance against a runtime Protocol costs microseconds per call.
    abandon = getattr(type(result), "abandon", None) if result is not None else None
    return abandon(result) if abandon is not None else None


# Gate states of a mailbox; anything but OPEN takes the slow path in tell()/ask().
OPEN: Final = 0
DRAINING: Final = 1  # the system is stopping: only its own actors (and their tasks) may still send
CLOSED: Final = 2
DEAD: Final = 3

# Set in every mailbox task (and so inherited by tasks an actor starts) to the owning system, so a
# stopping system can tell its own actors' sends from outside calls.
current_system: ContextVar[object | None] = ContextVar("aurea_current_system", default=None)


class Actor(ABC, Generic[M]):
    """Subclass; state lives on self; the runtime calls these one at a time.

    ``spawn_child`` starts a task the actor owns: the runtime cancels it when this incarnation
    crashes or stops, so no child outlives its actor.
    """

    _children: set[asyncio.Task[Any]] | None = None
    ref: ActorRef[M]  # this actor's own handle; set by the system before ``on_start``

    def spawn_child(self, work: Awaitable[R], *, name: str = "") -> asyncio.Task[R]:
        children = self._children
        if children is None:
            children = self._children = set()
        task: asyncio.Task[R] = asyncio.ensure_future(work)
        if name:
            task.set_name(name)
        children.add(task)
        task.add_done_callback(children.discard)
        return task

    async def cancel_children(self) -> None:
        """Cancel every child task and wait for them (the runtime calls this at crash/stop)."""
        children = self._children
        if not children:
            return
        pending = list(children)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def on_start(self) -> None:
        """Run before the first message (and again on each fresh instance after a restart)."""

    async def on_stop(self) -> None:
        """Run on graceful stop, after the mailbox is drained; never after a crash."""

    @abstractmethod
    async def receive(self, msg: M) -> Any:
        """Handle one message; the return value is the reply to ``ask``."""


class Envelope:
    """One queued message, for ``ask`` the future its reply goes to, and the request id of the
    call that sent it (restored while the actor handles it)."""

    __slots__ = ("msg", "reply", "request_id")

    def __init__(self, msg: Any, reply: asyncio.Future[Any] | None, request_id: str = "") -> None:
        self.msg = msg
        self.reply = reply
        self.request_id = request_id


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
        # Unbounded underneath: ``tell``/``ask`` enforce ``capacity``; ``post`` may exceed it
        # for messages whose number is bounded by grants already made (releases).
        self._mailbox: asyncio.Queue[Envelope] = asyncio.Queue()
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
        box = self._mailbox
        if box.qsize() >= self.capacity:
            raise self._overloaded()
        box.put_nowait(Envelope(msg, None, request_id_var.get()))

    def post(self, msg: M) -> None:
        """Queue ``msg`` even past capacity: only for messages that settle an earlier grant
        (their number is bounded by the grants outstanding), which must never be refused.
        Dropped silently once the actor is stopped or dead (its grants died with it)."""
        if self._gate >= CLOSED:
            return
        self._mailbox.put_nowait(Envelope(msg, None, request_id_var.get()))

    async def ask(self, msg: Ask[R], *, timeout_s: float | None = None) -> R:
        """Queue ``msg`` and await the reply; ``Overloaded`` at once if the mailbox is full.

        A timeout raises ``Unavailable``; the actor still handles the message and never learns
        that the asker left (a permit it grants meanwhile is abandoned, so released). An
        ``AureaError`` from ``receive`` is re-raised here as is; any other exception arrives as
        ``ActorCrashed`` (the actor was restarted).
        """
        if self._gate:
            self._check_gate()
        box = self._mailbox
        if box.qsize() >= self.capacity:
            raise self._overloaded()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[R] = loop.create_future()
        box.put_nowait(Envelope(msg, fut, request_id_var.get()))
        timer = (
            # A timer that fails the future is cheaper than wait_for/timeout (no cancellation).
            loop.call_later(timeout_s, _expire, fut, self.name, timeout_s)
            if timeout_s is not None
            else None
        )
        try:
            return await fut
        except asyncio.CancelledError:
            # Cancelled after the reply was set but before this task resumed: give it back.
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                settle = deliver(None, fut.result())
                if settle is not None:
                    self.post(settle)  # type: ignore[arg-type]
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def _check_gate(self) -> None:
        gate = self._gate
        if gate == DRAINING and current_system.get() is self._owner:
            return
        if gate == DEAD:
            raise Unavailable(f"actor {self.name} is down after {self._restarts} restarts")
        raise ShuttingDown(f"actor {self.name} is shutting down")

    def _overloaded(self) -> Overloaded:
        # Suggest retrying after roughly the time the queued messages take, within [100 ms, 2 s]:
        # a shorter hint invites retry storms against an actor that is already behind.
        per_msg_s = self._handling_s / self._processed if self._processed else 0.001
        retry_after_s = min(max(per_msg_s * self.capacity, 0.1), 2.0)
        return Overloaded(
            f"actor {self.name} mailbox full ({self.capacity})", retry_after_s=retry_after_s
        )
