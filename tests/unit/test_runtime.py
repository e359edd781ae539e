"""Unit tests for the actor runtime: mailbox semantics, supervision, and lifecycle order."""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Any

import pytest
from structlog.testing import capture_logs

from aurea.errors import ActorCrashed, InvalidRequest, Overloaded, ShuttingDown, Unavailable
from aurea.runtime import Actor, ActorRef, ActorSystem, RestartPolicy

pytestmark = pytest.mark.timeout(5)  # a broken runtime tends to hang; fail fast instead

FAST = RestartPolicy(max_restarts=3, within_s=60.0, backoff_base_s=0.001, backoff_max_s=0.001)


@dataclass(frozen=True, slots=True)
class Add:
    n: int


@dataclass(frozen=True, slots=True)
class Get:
    pass


@dataclass(frozen=True, slots=True)
class Whoami:
    pass


@dataclass(frozen=True, slots=True)
class Wait:
    """Blocks the actor until the test opens the gate, then adds 100."""


@dataclass(frozen=True, slots=True)
class Reject:
    pass


@dataclass(frozen=True, slots=True)
class Boom:
    pass


Msg = Add | Get | Whoami | Wait | Reject | Boom


class Gate:
    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.open = asyncio.Event()


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class Counter(Actor[Msg]):
    def __init__(self, gate: Gate | None = None, events: list[str] | None = None) -> None:
        self.total = 0
        self.gate = gate
        self.events = events

    async def on_start(self) -> None:
        if self.events is not None:
            self.events.append("start")

    async def on_stop(self) -> None:
        if self.events is not None:
            self.events.append(f"stop total={self.total}")

    async def receive(self, msg: Msg) -> Any:
        match msg:
            case Add(n=n):
                self.total += n
                return self.total
            case Get():
                return self.total
            case Whoami():
                return self
            case Wait():
                assert self.gate is not None
                self.gate.entered.set()
                await self.gate.open.wait()
                self.total += 100
                return self.total
            case Reject():
                raise InvalidRequest.field("n", "must be positive")
            case Boom():
                raise RuntimeError("boom")


async def block(ref: ActorRef[Msg], gate: Gate) -> None:
    """Make the actor busy on a Wait message, so what is sent next stays queued."""
    ref.tell(Wait())
    await gate.entered.wait()


async def test_tell_and_ask_basics() -> None:
    async with ActorSystem() as system:
        ref = system.spawn("counter", Counter)
        assert system.get("counter") is ref
        ref.tell(Add(2))
        ref.tell(Add(3))
        assert await ref.ask(Get()) == 5
        assert await ref.ask(Add(1), timeout_s=1.0) == 6


async def test_ask_timeout_gives_unavailable_while_the_actor_goes_on() -> None:
    gate = Gate()
    async with ActorSystem() as system:
        ref = system.spawn("c", lambda: Counter(gate))
        with pytest.raises(Unavailable, match=r"^actor c did not reply within 0\.02s$") as info:
            await ref.ask(Wait(), timeout_s=0.02)
        assert type(info.value) is Unavailable
        gate.open.set()
        assert await ref.ask(Get()) == 100  # the abandoned Wait was still handled
        assert ref.alive and ref.restarts == 0


async def test_full_mailbox_is_overloaded_at_once_for_tell_and_ask() -> None:
    gate = Gate()
    async with ActorSystem() as system:
        ref = system.spawn("c", lambda: Counter(gate), capacity=2)
        waiting = asyncio.create_task(ref.ask(Wait()))
        await gate.entered.wait()
        ref.tell(Add(1))
        ref.tell(Add(1))
        assert ref.depth == 2
        with pytest.raises(Overloaded, match=r"^actor c mailbox full \(2\)$") as info:
            ref.tell(Add(1))
        assert info.value.retry_after_s is not None and info.value.retry_after_s > 0
        async with asyncio.timeout(0.1):  # ask must fail at once, not wait for space
            with pytest.raises(Overloaded):
                await ref.ask(Get())
        gate.open.set()
        assert await waiting == 100
        assert await ref.ask(Get()) == 102


