"""Unit tests for the Scheduler actor, its pools and the attempt runner, driven through the
``Tasks`` facade over the in-memory store (no network): start order, aging, retries, timeouts,
cancellation, scaling, the CPU threshold, leases, and what a stop does to running attempts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from aurea.config import TasksSettings
from aurea.errors import BudgetExceeded, InvalidRequest, QueueFull, UnknownPool
from aurea.runtime import ActorSystem, RestartPolicy
from aurea.stores import NewTask, TaskState
from aurea.stores.memory.tasks import MemoryTaskQueueStore
from aurea.tasks import (
    ListQuery,
    PoolBook,
    Priority,
    Scheduler,
    SchedulerSettings,
    Status,
    SubmitSpec,
    TaskChanged,
    TaskContext,
    TaskHub,
    TaskRegistry,
    Tasks,
)
from aurea.tasks.scheduler import GetPools
from aurea.telemetry.events import EventBus

pytestmark = pytest.mark.timeout(30)

WAIT_S = 10.0  # a bound on every wait below, never a performance claim


async def until(cond: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.005)


@dataclass
class Rig:
    tasks: Tasks
    store: MemoryTaskQueueStore
    hub: TaskHub
    book: PoolBook
    system: ActorSystem
    cpu: list[float]
    wall: list[float]
    changes: list[TaskChanged] = field(default_factory=list)

    async def submit(self, kind: str, payload: Any = None, **kw: Any) -> str:
        done = await self.tasks.submit(SubmitSpec(kind=kind, payload=payload or {}, **kw))
        return done.info.task_id

    async def wait(self, task_id: str) -> Any:
        info = await self.tasks.get(task_id, wait_s=WAIT_S)
        assert info.status.terminal, f"task {task_id} still {info.status}"
        return info

    def statuses(self, task_id: str) -> list[Status]:
        return [c.info.status for c in self.changes if c.info.task_id == task_id]

    def starts(self) -> list[str]:
        return [c.info.task_id for c in self.changes if c.info.status is Status.RUNNING]


@asynccontextmanager
async def rig(
    registry: TaskRegistry,
    *,
    pools: dict[str, int] | None = None,
    aging_s: float = 300.0,
    fake_wall: bool = False,
    store: MemoryTaskQueueStore | None = None,
    **settings: Any,
) -> AsyncIterator[Rig]:
    store = store or MemoryTaskQueueStore(aging_s_per_priority=aging_s)
    hub = TaskHub(EventBus())
    book = PoolBook()
    cpu = [0.0]
    wall = [1_000_000.0]
    clock: Callable[[], float] = (lambda: wall[0]) if fake_wall else time.time
    s = SchedulerSettings(
        pools=pools or {"p": 2},
        cpu_threshold_percent=settings.pop("cpu_threshold_percent", 100.0),
        lease_s=settings.pop("lease_s", 5.0),
        poll_interval_s=settings.pop("poll_interval_s", 0.02),
        **settings,
    )
    system = ActorSystem(policy=RestartPolicy(backoff_base_s=0.001, backoff_max_s=0.001))
    ref = system.spawn(
        "scheduler",
        lambda: Scheduler(
            store=store,
            registry=registry,
            hub=hub,
            settings=s,
            book=book,
            cpu_percent=lambda: cpu[0],
            wall=clock,
        ),
    )
    await system.start()
    tasks = Tasks(
        scheduler=ref, store=store, registry=registry, hub=hub, settings=TasksSettings(), wall=clock
    )
    r = Rig(tasks, store, hub, book, system, cpu, wall)
    sub = hub.watch()

    async def collect() -> None:
        while True:
            ev = await sub.get()
            if isinstance(ev, TaskChanged):
                r.changes.append(ev)

    collector = asyncio.ensure_future(collect())
    try:
        yield r
    finally:
        collector.cancel()
        await asyncio.gather(collector, return_exceptions=True)
        await system.stop(grace_s=1.0)


class Gate:
    """Handlers block on it; the test opens it."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered: list[str] = []
        self.cancelled: list[str] = []
        self.running = 0
        self.most = 0

    async def __call__(self, payload: dict[str, Any], ctx: TaskContext) -> str:
        self.entered.append(ctx.task_id)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.open.wait()
        except asyncio.CancelledError:
            self.cancelled.append(ctx.task_id)
            raise
        finally:
            self.running -= 1
        return ctx.task_id


