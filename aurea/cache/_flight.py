"""Single-flight: identical calls that miss at the same time share one upstream call.

The shared call runs in its own task (a *flight*), not in the task of the caller that started
it, so that caller leaving (its client cancelled) does not end the answer the others wait for.
Every caller, the one that started it included, is a subscriber reading the flight's events as
they arrive; when the last subscriber leaves an unfinished flight, its task is cancelled (the
upstream call with it). Finished flights leave the table once their answer is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

import structlog

from aurea.inference.calls import CallRecord, GenEvent, current_record

__all__ = ["Flight", "FlightTable"]

T = TypeVar("T")
log = structlog.get_logger("aurea.cache")


class Flight(Generic[T]):
    """One shared upstream call: the events it emitted so far, then its result or error."""

    __slots__ = (
        "_changed",
        "_subscribers",
        "abandoned",
        "done",
        "error",
        "events",
        "record",
        "result",
        "task",
    )

    def __init__(self) -> None:
        self.events: list[GenEvent] = []
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = False
        self.record: CallRecord | None = None  # the core's record of the shared call
        self.task: asyncio.Future[None] | None = None
        self.abandoned = False  # its last subscriber left; it is being cancelled
        self._changed = asyncio.Event()
        self._subscribers = 0

    async def push(self, ev: GenEvent) -> None:
        """The shared call's ``emit``: never waits (a slow reader holds only itself back)."""
        if self.record is None:  # runs in the flight's task, whose context holds the record
            self.record = current_record.get()
        self.events.append(ev)
        self._wake()

    async def changed(self) -> None:
        """Wait for the next event or the end (check ``events``/``done`` before calling)."""
        await self._changed.wait()

    def subscribe(self) -> None:
        self._subscribers += 1

    def unsubscribe(self) -> None:
        self._subscribers -= 1
        if self._subscribers <= 0 and not self.done and self.task is not None:
            # Nobody is left to receive the answer. Abandoned at once, not when the task gets
            # round to its cancellation: a caller arriving meanwhile must start a flight of its
            # own, not join one that is about to end (after some of its text).
            self.abandoned = True
            self.task.cancel()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _end(self) -> None:
        self.done = True
        if self.record is None:
            self.record = current_record.get()
        self._wake()


class FlightTable:
    """The flights in progress by key; owns their tasks (``aclose`` cancels them)."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, Flight[Any]] = {}
        self._tasks: set[asyncio.Future[None]] = set()

    def __len__(self) -> int:
        return len(self._flights)

    def get(self, key: Hashable) -> Flight[Any] | None:
        """The flight a caller may join under ``key`` (never one being cancelled)."""
        flight = self._flights.get(key)
        if flight is not None and flight.abandoned:
            del self._flights[key]  # the key is free for the next caller's flight
            return None
        return flight

    def start(
        self,
        key: Hashable | None,
        run: Callable[[Flight[T]], Awaitable[T]],
        after: Callable[[Flight[T]], Awaitable[None]] | None = None,
    ) -> Flight[T]:
        """Start a flight (under ``key``, so others can join it; None: a private one) running
        ``run(flight)`` in its own task (a copy of the caller's context), then ``after(flight)``
        once every subscriber has the result (storing it). The caller must ``subscribe``."""
        flight: Flight[T] = Flight()
        if key is not None:
            self._flights[key] = flight
        task = asyncio.ensure_future(self._run(key, flight, run, after))
        flight.task = task
        self._tasks.add(task)

        def finished(task: asyncio.Future[None]) -> None:
            self._tasks.discard(task)
            # A task cancelled before its first step never ran ``_run``: end the flight here,
            # so nobody waits on it and the key is free for the next caller.
            if not flight.done:
                flight.error = asyncio.CancelledError()
                flight._end()
            if key is not None and self._flights.get(key) is flight:
                del self._flights[key]

        task.add_done_callback(finished)
        return flight

    async def _run(
        self,
        key: Hashable | None,
        flight: Flight[T],
        run: Callable[[Flight[T]], Awaitable[T]],
        after: Callable[[Flight[T]], Awaitable[None]] | None,
    ) -> None:
        try:
            try:
                flight.result = await run(flight)
            except BaseException as exc:  # every subscriber reads it; nobody awaits this task
                flight.error = exc
            finally:
                flight._end()
            if after is not None and flight.error is None:
                try:
                    await after(flight)
                except Exception as exc:  # storing must never surface: the answer is out
                    log.error("cache_store_failed", error=repr(exc), exc_info=exc)
        finally:
            if key is not None and self._flights.get(key) is flight:
                del self._flights[key]

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