async def test_aurea_error_goes_to_the_asker_and_the_actor_keeps_its_state() -> None:
    async with ActorSystem() as system:
        ref = system.spawn("c", Counter)
        ref.tell(Add(7))
        before = await ref.ask(Whoami())
        with pytest.raises(InvalidRequest, match="must be positive") as info:
            await ref.ask(Reject())
        assert type(info.value) is InvalidRequest
        assert await ref.ask(Whoami()) is before
        assert await ref.ask(Get()) == 7
        assert ref.restarts == 0


async def test_crash_restarts_a_fresh_instance_and_keeps_the_queue() -> None:
    gate = Gate()
    instances: list[Counter] = []
    restarted: list[tuple[str, BaseException]] = []

    def factory() -> Counter:
        instances.append(Counter(gate))
        return instances[-1]

    system = ActorSystem(policy=FAST, on_restart=lambda name, exc: restarted.append((name, exc)))
    ref = system.spawn("c", factory)
    async with system:
        ref.tell(Add(5))
        await block(ref, gate)
        boom = asyncio.create_task(ref.ask(Boom()))
        await asyncio.sleep(0)  # let the ask enqueue before the tell
        ref.tell(Add(1))
        after = asyncio.create_task(ref.ask(Get()))
        with capture_logs() as logs:
            gate.open.set()
            with pytest.raises(
                ActorCrashed, match=r"^actor c crashed handling Boom; it was"
            ) as info:
                await boom
            assert await after == 1  # fresh state, and the Add queued behind Boom survived
        cause = info.value.__cause__
        assert isinstance(cause, RuntimeError)
        assert ref.restarts == 1 and len(instances) == 2
        assert restarted == [("c", cause)]
        [log] = [e for e in logs if e["event"] == "actor_restarted"]
        assert log["actor"] == "c" and log["restarts"] == 1 and "boom" in log["error"]


async def test_restart_budget_exceeded_marks_the_actor_dead() -> None:
    clock = FakeClock()
    policy = RestartPolicy(max_restarts=2, within_s=10.0, backoff_base_s=0.001)
    gate = Gate()
    system = ActorSystem(policy=policy, clock=clock)
    ref = system.spawn("c", lambda: Counter(gate))
    async with system:
        for _ in range(2):
            with pytest.raises(ActorCrashed):
                await ref.ask(Boom())
            clock.t += 1.0
        await block(ref, gate)
        boom = asyncio.create_task(ref.ask(Boom()))
        pending = asyncio.create_task(ref.ask(Get()))
        with capture_logs() as logs:
            gate.open.set()
            for task in (boom, pending):
                with pytest.raises(
                    Unavailable, match=r"^actor c is down after 2 restarts$"
                ) as info:
                    await task
                assert not isinstance(info.value, ActorCrashed)
        assert [e["restarts"] for e in logs if e["event"] == "actor_dead"] == [2]
        assert not ref.alive
        with pytest.raises(Unavailable, match="is down"):
            ref.tell(Get())
        with pytest.raises(Unavailable, match="is down"):
            await ref.ask(Get())


async def test_restart_budget_window_follows_the_injected_clock() -> None:
    clock = FakeClock()
    policy = RestartPolicy(max_restarts=1, within_s=10.0, backoff_base_s=0.001)
    async with ActorSystem(policy=policy, clock=clock) as system:
        ref = system.spawn("c", Counter)
        with pytest.raises(ActorCrashed):
            await ref.ask(Boom())
        clock.t += 11.0  # the first restart has left the window
        with pytest.raises(ActorCrashed):
            await ref.ask(Boom())
        assert ref.alive and ref.restarts == 2
        with pytest.raises(Unavailable, match="down after 2 restarts"):
            await ref.ask(Boom())  # two crashes within 10 s of each other
        assert not ref.alive


async def test_start_in_spawn_order_and_stop_in_reverse() -> None:
    events: list[str] = []

    class Recorder(Actor[Get]):
        def __init__(self, name: str) -> None:
            self.name = name

        async def on_start(self) -> None:
            events.append(f"start {self.name}")

        async def on_stop(self) -> None:
            events.append(f"stop {self.name}")

        async def receive(self, msg: Get) -> Any:
            return self.name

    system = ActorSystem()
    for name in ("a", "b", "c"):
        system.spawn(name, functools.partial(Recorder, name))
    await system.start()
    await system.start()
    assert events == ["start a", "start b", "start c"]
    assert await system.get("b").ask(Get()) == "b"
    async with asyncio.timeout(0.5):  # idle actors stop at once, not after the 5 s grace
        await system.stop()
    await system.stop()
    assert events == ["start a", "start b", "start c", "stop c", "stop b", "stop a"]