def gated(registry: TaskRegistry, name: str = "t.gate", **kw: Any) -> Gate:
    gate = Gate()
    registry.task(name, pool="p", **kw)(gate)
    return gate


async def test_a_paused_pool_starts_its_queue_by_priority_then_submission_order() -> None:
    reg = TaskRegistry()
    gate = gated(reg)
    gate.open.set()
    async with rig(reg, pools={"p": 0}) as r:
        prios = [Priority.LOW, Priority.CRITICAL, Priority.NORMAL, Priority.HIGH, Priority.NORMAL]
        ids = [await r.submit("t.gate", priority=p) for p in prios * 3]
        await r.tasks.scale("p", 2)
        for t in ids:
            assert (await r.wait(t)).status is Status.SUCCEEDED
        expected = sorted(range(len(ids)), key=lambda i: (-prios[i % 5], i))
        assert r.starts() == [ids[i] for i in expected]


async def test_waiting_one_aging_interval_is_worth_one_priority_level() -> None:
    reg = TaskRegistry()
    gate = gated(reg)
    gate.open.set()
    async with rig(reg, pools={"p": 0}, aging_s=60.0, fake_wall=True) as r:
        old_low = await r.submit("t.gate", priority=Priority.LOW)
        r.wall[0] += 59.0  # less than one interval later: the higher priority still wins
        high_1 = await r.submit("t.gate", priority=Priority.NORMAL)
        r.wall[0] += 2.0  # now the old task has waited more than an interval longer
        high_2 = await r.submit("t.gate", priority=Priority.NORMAL)
        critical = await r.submit("t.gate", priority=Priority.CRITICAL)
        await r.tasks.scale("p", 1)
        for t in (old_low, high_1, high_2, critical):
            await r.wait(t)
        assert r.starts() == [critical, high_1, old_low, high_2]


async def test_a_failing_task_is_retried_with_backoff_until_it_succeeds() -> None:
    reg = TaskRegistry()
    calls: list[int] = []

    @reg.task("t.flaky", pool="p", retries=2, backoff_s=0.01, backoff_max_s=0.02)
    async def flaky(payload: dict[str, Any], ctx: TaskContext) -> int:
        calls.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt} fails")
        return ctx.attempt

    async with rig(reg) as r:
        t = await r.submit("t.flaky")
        info = await r.wait(t)
        assert (info.status, info.result(), info.record.attempts) == (Status.SUCCEEDED, 3, 3)
        assert calls == [1, 2, 3]
        Q, R = Status.QUEUED, Status.RUNNING
        assert r.statuses(t) == [Q, R, Q, R, Q, R, Status.SUCCEEDED]
        failed_once = [c for c in r.changes if c.info.task_id == t][2].info
        assert failed_once.error_reason == "HANDLER_ERROR"
        assert "attempt 1 fails" in failed_once.error_message


async def test_an_attempt_past_its_timeout_is_cancelled_and_the_last_one_times_out() -> None:
    reg = TaskRegistry()
    gate = gated(reg, timeout_s=0.05, retries=1, backoff_s=0.0, backoff_max_s=0.0)
    async with rig(reg) as r:
        t = await r.submit("t.gate")
        info = await r.wait(t)
        assert (info.status, info.error_reason, info.record.attempts) == (
            Status.TIMED_OUT,
            "TIMED_OUT",
            2,
        )
        assert gate.cancelled == [t, t]  # each attempt's handler was stopped
        short = await r.submit("t.gate", timeout_s=0.01, max_attempts=1)  # per-task override
        assert (await r.wait(short)).status is Status.TIMED_OUT


