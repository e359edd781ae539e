"""Acceptance: 500 tasks of mixed priority across two pools, on the durable (SQLite) store, all
complete; within each pool the start order follows the documented rank (submission time minus
priority level times ``aging_s_per_priority``); WatchTasks delivers every change of every task
exactly once, in order."""

from __future__ import annotations

import asyncio
import itertools
import random
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aurea.tasks import TaskContext, task
from aurea.testing import running_server
from aurea.testing import test_settings as settings_for
from aurea.v1 import task_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

N = 500
AGING_S = 0.05  # small, so that aging visibly reorders tasks submitted over a second or so
WAVES = 10
LEVEL = {  # the store's priority level of each API priority
    pb.TASK_PRIORITY_LOW: 0,
    pb.TASK_PRIORITY_NORMAL: 1,
    pb.TASK_PRIORITY_HIGH: 2,
    pb.TASK_PRIORITY_CRITICAL: 3,
}
TERMINAL = (
    pb.TASK_STATUS_SUCCEEDED,
    pb.TASK_STATUS_FAILED,
    pb.TASK_STATUS_CANCELLED,
    pb.TASK_STATUS_TIMED_OUT,
)


@task("order.work", pool="alpha")
async def work(payload: dict[str, Any], ctx: TaskContext) -> int:
    await asyncio.sleep(payload["sleep_ms"] / 1000)
    return int(payload["i"])


def seconds(ts: Any) -> float:
    return float(ts.seconds + ts.nanos / 1e9)


def rank(t: pb.Task) -> float:
    return seconds(t.create_time) - LEVEL[t.priority] * AGING_S


async def test_500_tasks_start_by_rank_per_pool_and_every_change_is_watched_once(
    tmp_path: Path, make_stubs: Callable[..., Any]
) -> None:
    settings = settings_for(
        {
            "ledger": {"store": "memory"},
            "routing": {"stats_store": "memory"},
            "tasks": {
                "store": "sqlite",
                "sqlite_path": str(tmp_path / "tasks.db"),
                "pools": {"alpha": 0, "beta": 0},  # paused while the queue fills
                "aging_s_per_priority": AGING_S,
                "cpu_threshold_percent": 100,
                "poll_interval_s": 0.05,
            },
        }
    )
    rng = random.Random(4)
    async with running_server(settings) as rs:
        stubs = make_stubs(rs.channel)
        watch = stubs.task.WatchTasks(pb.WatchTasksRequest(kind="order.work"))
        changes: list[pb.TaskChange] = []

        async def read() -> None:
            ended = 0
            async for ev in watch:
                assert ev.WhichOneof("event") == "change"
                changes.append(ev.change)
                ended += ev.change.task.status in TERMINAL
                if ended == N:
                    return

        reader = asyncio.ensure_future(read())
        for _ in range(1000):  # bounded: the watch is open before the first submission
            if rs.server.task_system.hub.watchers:
                break
            await asyncio.sleep(0.01)
        assert rs.server.task_system.hub.watchers

        async def submit(i: int) -> pb.Task:
            req = pb.SubmitTaskRequest(
                kind="order.work",
                payload_json=f'{{"i": {i}, "sleep_ms": {rng.randint(0, 4)}}}',
                priority=rng.choice(list(LEVEL)),
                pool="alpha" if i % 2 else "beta",
            )
            r: pb.SubmitTaskResponse = await stubs.task.SubmitTask(req, timeout=30)
            return r.task

        submitted: list[pb.Task] = []
        per_wave = N // WAVES
        for wave in range(WAVES):
            batch = range(wave * per_wave, (wave + 1) * per_wave)
            submitted += await asyncio.gather(*(submit(i) for i in batch))
            await asyncio.sleep(AGING_S)  # waves a priority level apart in rank
        pools = {p.name: p for p in (await stubs.task.ListPools(pb.ListPoolsRequest())).pools}
        assert (pools["alpha"].queued, pools["beta"].queued) == (N // 2, N // 2)

        await stubs.task.ScalePool(pb.ScalePoolRequest(pool="alpha", workers=3))
        await stubs.task.ScalePool(pb.ScalePoolRequest(pool="beta", workers=2))
        await asyncio.wait_for(reader, 240)
        watch.cancel()

        # All complete.
        done: list[pb.Task] = []
        token = ""
        for _ in range(N):
            page = await stubs.task.ListTasks(
                pb.ListTasksRequest(kind="order.work", page_size=200, page_token=token)
            )
            done += page.tasks
            token = page.next_page_token
            if not token:
                break
        assert len(done) == N
        assert {t.status for t in done} == {pb.TASK_STATUS_SUCCEEDED}
        assert {t.attempts for t in done} == {1}

    # Every change of every task, once, in order.
    by_task: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for c in changes:
        by_task[c.task.task_id].append((c.previous_status, c.task.status))
    assert set(by_task) == {t.task_id for t in submitted}
    expected = [
        (pb.TASK_STATUS_UNSPECIFIED, pb.TASK_STATUS_QUEUED),
        (pb.TASK_STATUS_QUEUED, pb.TASK_STATUS_RUNNING),
        (pb.TASK_STATUS_RUNNING, pb.TASK_STATUS_SUCCEEDED),
    ]
    wrong = {t: seq for t, seq in by_task.items() if seq != expected}
    assert not wrong, (
        f"{len(wrong)} tasks with other change sequences, e.g. {next(iter(wrong.items()))}"
    )
    assert len(changes) == 3 * N

    # Within each pool, tasks started in rank order (all were queued before the pool started).
    info = {t.task_id: t for t in submitted}
    inversions_by_aging = 0
    for pool in ("alpha", "beta"):
        started = [
            info[c.task.task_id]
            for c in changes
            if c.task.status == pb.TASK_STATUS_RUNNING and c.task.pool == pool
        ]
        assert len(started) == N // 2
        for a, b in itertools.pairwise(started):
            # 1 us of slack: ranks are recomputed here from timestamps (float rounding).
            assert rank(a) <= rank(b) + 1e-6, (pool, a.task_id, b.task_id)
            inversions_by_aging += LEVEL[a.priority] < LEVEL[b.priority]
    # Aging mattered: some older task of a lower priority went before a newer, higher one.
    assert inversions_by_aging > 0
