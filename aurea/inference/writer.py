"""A stream's writer: events go to the transport from one writer task, and text deltas that pile
up while the transport is busy with the previous write go out merged, as one delta.

A transport write (a gRPC message, an HTTP chunk) costs far more than reading one upstream chunk,
so relaying every upstream delta as its own message makes a stream several times dearer. The
proto allows merging; order is kept, and a slow reader still back-pressures the provider (emit
waits once ``max_pending_chars`` of text is queued). Pieces of one tool call's arguments merge
the same way (a piece that opens a call, with its id and name, starts a new event), and so do
reasoning pieces of one kind.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from types import TracebackType

from aurea.inference.calls import Delta, GenEvent
from aurea.providers._base import ReasoningDelta, ToolCallDelta

Write = Callable[[GenEvent], Awaitable[None]]


class CoalescingWriter:
    """``async with CoalescingWriter(write) as w: await w.emit(ev) ...``: on a clean exit every
    event is written before the block ends; on an error the writer task is cancelled."""

    __slots__ = (
        "_error",
        "_idle",
        "_max",
        "_pending",
        "_pending_chars",
        "_task",
        "_wake",
        "_write",
    )

    def __init__(self, write: Write, *, max_pending_chars: int = 64 * 1024) -> None:
        self._write = write
        self._max = max_pending_chars
        self._pending: deque[GenEvent | _Texts] = deque()
        self._pending_chars = 0
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CoalescingWriter:
        self._task = asyncio.ensure_future(self._run())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        task = self._task
        assert task is not None
        try:
            # A call that ends with an error still sends what it emitted before it (the last
            # usage of a cut stream); a cancelled one has nobody left to send to.
            if self._error is None and not isinstance(exc, asyncio.CancelledError):
                await self.flush()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if exc is None and self._error is not None:
            raise self._error

    async def emit(self, ev: GenEvent) -> None:
        if self._error is not None:
            raise self._error
        pending = self._pending
        if type(ev) is Delta:
            last = pending[-1] if pending else None
            if type(last) is _Texts:
                last.append(ev.text)  # joined once, when written: no copy per delta
            else:
                pending.append(_Texts((ev.text,)))
            self._pending_chars += len(ev.text)
        elif type(ev) is ToolCallDelta or type(ev) is ReasoningDelta:
            self._pending_chars += _merge(pending, ev)
        else:
            pending.append(ev)
        self._idle.clear()
        self._wake.set()
        if self._pending_chars > self._max:
            await self.flush()  # a slow reader: hold the producer until the transport catches up

    async def flush(self) -> None:
        """Wait until every emitted event is written (or the writer failed)."""
        while self._pending or not self._idle.is_set():
            if self._error is not None:
                raise self._error
            await self._idle.wait()
        if self._error is not None:
            raise self._error

    async def _run(self) -> None:
        pending, write = self._pending, self._write
        try:
            while True:
                if not pending:
                    self._idle.set()
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                item = pending.popleft()
                ev: GenEvent
                if isinstance(item, _Texts):
                    ev = Delta(item[0] if len(item) == 1 else "".join(item))
                    self._pending_chars -= len(ev.text)
                else:
                    ev = item
                    if type(ev) is ReasoningDelta:
                        self._pending_chars -= len(ev.text)
                    elif type(ev) is ToolCallDelta:
                        self._pending_chars -= len(ev.arguments)
                await write(ev)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # the transport failed: the producer learns it next emit
            self._error = exc
            self._idle.set()


class _Texts(list[str]):
    """Queued text deltas not written yet, in order: one ``Delta`` of their joined text when
    the writer takes them (joining once, where merging pairs would copy the text per delta)."""

    __slots__ = ()


def _merge(pending: deque[GenEvent | _Texts], ev: ToolCallDelta | ReasoningDelta) -> int:
    """Queue ``ev``, merged into the last queued event when it continues it; the characters
    it adds to the queue."""
    last = pending[-1] if pending else None
    if isinstance(ev, ToolCallDelta):
        if type(last) is ToolCallDelta and last.index == ev.index and not ev.id and not ev.name:
            pending[-1] = ToolCallDelta(
                index=last.index,
                id=last.id,
                name=last.name,
                arguments=last.arguments + ev.arguments,
            )
        else:
            pending.append(ev)
        return len(ev.arguments)
    if type(last) is ReasoningDelta and last.kind is ev.kind:
        pending[-1] = ReasoningDelta(last.text + ev.text, ev.kind)
    else:
        pending.append(ev)
    return len(ev.text)