@pytest.mark.parametrize(
    "error",
    [
        BudgetExceeded("job j is over budget", job_id="j", spent_nanos=2, budget_nanos=1),
        InvalidRequest.field("payload.x", "is wrong"),
    ],
)
async def test_errors_another_attempt_cannot_fix_are_not_retried(error: Exception) -> None:
    reg = TaskRegistry()
    calls: list[int] = []

    @reg.task("t.permanent", pool="p", retries=5, backoff_s=0.0, backoff_max_s=0.0)
    async def permanent(payload: dict[str, Any], ctx: TaskContext) -> None:
        calls.append(ctx.attempt)
        raise error

    async with rig(reg) as r:
        info = await r.wait(await r.submit("t.permanent"))
        assert (info.status, info.record.attempts, calls) == (Status.FAILED, 1, [1])
        assert info.error_reason == error.reason  # type: ignore[attr-defined]


async def test_a_cancelled_queued_task_never_runs() -> None:
    reg = TaskRegistry()
    gate = gated(reg)
    gate.open.set()
    async with rig(reg, pools={"p": 0}) as r:
        doomed = await r.submit("t.gate")
        after = await r.submit("t.gate")
        info = await r.tasks.cancel(doomed)
        assert info.status is Status.CANCELLED
        await r.tasks.scale("p", 1)
        assert (await r.wait(after)).status is Status.SUCCEEDED  # FIFO: it ran after doomed's turn
        assert gate.entered == [after]
        assert r.statuses(doomed) == [Status.QUEUED, Status.CANCELLED]
        assert (await r.tasks.cancel(doomed)).status is Status.CANCELLED  # again: unchanged


async def test_cancelling_a_running_task_cancels_its_handler() -> None:
    reg = TaskRegistry()
    gate = gated(reg, retries=3)
    async with rig(reg) as r:
        t = await r.submit("t.gate")
        await until(lambda: gate.entered == [t], "the handler to start")
        info = await r.tasks.cancel(t)
        assert (info.status, info.error_reason, info.record.attempts) == (
            Status.CANCELLED,
            "CANCELLED",
            1,
        )
        assert gate.cancelled == [t]
        assert r.statuses(t) == [Status.QUEUED, Status.RUNNING, Status.CANCELLED]


async def test_scaling_down_lets_busy_workers_finish_and_runs_nothing_twice() -> None:
    reg = TaskRegistry()
    gate = gated(reg)
    async with rig(reg, pools={"p": 3}) as r:
        first = [await r.submit("t.gate") for _ in range(3)]
        await until(lambda: len(gate.entered) == 3, "three handlers to start")
        (pool,) = await r.tasks.pools()
        assert (pool.workers, pool.busy) == (3, 3)
        scaled = await r.tasks.scale("p", 1)
        assert (scaled.workers, scaled.busy) == (1, 3)  # busy may exceed the size for a while
        rest = [await r.submit("t.gate") for _ in range(5)]
        gate.most = gate.running
        gate.open.set()
        for t in first + rest:
            assert (await r.wait(t)).status is Status.SUCCEEDED
        assert sorted(gate.entered) == sorted(first + rest)  # each ran exactly once
        assert r.book.sizes == {"p": 1}
        (pool,) = await r.tasks.pools()
        assert (pool.workers, pool.busy, pool.queued) == (1, 0, 0)


async def test_a_pool_over_the_cpu_threshold_runs_one_task_at_a_time() -> None:
    reg = TaskRegistry()
    gate = gated(reg)
    async with rig(reg, pools={"p": 4}, cpu_threshold_percent=90.0) as r:
        r.cpu[0] = 95.0
        ids = [await r.submit("t.gate") for _ in range(4)]
        await until(lambda: len(gate.entered) == 1, "the first handler to start")
        for _ in range(10):  # several dispatch rounds (poll interval 20 ms): still one
            await asyncio.sleep(0.02)
        assert len(gate.entered) == 1
        r.cpu[0] = 10.0
        await until(lambda: len(gate.entered) == 4, "the rest to start once CPU drops")
        gate.open.set()
        for t in ids:
            await r.wait(t)


