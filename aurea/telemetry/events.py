"""In-process event fan-out: publishers never wait and never fail, and every subscriber has its
own bounded buffer, so one slow reader can neither block the server nor grow without bound.

``Hub`` is generic (task changes use it for ``WatchTasks``); ``EventBus`` is the server's stream
of system events (``AdminService.WatchEvents``): task changes, actor restarts, budget stops and
whatever other capabilities publish, each numbered in one sequence.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType
from typing import Generic, TypeVar

from aurea.errors import ShuttingDown, SubscriberLagged

__all__ = [
    "Dropped",
    "EventBus",
    "Hub",
    "Overflow",
    "Subscription",
    "SystemEvent",
    "type_matcher",
]

T = TypeVar("T")


class Overflow(enum.StrEnum):
    """What a full subscriber buffer does with one more item."""

    DROP_OLDEST = "drop_oldest"  # skip the oldest unsent item; the reader gets one ``Dropped``
    CLOSE = "close"  # end the subscription: the reader gets ``SubscriberLagged``


@dataclass(frozen=True, slots=True)
class Dropped:
    """Stands where ``count`` items were skipped because the reader fell behind."""

    count: int


class Subscription(Generic[T]):
    """One reader's bounded view of a hub; ``with`` (or ``close``) unsubscribes."""

    __slots__ = ("_buffer", "_capacity", "_end", "_hub", "_lost", "_overflow", "_ready", "match")

    def __init__(
        self,
        hub: Hub[T],
        match: Callable[[T], bool],
        capacity: int,
        overflow: Overflow,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self._hub = hub
        self.match = match
        self._capacity = capacity
        self._overflow = overflow
        self._buffer: deque[T] = deque()
        self._lost = 0  # items skipped (DROP_OLDEST) and not yet reported
        self._end: BaseException | None = None
        self._ready = asyncio.Event()

    def offer(self, item: T) -> None:
        """Buffer ``item`` (the hub calls this); never blocks."""
        if self._end is not None:
            return
        if len(self._buffer) >= self._capacity:
            if self._overflow is Overflow.CLOSE:
                self.end(
                    SubscriberLagged(
                        f"the reader fell more than {self._capacity} messages behind; "
                        "reconnect to resynchronize"
                    )
                )
                return
            self._buffer.popleft()
            self._lost += 1
        self._buffer.append(item)
        self._ready.set()

    def end(self, error: BaseException) -> None:
        """End the subscription: ``get`` raises ``error`` (once the buffer is read, unless the
        reader lagged, which ends it at once)."""
        if self._end is None:
            self._end = error
            if isinstance(error, SubscriberLagged):
                self._buffer.clear()
            self._ready.set()
            self._hub._discard(self)

    def get_nowait(self) -> T | Dropped | None:
        """The next item if one is buffered, else None (raises if the subscription ended)."""
        if self._lost:
            lost, self._lost = self._lost, 0
            return Dropped(lost)
        if self._buffer:
            return self._buffer.popleft()
        if self._end is not None:
            raise self._end
        return None

    async def get(self) -> T | Dropped:
        """The next item, waiting for one; raises the error that ended the subscription."""
        while True:
            item = self.get_nowait()
            if item is not None:
                return item
            self._ready.clear()
            await self._ready.wait()

    def close(self) -> None:
        self._hub._discard(self)

    def __aiter__(self) -> Subscription[T]:
        return self

    async def __anext__(self) -> T | Dropped:
        return await self.get()

    def __enter__(self) -> Subscription[T]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class Hub(Generic[T]):
    """Fans items out to matching subscribers, in publication order."""

    def __init__(self) -> None:
        self._subs: dict[int, Subscription[T]] = {}
        self._closed: BaseException | None = None

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(
        self,
        match: Callable[[T], bool] = lambda _: True,
        *,
        capacity: int = 1000,
        overflow: Overflow = Overflow.CLOSE,
    ) -> Subscription[T]:
        sub = Subscription(self, match, capacity, overflow)
        if self._closed is not None:
            sub.end(self._closed)
        else:
            self._subs[id(sub)] = sub
        return sub

    def publish(self, item: T) -> None:
        for sub in tuple(self._subs.values()):
            try:
                wanted = sub.match(item)
            except Exception:  # a broken filter must not fail the publisher
                wanted = False
            if wanted:
                sub.offer(item)

    def close(self, error: BaseException | None = None) -> None:
        """End every subscription (and refuse new ones) with ``error`` (default ShuttingDown)."""
        if self._closed is None:
            self._closed = error or ShuttingDown("the server is draining for shutdown")
        for sub in tuple(self._subs.values()):
            sub.end(self._closed)

    def _discard(self, sub: Subscription[T]) -> None:
        self._subs.pop(id(sub), None)


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemEvent:
    """One thing that happened: a dotted lower_snake_case ``type`` (``task.succeeded``,
    ``actor.restarted``, ``budget.exceeded``), string attributes (never a secret or prompt),
    wall time, and its place in the server's event sequence (from 1)."""

    type: str
    attributes: Mapping[str, str]
    time_s: float
    sequence: int


def type_matcher(types: Iterable[str]) -> Callable[[SystemEvent], bool]:
    """A filter: an entry ending in ``.`` matches every type that starts with it, any other
    entry only itself; no entries match everything."""
    exact = frozenset(t for t in types if not t.endswith("."))
    prefixes = tuple(t for t in types if t.endswith("."))
    if not exact and not prefixes:
        return lambda _: True
    return lambda ev: ev.type in exact or ev.type.startswith(prefixes)


class EventBus:
    """The server's system events. ``publish`` is synchronous and never raises; readers that
    fall more than ``capacity`` events behind lose the oldest (and are told how many)."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._hub: Hub[SystemEvent] = Hub()
        self._sequence = 0

    @property
    def sequence(self) -> int:
        """The sequence number of the latest event (0 before the first)."""
        return self._sequence

    @property
    def watchers(self) -> int:
        return self._hub.subscribers

    def publish(self, type: str, /, **attributes: object) -> None:
        self._sequence += 1
        self._hub.publish(
            SystemEvent(
                type=type,
                attributes=MappingProxyType({k: str(v) for k, v in attributes.items()}),
                time_s=self._clock(),
                sequence=self._sequence,
            )
        )

    def watch(
        self, types: Iterable[str] = (), *, capacity: int = 1000
    ) -> Subscription[SystemEvent]:
        return self._hub.subscribe(
            type_matcher(types), capacity=capacity, overflow=Overflow.DROP_OLDEST
        )

    def close(self) -> None:
        self._hub.close()