async def test_stop_drains_queued_messages() -> None:
    gate = Gate()
    events: list[str] = []
    system = ActorSystem()
    ref = system.spawn("c", lambda: Counter(gate, events), capacity=4)
    await system.start()
    await block(ref, gate)
    for _ in range(3):
        ref.tell(Add(1))
    total = asyncio.create_task(ref.ask(Get()))
    await asyncio.sleep(0)
    assert ref.depth == 4  # full: stop cannot even queue a wake-up marker
    stopping = asyncio.create_task(system.stop(grace_s=5.0))
    await asyncio.sleep(0.01)
    with pytest.raises(ShuttingDown):
        ref.tell(Add(1))  # no new work while draining
    gate.open.set()
    async with asyncio.timeout(0.5):  # done as soon as the mailbox is empty, not at the grace
        await stopping
    assert await total == 103
    assert events == ["start", "stop total=103"]
    assert system.stats()[0].processed == 5


async def test_stop_after_grace_fails_leftovers_with_shutting_down() -> None:
    gate = Gate()
    events: list[str] = []
    system = ActorSystem()
    ref = system.spawn("c", lambda: Counter(gate, events))
    await system.start()
    in_flight = asyncio.create_task(ref.ask(Wait()))
    await gate.entered.wait()
    queued = asyncio.create_task(ref.ask(Get()))
    await asyncio.sleep(0)
    await system.stop(grace_s=0.05)  # the gate never opens
    for task in (in_flight, queued):
        with pytest.raises(ShuttingDown, match="actor c stopped"):
            await task
    assert events == ["start", "stop total=0"]


async def test_tell_ask_spawn_and_start_after_stop_raise_shutting_down() -> None:
    system = ActorSystem()
    ref = system.spawn("c", Counter)
    async with system:
        assert await ref.ask(Add(1)) == 1
    assert not ref.alive
    with pytest.raises(ShuttingDown):
        ref.tell(Add(1))
    with pytest.raises(ShuttingDown):
        await ref.ask(Get())
    with pytest.raises(ShuttingDown):
        system.spawn("d", Counter)
    with pytest.raises(ShuttingDown):
        await system.start()


async def test_stats_report_depth_restarts_and_processed() -> None:
    gate = Gate()
    async with ActorSystem(policy=FAST) as system:
        ref = system.spawn("c", lambda: Counter(gate), capacity=8)
        ref.tell(Add(1))
        with pytest.raises(ActorCrashed):
            await ref.ask(Boom())
        await block(ref, gate)
        ref.tell(Add(1))
        ref.tell(Add(1))
        [s] = system.stats()
        assert (s.name, s.depth, s.capacity, s.restarts, s.processed, s.alive) == (
            "c",
            2,
            8,
            1,
            2,
            True,
        )
        gate.open.set()
        assert await ref.ask(Get()) == 102
        [s] = system.stats()
        assert (s.depth, s.processed) == (0, 6)
        assert s.handling_seconds_total > 0


async def test_a_crash_in_one_actor_does_not_disturb_another() -> None:
    policy = RestartPolicy(max_restarts=1, backoff_base_s=0.001)
    async with ActorSystem(policy=policy) as system:
        steady = system.spawn("steady", Counter)
        flaky = system.spawn("flaky", Counter)
        steady.tell(Add(3))
        me = await steady.ask(Whoami())
        for _ in range(2):
            with pytest.raises(Unavailable):
                await flaky.ask(Boom())
        assert not flaky.alive
        assert steady.alive and steady.restarts == 0
        assert await steady.ask(Whoami()) is me
        assert await steady.ask(Get()) == 3


async def test_a_cancelled_asker_does_not_break_the_actor() -> None:
    gate = Gate()
    async with ActorSystem() as system:
        ref = system.spawn("c", lambda: Counter(gate))
        await block(ref, gate)
        asker = asyncio.create_task(ref.ask(Add(1)))
        await asyncio.sleep(0)
        asker.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asker
        gate.open.set()
        assert await ref.ask(Get()) == 101  # the Add was still handled, its reply dropped
        assert ref.restarts == 0