async def test_an_attempt_that_lost_its_lease_stops_and_records_nothing() -> None:
    reg = TaskRegistry()
    gate = gated(reg)

    class LosingStore(MemoryTaskQueueStore):
        async def heartbeat(
            self, task_id: str, attempt: int, lease_s: float, *, now: float
        ) -> bool:
            return False  # as if the lease had expired and another worker took the task

    store = LosingStore()
    async with rig(reg, lease_s=0.05, pools={"p": 1}, store=store) as r:
        t = await r.submit("t.gate")
        await until(lambda: gate.cancelled == [t], "the attempt to be stopped")
        rec = await store.get(t)
        assert rec is not None and rec.state is TaskState.RUNNING  # nothing was recorded
        assert rec.error == "" and r.statuses(t) == [Status.QUEUED, Status.RUNNING]


async def test_stopping_the_scheduler_requeues_a_running_attempt_at_once() -> None:
    reg = TaskRegistry()
    gate = gated(reg, retries=1)
    async with rig(reg) as r:
        t = await r.submit("t.gate")
        await until(lambda: gate.entered == [t], "the handler to start")
        await r.system.stop(grace_s=0.5)
        rec = await r.store.get(t)
        assert rec is not None
        assert (rec.state, rec.attempts) == (TaskState.QUEUED, 1)
        assert "INTERRUPTED" in rec.error and gate.cancelled == [t]


async def test_a_full_queue_and_an_unknown_pool_are_refused() -> None:
    reg = TaskRegistry()
    gated(reg)
    async with rig(reg, pools={"p": 0}, queue_capacity=2) as r:
        await r.submit("t.gate")
        await r.submit("t.gate")
        with pytest.raises(QueueFull):
            await r.submit("t.gate")
        with pytest.raises(UnknownPool, match="no pool is named 'nope'"):
            await r.submit("t.gate", pool="nope")
        with pytest.raises(UnknownPool):
            await r.tasks.scale("nope", 1)
        page, _ = await r.tasks.list(ListQuery())
        assert len(page) == 2  # nothing else was created


async def test_a_result_that_is_not_json_or_too_big_fails_without_retry() -> None:
    reg = TaskRegistry()

    @reg.task("t.result", pool="p", retries=3)
    async def result(payload: dict[str, Any], ctx: TaskContext) -> Any:
        return {1, 2} if payload["kind"] == "set" else "x" * 2000

    async with rig(reg, max_result_bytes=1000) as r:
        for kind in ("set", "big"):
            info = await r.wait(await r.submit("t.result", {"kind": kind}))
            assert (info.status, info.error_reason, info.record.attempts) == (
                Status.FAILED,
                "BAD_RESULT",
                1,
            )


async def test_a_task_whose_kind_is_gone_fails_with_a_reason() -> None:
    reg = TaskRegistry()
    gated(reg)
    async with rig(reg, pools={"p": 0}) as r:
        t = await r.submit("t.gate", max_attempts=3)
        reg._kinds.clear()  # as after a restart without the module that registered it
        await r.tasks.scale("p", 1)
        info = await r.wait(t)
        assert (info.status, info.error_reason, info.record.attempts) == (
            Status.FAILED,
            "KIND_NOT_FOUND",
            1,
        )


async def test_progress_reaches_watchers_and_the_running_task() -> None:
    reg = TaskRegistry()
    gate = asyncio.Event()

    @reg.task("t.progress", pool="p")
    async def progress(payload: dict[str, Any], ctx: TaskContext) -> None:
        ctx.progress(0.25, "a quarter")
        await gate.wait()

    async with rig(reg) as r:
        t = await r.submit("t.progress")
        await until(lambda: r.hub.progress_of(t) is not None, "a progress report")
        info = await r.tasks.get(t)
        assert info.progress is not None
        assert (info.progress.fraction, info.progress.message) == (0.25, "a quarter")
        gate.set()
        done = await r.wait(t)
        assert done.progress is None and r.hub.progress_of(t) is None


