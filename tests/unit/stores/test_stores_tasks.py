"""The TaskQueueStore contract, run against every implementation (see conftest.py)."""

from __future__ import annotations

import asyncio
import math

import pytest
from store_helpers import AGING_S, T0

from aurea.stores import NewTask, TaskFilter, TaskQueueStore, TaskRecord, TaskState
from aurea.stores.tasks import DEADLINE_EXCEEDED, LEASE_EXPIRED

LEASE = 30.0


def new(task_id: str, *, pool: str = "general", priority: int = 1, **kw: object) -> NewTask:
    return NewTask(task_id=task_id, kind="compute.sum", pool=pool, priority=priority, **kw)  # type: ignore[arg-type]


async def claim_one(tasks: TaskQueueStore, now: float, worker: str = "w1") -> TaskRecord | None:
    got = await tasks.claim("general", worker, LEASE, now=now)
    return got[0] if got else None


async def claim_all(tasks: TaskQueueStore, now: float, pool: str = "general") -> list[str]:
    return [t.task_id for t in await tasks.claim(pool, "w", LEASE, now=now, limit=1000)]


async def test_enqueue_stores_a_queued_task(tasks: TaskQueueStore) -> None:
    done = await tasks.enqueue(new("t1", payload='{"a": 1}', job_id="j", max_attempts=3), now=T0)
    assert done.created
    t = await tasks.get("t1")
    assert t == done.task
    assert (t.state, t.payload, t.job_id, t.attempts, t.max_attempts) == (
        TaskState.QUEUED,
        '{"a": 1}',
        "j",
        0,
        3,
    )
    assert (t.created_at, t.available_at, t.finished_at, t.lease_until) == (T0, T0, None, None)
    assert await tasks.get("nope") is None


async def test_an_idempotency_key_or_task_id_is_never_enqueued_twice(
    tasks: TaskQueueStore,
) -> None:
    first = await tasks.enqueue(new("t1", idempotency_key="k"), now=T0)
    again = await tasks.enqueue(new("t2", idempotency_key="k", payload="other"), now=T0 + 1)
    same_id = await tasks.enqueue(new("t1", payload="other"), now=T0 + 2)
    assert first.created and not again.created and not same_id.created
    assert again.task == first.task == same_id.task
    assert await tasks.get("t2") is None
    assert (await tasks.enqueue(new("t3", idempotency_key=""), now=T0)).created
    assert (await tasks.enqueue(new("t4", idempotency_key=""), now=T0)).created


async def test_claims_go_by_priority_then_fifo(tasks: TaskQueueStore) -> None:
    for i, prio in enumerate([1, 0, 3, 1, 3, 2]):
        await tasks.enqueue(new(f"t{i}", priority=prio), now=T0 + i * 0.001)
    assert await claim_all(tasks, T0 + 1) == ["t2", "t4", "t5", "t0", "t3", "t1"]


async def test_one_priority_level_is_worth_the_aging_interval(tasks: TaskQueueStore) -> None:
    await tasks.enqueue(new("old-low", priority=0), now=T0)
    await tasks.enqueue(new("new-high", priority=1), now=T0 + AGING_S - 1)
    await tasks.enqueue(new("newer-high", priority=1), now=T0 + AGING_S + 1)
    assert await claim_all(tasks, T0 + 200) == ["new-high", "old-low", "newer-high"]


async def test_pools_are_separate_queues(tasks: TaskQueueStore) -> None:
    await tasks.enqueue(new("a", pool="llm"), now=T0)
    await tasks.enqueue(new("b", pool="tool"), now=T0)
    assert await claim_all(tasks, T0, pool="tool") == ["b"]
    assert await claim_all(tasks, T0, pool="tool") == []
    assert await claim_all(tasks, T0, pool="llm") == ["a"]


async def test_claim_ack_records_the_result(tasks: TaskQueueStore) -> None:
    await tasks.enqueue(new("t1"), now=T0)
    t = await claim_one(tasks, T0 + 1)
    assert t is not None and t.state is TaskState.RUNNING
    assert (t.attempts, t.worker_id, t.lease_until) == (1, "w1", T0 + 1 + LEASE)
    assert await claim_one(tasks, T0 + 1) is None
    assert await tasks.ack("t1", 2, "wrong attempt", now=T0 + 2) is None
    done = await tasks.ack("t1", 1, '{"sum": 3}', now=T0 + 2)
    assert done is not None and done.state is TaskState.SUCCEEDED
    assert (done.result, done.finished_at, done.lease_until) == ('{"sum": 3}', T0 + 2, None)
    assert await tasks.ack("t1", 1, "again", now=T0 + 3) is None
    assert (await tasks.get("t1")).result == '{"sum": 3}'  # type: ignore[union-attr]


