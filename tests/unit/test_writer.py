"""The coalescing writer: deltas that pile up during a slow transport write go out as one, in
order, and a slow reader still holds the producer back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aurea.inference import Delta, FallbackEvent, UsageUpdate
from aurea.inference.writer import CoalescingWriter
from aurea.providers._base import Usage

pytestmark = pytest.mark.timeout(5)


class Transport:
    """A transport whose writes complete only when the test opens the gate."""

    def __init__(self) -> None:
        self.written: list[Any] = []
        self.gate = asyncio.Event()
        self.fail: BaseException | None = None

    async def write(self, ev: Any) -> None:
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        self.written.append(ev)


def fb() -> FallbackEvent:
    return FallbackEvent(
        from_model="a", to_model="b", to_provider="p", cause="X", message="", attempt=2
    )


async def test_deltas_queued_during_a_write_are_merged_in_order() -> None:
    t = Transport()
    async with CoalescingWriter(t.write) as w:
        await w.emit(Delta("a"))
        await asyncio.sleep(0)  # the writer takes "a" and waits on the transport
        for text in ("b", "c", "d"):
            await w.emit(Delta(text))
        await w.emit(fb())
        await w.emit(Delta("e"))
        await w.emit(Delta("f"))
        t.gate.set()
    assert t.written == [Delta("a"), Delta("bcd"), fb(), Delta("ef")]


async def test_a_slow_reader_holds_the_producer_back() -> None:
    t = Transport()
    async with CoalescingWriter(t.write, max_pending_chars=10) as w:
        await w.emit(Delta("x"))
        await asyncio.sleep(0)
        await w.emit(Delta("y" * 5))
        blocked = asyncio.ensure_future(w.emit(Delta("z" * 10)))  # past the limit: waits
        for _ in range(5):
            await asyncio.sleep(0)
        assert not blocked.done()
        t.gate.set()
        await blocked
    assert "".join(ev.text for ev in t.written) == "x" + "y" * 5 + "z" * 10


async def test_a_failed_write_reaches_the_producer() -> None:
    t = Transport()
    t.fail = ConnectionResetError("gone")
    t.gate.set()
    with pytest.raises(ConnectionResetError):
        async with CoalescingWriter(t.write) as w:
            await w.emit(Delta("a"))
            for _ in range(5):
                await asyncio.sleep(0)
            await w.emit(Delta("b"))


async def test_an_error_exit_still_sends_what_was_emitted() -> None:
    t = Transport()
    t.gate.set()
    u = UsageUpdate(usage=Usage(output_tokens=1), cost_nanos=3)
    with pytest.raises(RuntimeError):
        async with CoalescingWriter(t.write) as w:
            await w.emit(Delta("a"))
            await w.emit(u)
            raise RuntimeError("the upstream broke")
    assert t.written == [Delta("a"), u]


async def test_a_cancelled_producer_stops_the_writer() -> None:
    t = Transport()
    started = asyncio.Event()

    async def produce() -> None:
        async with CoalescingWriter(t.write) as w:
            await w.emit(Delta("a"))
            started.set()
            await asyncio.Event().wait()

    task = asyncio.ensure_future(produce())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert t.written == []
    assert len(asyncio.all_tasks()) == 1  # only this test's task: the writer is gone