async def test_pool_sizes_set_at_run_time_survive_a_new_scheduler_instance() -> None:
    reg = TaskRegistry()
    async with rig(reg, pools={"p": 1, "q": 2}) as r:
        await r.tasks.scale("p", 5)
        system = ActorSystem()
        ref = system.spawn(
            "scheduler",
            lambda: Scheduler(
                store=r.store,
                registry=reg,
                hub=r.hub,
                settings=SchedulerSettings(pools={"p": 1, "q": 2}),
                book=r.book,
            ),
        )
        await system.start()
        try:
            pools = await ref.ask(GetPools())
            assert [(p.name, p.workers) for p in pools] == [("p", 5), ("q", 2)]
        finally:
            await system.stop(grace_s=1.0)


async def test_finished_tasks_are_purged_after_the_retention_and_free_their_keys() -> None:
    reg = TaskRegistry()
    gate = gated(reg)
    gate.open.set()
    async with rig(reg, result_retention_s=0.2) as r:
        t = await r.submit("t.gate", idempotency_key="once")
        await r.wait(t)
        await until(lambda: t not in r.store._tasks, "the finished task to be purged")
        again = await r.tasks.submit(SubmitSpec(kind="t.gate", idempotency_key="once"))
        assert not again.deduplicated and again.info.task_id != t


async def test_a_task_failed_by_its_start_deadline_is_published_once() -> None:
    reg = TaskRegistry()
    gate = gated(reg)
    gate.open.set()
    async with rig(reg, pools={"p": 0}, fake_wall=True, lease_s=0.2) as r:
        late = await r.submit("t.gate", deadline=r.wall[0] + 10)
        on_time = await r.submit("t.gate", deadline=r.wall[0] + 100)
        r.wall[0] += 20  # late's deadline passes while the pool is paused
        await r.tasks.scale("p", 1)
        assert (await r.wait(on_time)).status is Status.SUCCEEDED
        info = await r.wait(late)
        assert (info.status, info.error_reason) == (Status.FAILED, "DEADLINE_EXCEEDED")
        assert gate.entered == [on_time]
        await until(lambda: len(r.statuses(late)) == 2, "the deadline failure to be published")
        assert r.statuses(late) == [Status.QUEUED, Status.FAILED]


async def test_a_task_left_running_by_a_dead_worker_is_published_when_its_lease_expires() -> None:
    reg = TaskRegistry()
    gate = gated(reg)
    gate.open.set()
    store = MemoryTaskQueueStore()
    now = 1_000_000.0  # the rig's fake wall clock starts here
    orphan = await store.enqueue(
        NewTask(task_id="orphan", kind="t.gate", pool="p", max_attempts=1), now=now
    )
    retried = await store.enqueue(
        NewTask(task_id="retried", kind="t.gate", pool="p", max_attempts=2), now=now
    )
    assert orphan.created and retried.created
    assert len(await store.claim("p", "dead-worker", 1.0, now=now, limit=2)) == 2
    async with rig(reg, pools={"p": 1}, fake_wall=True, lease_s=0.2, store=store) as r:
        await asyncio.sleep(0.05)  # the scheduler finds both running, held by someone else
        r.wall[0] += 5  # their leases expire
        info = await r.wait("orphan")
        assert (info.status, info.error_reason) == (Status.FAILED, "LEASE_EXPIRED")
        assert (await r.wait("retried")).status is Status.SUCCEEDED
        await until(lambda: r.statuses("orphan") == [Status.FAILED], "the orphan's end")
        assert r.statuses("retried")[-2:] == [Status.RUNNING, Status.SUCCEEDED]
        assert gate.entered == ["retried"]