async def test_nack_retries_from_retry_at_until_attempts_run_out(tasks: TaskQueueStore) -> None:
    await tasks.enqueue(new("t1", max_attempts=2), now=T0)
    await claim_one(tasks, T0)
    retried = await tasks.nack("t1", 1, "boom", retry_at=T0 + 10, now=T0 + 1)
    assert retried is not None and retried.state is TaskState.QUEUED
    assert (retried.error, retried.available_at) == ("boom", T0 + 10)
    assert await claim_one(tasks, T0 + 9) is None  # not before retry_at
    t = await claim_one(tasks, T0 + 10)
    assert t is not None and t.attempts == 2
    failed = await tasks.nack("t1", 2, "boom again", retry_at=T0 + 20, now=T0 + 11)
    assert failed is not None and failed.state is TaskState.FAILED
    assert (failed.error, failed.finished_at) == ("boom again", T0 + 11)


async def test_nack_without_retry_fails_at_once(tasks: TaskQueueStore) -> None:
    await tasks.enqueue(new("t1", max_attempts=5), now=T0)
    await claim_one(tasks, T0)
    failed = await tasks.nack("t1", 1, "bad payload", retry_at=None, now=T0 + 1)
    assert failed is not None and failed.state is TaskState.FAILED


async def test_an_expired_lease_puts_the_task_back_and_fences_the_old_worker(
    tasks: TaskQueueStore,
) -> None:
    await tasks.enqueue(new("t1", max_attempts=2), now=T0)
    first = await claim_one(tasks, T0, worker="dead")
    assert first is not None
    assert await claim_one(tasks, T0 + LEASE - 1, worker="w2") is None  # still leased
    second = await claim_one(tasks, T0 + LEASE, worker="w2")
    assert second is not None and (second.attempts, second.worker_id) == (2, "w2")
    assert second.error == LEASE_EXPIRED
    assert await tasks.ack("t1", 1, "late", now=T0 + LEASE + 1) is None  # the dead worker's
    assert not await tasks.heartbeat("t1", 1, LEASE, now=T0 + LEASE + 1)
    # Attempts exhausted: the next expiry fails the task instead.
    assert await claim_one(tasks, T0 + 2 * LEASE + 1) is None
    t = await tasks.get("t1")
    assert t is not None and t.state is TaskState.FAILED and t.error == LEASE_EXPIRED


async def test_heartbeat_keeps_the_lease(tasks: TaskQueueStore) -> None:
    await tasks.enqueue(new("t1", max_attempts=3), now=T0)
    await claim_one(tasks, T0)
    assert await tasks.heartbeat("t1", 1, LEASE, now=T0 + 20)
    assert await claim_one(tasks, T0 + LEASE + 1, worker="w2") is None
    assert (await tasks.get("t1")).lease_until == T0 + 20 + LEASE  # type: ignore[union-attr]


async def test_cancel_queued_and_running_tasks(tasks: TaskQueueStore) -> None:
    await tasks.enqueue(new("q"), now=T0)
    await tasks.enqueue(new("r", max_attempts=5), now=T0 + 1)
    await tasks.enqueue(new("r2", max_attempts=5), now=T0 + 2)
    assert (await tasks.cancel("q", now=T0 + 3)).state is TaskState.CANCELLED  # type: ignore[union-attr]
    assert await claim_all(tasks, T0 + 3) == ["r", "r2"]
    asked = await tasks.cancel("r", now=T0 + 4)
    assert asked is not None and asked.state is TaskState.RUNNING and asked.cancel_requested
    stopped = await tasks.nack("r", 1, "cancelled by request", retry_at=T0 + 5, now=T0 + 5)
    assert stopped is not None and stopped.state is TaskState.CANCELLED
    await tasks.cancel("r2", now=T0 + 4)  # its worker dies: the lease ends it cancelled
    assert await claim_one(tasks, T0 + 100) is None
    assert (await tasks.get("r2")).state is TaskState.CANCELLED  # type: ignore[union-attr]
    finished = await tasks.cancel("q", now=T0 + 200)
    assert finished is not None and finished.finished_at == T0 + 3  # unchanged
    assert await tasks.cancel("nope", now=T0) is None


async def test_a_task_past_its_deadline_is_failed_not_claimed(tasks: TaskQueueStore) -> None:
    await tasks.enqueue(new("late", priority=3, deadline=T0 + 5), now=T0)
    await tasks.enqueue(new("ok"), now=T0)
    assert await claim_all(tasks, T0 + 5) == ["ok"]
    t = await tasks.get("late")
    assert t is not None and (t.state, t.error, t.attempts) == (
        TaskState.FAILED,
        DEADLINE_EXCEEDED,
        0,
    )


