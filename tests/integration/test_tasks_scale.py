"""Acceptance: ScalePool up, down, to zero (paused) and up again while tasks run: no task is
lost or run twice, a paused pool starts nothing, and ListPools shows each size."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from aurea.tasks import TaskContext, task
from aurea.testing import running_server
from aurea.testing import test_settings as settings_for
from aurea.v1 import task_pb2 as pb

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

N = 150
WAIT_S = 60.0  # a bound on each wait, never a performance claim
STARTS: Counter[str] = Counter()
ENDS: Counter[str] = Counter()


@task("scale.work", pool="elastic")
async def work(payload: dict[str, Any], ctx: TaskContext) -> str:
    STARTS[ctx.task_id] += 1
    await asyncio.sleep(payload["sleep_ms"] / 1000)
    ENDS[ctx.task_id] += 1
    return ctx.task_id


async def until(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def test_scaling_a_pool_while_it_runs_loses_nothing_and_runs_nothing_twice(
    tmp_path: Path, make_stubs: Callable[..., Any]
) -> None:
    settings = settings_for(
        {
            "ledger": {"store": "memory"},
            "routing": {"stats_store": "memory"},
            "tasks": {
                "store": "sqlite",
                "sqlite_path": str(tmp_path / "tasks.db"),
                "pools": {"elastic": 2},
                "cpu_threshold_percent": 100,
                "poll_interval_s": 0.05,
            },
        }
    )
    STARTS.clear()
    ENDS.clear()
    async with running_server(settings) as rs:
        stubs = make_stubs(rs.channel)

        async def pool() -> pb.Pool:
            r: pb.ListPoolsResponse = await stubs.task.ListPools(pb.ListPoolsRequest())
            (found,) = [p for p in r.pools if p.name == "elastic"]
            return found

        async def scale(workers: int) -> None:
            r = await stubs.task.ScalePool(pb.ScalePoolRequest(pool="elastic", workers=workers))
            assert r.pool.workers == workers
            assert (await pool()).workers == workers

        ids = []
        for i in range(N):
            req = pb.SubmitTaskRequest(
                kind="scale.work", payload_json=f'{{"sleep_ms": {10 + i % 4 * 10}}}'
            )
            ids.append((await stubs.task.SubmitTask(req)).task.task_id)

        await until(lambda: sum(ENDS.values()) >= 10, "the first tasks to finish")
        await scale(8)
        await until(lambda: sum(ENDS.values()) >= 40, "more to finish on 8 workers")
        await scale(1)
        await until(lambda: sum(ENDS.values()) >= 60, "more to finish on 1 worker")
        await scale(0)  # pause: running tasks finish, queued ones wait
        for _ in range(int(WAIT_S / 0.05)):
            p = await pool()
            if p.busy == 0:
                break
            await asyncio.sleep(0.05)
        assert (await pool()).busy == 0
        started = sum(STARTS.values())
        for _ in range(10):  # several poll intervals of a paused pool
            await asyncio.sleep(0.05)
        assert sum(STARTS.values()) == started
        paused = await pool()
        assert paused.queued == N - started and paused.queued > 0
        await scale(5)
        for task_id in ids:
            r = await stubs.task.GetTask(
                pb.GetTaskRequest(task_id=task_id, wait_ms=int(WAIT_S * 1e3)), timeout=WAIT_S + 5
            )
            assert r.task.status == pb.TASK_STATUS_SUCCEEDED
            assert r.task.attempts == 1
        final = await pool()
        assert (final.workers, final.busy, final.queued, final.running) == (5, 0, 0, 0)
    assert set(STARTS) == set(ids) == set(ENDS)
    assert set(STARTS.values()) == {1} and set(ENDS.values()) == {1}  # each ran exactly once