async def test_a_crash_in_on_start_is_restarted() -> None:
    attempts: list[int] = []

    class Flaky(Counter):
        async def on_start(self) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise RuntimeError("not ready")

    system = ActorSystem(policy=FAST)
    ref = system.spawn("c", Flaky)
    async with system:
        assert await ref.ask(Add(1)) == 1
        assert ref.restarts == 1 and len(attempts) == 2


async def test_spawn_after_start_starts_the_actor_at_once() -> None:
    events: list[str] = []
    async with ActorSystem() as system:
        ref = system.spawn("late", lambda: Counter(events=events))
        assert await ref.ask(Add(2)) == 2
    assert events == ["start", "stop total=2"]


async def test_actors_still_reach_downstream_actors_while_stopping() -> None:
    gate = Gate()
    ledger: list[Counter] = []

    class Forwarder(Actor[Msg]):
        def __init__(self, downstream: ActorRef[Msg]) -> None:
            self.downstream = downstream

        async def receive(self, msg: Msg) -> Any:
            if isinstance(msg, Wait):
                gate.entered.set()
                await gate.open.wait()
            else:
                self.downstream.tell(msg)

    def new_ledger() -> Counter:
        ledger.append(Counter())
        return ledger[-1]

    system = ActorSystem()
    downstream = system.spawn("ledger", new_ledger)
    upstream = system.spawn("router", lambda: Forwarder(downstream))
    await system.start()
    upstream.tell(Wait())
    await gate.entered.wait()
    upstream.tell(Add(4))
    stopping = asyncio.create_task(system.stop(grace_s=1.0))
    await asyncio.sleep(0.01)
    with pytest.raises(ShuttingDown):
        downstream.tell(Add(1))  # outside callers are refused at once
    gate.open.set()
    await stopping
    assert ledger[0].total == 4  # the router's drained message still reached the ledger


async def test_request_id_travels_with_messages_into_the_actor() -> None:
    """An actor handling a call's message sees that call's request id (for its log lines)."""
    from aurea.runtime.context import request_id_var
    from aurea.telemetry.logging import add_request_id

    seen: list[str] = []

    class Echo(Actor[Any]):
        async def receive(self, msg: Any) -> Any:
            seen.append(request_id_var.get())
            return add_request_id(None, "info", {"event": "x"})

    system = ActorSystem()
    ref = system.spawn("echo", Echo)
    async with system:
        request_id_var.set("call-1")
        first = await ref.ask(Get())
        request_id_var.set("call-2")
        ref.tell(Add(1))
        await ref.ask(Get())
    assert seen == ["call-1", "call-2", "call-2"]
    assert first["request_id"] == "call-1"


async def test_later_replies_after_io_without_blocking_the_mailbox() -> None:
    from aurea.runtime import Later

    gate = asyncio.Event()

    class Store(Actor[Any]):
        async def receive(self, msg: Any) -> Any:
            if isinstance(msg, Wait):

                async def io() -> int:
                    await gate.wait()
                    return 7

                return Later(io())
            return "quick"

    system = ActorSystem()
    ref = system.spawn("store", Store)
    async with system:
        slow = asyncio.ensure_future(ref.ask(Wait()))
        assert await ref.ask(Get()) == "quick"  # the mailbox was not blocked by the I/O
        assert not slow.done()
        gate.set()
        assert await slow == 7


async def test_child_tasks_are_cancelled_when_the_actor_crashes() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    class Parent(Actor[Any]):
        async def receive(self, msg: Any) -> Any:
            if isinstance(msg, Wait):

                async def child() -> None:
                    started.set()
                    try:
                        await asyncio.Event().wait()
                    except asyncio.CancelledError:
                        cancelled.set()
                        raise

                self.spawn_child(child())
                return None
            raise RuntimeError("boom")

    system = ActorSystem(policy=FAST)
    ref = system.spawn("parent", Parent)
    async with system:
        await ref.ask(Wait())
        await started.wait()
        with pytest.raises(ActorCrashed):
            await ref.ask(Boom())
        await asyncio.wait_for(cancelled.wait(), 1.0)