async def test_list_filters_and_pages_in_submission_order(tasks: TaskQueueStore) -> None:
    for i in range(7):
        await tasks.enqueue(
            new(f"t{i}", pool="a" if i % 2 else "b", job_id=f"j{i % 3}"), now=T0 + i
        )
    await tasks.claim("a", "w", LEASE, now=T0 + 10)  # t1 running
    page = await tasks.list_tasks(limit=3)
    assert [t.task_id for t in page.items] == ["t0", "t1", "t2"] and page.next_cursor
    page = await tasks.list_tasks(after=page.next_cursor, limit=3)
    assert [t.task_id for t in page.items] == ["t3", "t4", "t5"]
    page = await tasks.list_tasks(after=page.next_cursor, limit=3)
    assert [t.task_id for t in page.items] == ["t6"] and page.next_cursor is None
    pool_a = await tasks.list_tasks(TaskFilter(pool="a", state=TaskState.QUEUED))
    assert [t.task_id for t in pool_a.items] == ["t3", "t5"]
    by_job = await tasks.list_tasks(TaskFilter(job_id="j1", kind="compute.sum"), limit=1)
    assert [t.task_id for t in by_job.items] == ["t1"]
    rest = await tasks.list_tasks(TaskFilter(job_id="j1"), after=by_job.next_cursor)
    assert [t.task_id for t in rest.items] == ["t4"] and rest.next_cursor is None
    assert (await tasks.list_tasks(TaskFilter(kind="other"))).items == ()


async def test_counts_and_purge(tasks: TaskQueueStore) -> None:
    for i in range(4):
        await tasks.enqueue(new(f"t{i}", idempotency_key=f"k{i}"), now=T0)
    await tasks.enqueue(new("x", pool="llm"), now=T0)
    await tasks.claim("general", "w", LEASE, now=T0, limit=2)
    await tasks.ack("t0", 1, "", now=T0 + 1)
    await tasks.cancel("t2", now=T0 + 5)
    assert [(c.pool, c.state, c.count) for c in await tasks.counts()] == [
        ("general", TaskState.CANCELLED, 1),
        ("general", TaskState.QUEUED, 1),
        ("general", TaskState.RUNNING, 1),
        ("general", TaskState.SUCCEEDED, 1),
        ("llm", TaskState.QUEUED, 1),
    ]
    assert await tasks.purge(finished_before=T0 + 5) == 1  # t0 only (t2 ended at T0 + 5)
    assert await tasks.get("t0") is None
    assert (await tasks.enqueue(new("t0-again", idempotency_key="k0"), now=T0 + 6)).created
    assert not (await tasks.enqueue(new("t2-again", idempotency_key="k2"), now=T0 + 6)).created


@pytest.mark.parametrize(
    "task",
    [
        NewTask(task_id="", kind="k", pool="p"),
        NewTask(task_id="t", kind="", pool="p"),
        NewTask(task_id="t", kind="k", pool=""),
        NewTask(task_id="t", kind="k", pool="p", max_attempts=0),
        NewTask(task_id="t", kind="k", pool="p", deadline=math.nan),
    ],
)
async def test_nonsense_tasks_are_refused(tasks: TaskQueueStore, task: NewTask) -> None:
    with pytest.raises(ValueError):
        await tasks.enqueue(task, now=T0)
    assert (await tasks.list_tasks()).items == ()


async def test_nonsense_claims_are_refused(tasks: TaskQueueStore) -> None:
    for pool, worker, lease, limit in [
        ("", "w", 1.0, 1),
        ("p", "", 1.0, 1),
        ("p", "w", 0.0, 1),
        ("p", "w", 1.0, 0),
    ]:
        with pytest.raises(ValueError):
            await tasks.claim(pool, worker, lease, now=T0, limit=limit)


async def test_concurrent_workers_claim_each_task_exactly_once(tasks: TaskQueueStore) -> None:
    await asyncio.gather(*(tasks.enqueue(new(f"t{i}", priority=i % 4), now=T0) for i in range(200)))

    async def worker(name: str) -> list[str]:
        mine: list[str] = []
        while got := await tasks.claim("general", name, LEASE, now=T0 + 1, limit=3):
            for t in got:
                mine.append(t.task_id)
                assert await tasks.ack(t.task_id, t.attempts, name, now=T0 + 2) is not None
            await asyncio.sleep(0)
        return mine

    claimed = [
        t for batch in await asyncio.gather(*(worker(f"w{i}") for i in range(25))) for t in batch
    ]
    assert sorted(claimed) == sorted(f"t{i}" for i in range(200))
    counts = await tasks.counts()
    assert [(c.state, c.count) for c in counts] == [(TaskState.SUCCEEDED, 200)]
