"""Acceptance (issue 11, shared state): several ``aurea serve`` processes on one real
redis-server behave as one: one rate limit, one budget, one set of router stats, one task
queue; a replica killed with ``kill -9`` gives back its reservations after its lease TTL and its
running task to another replica; Redis stopped and restarted: the limiter and ledger fail closed
with UNAVAILABLE, then recover by themselves.

Never a wall-clock assertion: every wait is a bounded poll, and the one elapsed time measured
(the rate-limit test) only widens the bound by what the bucket refilled meanwhile."""

from __future__ import annotations

import asyncio
import json
import math
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from aurea.testing.redis import RedisServer
from aurea.v1 import admin_pb2 as apb
from aurea.v1 import (
    admin_pb2_grpc,
    inference_pb2_grpc,
    ledger_pb2_grpc,
    router_pb2_grpc,
    task_pb2_grpc,
)
from aurea.v1 import inference_pb2 as ipb
from aurea.v1 import ledger_pb2 as lpb
from aurea.v1 import router_pb2 as rpb
from aurea.v1 import task_pb2 as tpb
from tests.conftest import ServeProcess, SpawnServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

MODEL = "sim-small"
TOKENS = 8
WAIT_S = 60.0  # a bound on each wait, never a performance claim

KINDS = '''
"""Task kinds for the shared-queue test: each run appends "start"/"end" lines (with the pid of
the server running it) to a file outside the servers."""
import asyncio, os
from aurea.tasks import task

def _log(line):
    with open(os.environ["SHARED_LOG"], "a") as f:
        f.write(line + "\\n")

async def _work(payload, ctx):
    _log(f"start {ctx.task_id} {os.getpid()}")
    if payload.get("gated"):
        for _ in range(12000):  # bounded: 2 minutes of 10 ms steps
            if os.path.exists(os.environ["SHARED_GATE"]):
                break
            await asyncio.sleep(0.01)
    _log(f"end {ctx.task_id} {os.getpid()}")
    return payload["n"]

task("shared.work", pool="shared", retries=2, backoff_s=0.05, backoff_max_s=0.1)(_work)
'''


def _config(redis_url: str, *, token_delay_ms: int = 2, prefix: str = "acc") -> str:
    return f"""
[providers.simulated]
kind = "simulated"
max_concurrency = 1000
options = {{ token_delay_ms = {token_delay_ms}, min_tokens = {TOKENS}, max_tokens = {TOKENS} }}

[redis]
url = "{redis_url}"
key_prefix = "{prefix}"

[cache]
enabled = false

[limits]
max_wait_s = 0

[ledger]
lease_ttl_s = 2.0

[tasks]
pools = ["shared=1"]
modules = ["sharedkinds"]
lease_s = 1.0
poll_interval_s = 0.05
cpu_threshold_percent = 100
"""


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisServer]:
    if not RedisServer.available():
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    with RedisServer.start() as server:
        yield server


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("shared")
    (tmp / "sharedkinds.py").write_text(KINDS)
    return {
        "PYTHONPATH": str(tmp),
        "SHARED_LOG": str(tmp / "runs.log"),
        "SHARED_GATE": str(tmp / "release"),
    }


@pytest.fixture(scope="module")
def three(spawn_server: SpawnServer, redis: RedisServer, env: dict[str, str]) -> list[ServeProcess]:
    servers = [spawn_server(config=_config(redis.url), env=env) for _ in range(3)]
    yield servers  # type: ignore[misc]
    for s in servers:
        s.stop()


def _lines(path: str) -> list[list[str]]:
    p = Path(path)
    return [line.split() for line in p.read_text().splitlines()] if p.exists() else []


async def _generate(target: str, job: str) -> tuple[grpc.StatusCode, int, str]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        try:
            r = await stub.Generate(
                ipb.GenerateRequest(prompt="hi", model=MODEL, job_id=job, max_tokens=TOKENS),
                timeout=30,
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code(), 0, exc.details() or ""
        return grpc.StatusCode.OK, int(r.cost_nanos), ""


async def _job(target: str, job: str) -> lpb.Job:
    async with grpc.aio.insecure_channel(target) as channel:
        reply = await ledger_pb2_grpc.LedgerServiceStub(channel).GetJob(
            lpb.GetJobRequest(job_id=job), timeout=10
        )
        result: lpb.Job = reply.job
        return result


async def _set_budget(target: str, job: str, nanos: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        await ledger_pb2_grpc.LedgerServiceStub(channel).SetBudget(
            lpb.SetBudgetRequest(job_id=job, budget_nanos=nanos), timeout=10
        )


async def _reserved_back_to_zero(target: str, job: str) -> lpb.Job:
    view = await _job(target, job)
    for _ in range(int(WAIT_S / 0.1)):  # bounded: blocks go back once idle (or expired)
        if view.reserved_nanos == 0:
            break
        await asyncio.sleep(0.1)
        view = await _job(target, job)
    return view


async def test_router_stats_recorded_through_one_are_read_through_another(
    three: list[ServeProcess],
) -> None:
    async with grpc.aio.insecure_channel(three[0].target) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        for _ in range(5):
            await stub.RecordOutcome(
                rpb.RecordOutcomeRequest(model="sim-large", success=True, latency_ms=123.0),
                timeout=10,
            )
    async with grpc.aio.insecure_channel(three[1].target) as channel:
        stub = router_pb2_grpc.RouterServiceStub(channel)
        calls = 0
        for _ in range(int(WAIT_S / 0.2)):  # bounded: replicas read back the store every 5 s
            r = await stub.ListModelStats(
                rpb.ListModelStatsRequest(models=["sim-large"]), timeout=5
            )
            calls = r.stats[0].calls if r.stats else 0
            if calls >= 5:
                break
            await asyncio.sleep(0.2)
    assert calls >= 5


async def test_a_60_rpm_limit_admits_at_most_60_across_three_servers(
    three: list[ServeProcess],
) -> None:
    for s in three:
        async with grpc.aio.insecure_channel(s.target) as channel:
            await admin_pb2_grpc.AdminServiceStub(channel).SetModelLimits(
                apb.SetModelLimitsRequest(model=MODEL, rpm=60), timeout=10
            )
    try:
        started = time.monotonic()
        results = await asyncio.gather(*(_generate(three[i % 3].target, "rpm") for i in range(150)))
        elapsed = time.monotonic() - started
    finally:
        for s in three:
            async with grpc.aio.insecure_channel(s.target) as channel:
                await admin_pb2_grpc.AdminServiceStub(channel).SetModelLimits(
                    apb.SetModelLimitsRequest(model=MODEL, rpm=0), timeout=10
                )
    ok = sum(1 for code, _, _ in results if code is grpc.StatusCode.OK)
    refused = [d for code, _, d in results if code is grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert ok + len(refused) == len(results), {c for c, _, _ in results}
    # The bucket holds 60 and refills one request a second: at most 60 plus the refill.
    assert 0 < ok <= 60 + math.ceil(elapsed)
    assert refused and "rpm" in refused[0]


async def test_a_budget_is_never_overshot_across_three_servers(three: list[ServeProcess]) -> None:
    code, cost, _ = await _generate(three[0].target, "probe")
    assert code is grpc.StatusCode.OK and cost > 0
    budget = 120 * cost  # 300 calls of that size cannot all fit
    await _set_budget(three[0].target, "shared-budget", budget)
    results = await asyncio.gather(
        *(_generate(three[i % 3].target, "shared-budget") for i in range(300))
    )
    codes = {c for c, _, _ in results}
    assert codes <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    charged = sum(c for code, c, _ in results if code is grpc.StatusCode.OK)
    for s in three:  # every replica reads the same figures
        view = await _reserved_back_to_zero(s.target, "shared-budget")
        assert view.cost_nanos == charged <= budget
        assert view.reserved_nanos == 0


async def test_kill_9_mid_call_returns_the_reservation_after_its_lease(
    spawn_server: SpawnServer, redis: RedisServer, env: dict[str, str], three: list[ServeProcess]
) -> None:
    victim = spawn_server(config=_config(redis.url, token_delay_ms=200), env=env)
    await _set_budget(three[0].target, "victim-job", 10**12)
    calls = [asyncio.ensure_future(_generate(victim.target, "victim-job")) for _ in range(5)]
    view = await _job(three[0].target, "victim-job")
    for _ in range(int(WAIT_S / 0.05)):  # bounded: until the victim holds a block
        if view.reserved_nanos > 0:
            break
        await asyncio.sleep(0.05)
        view = await _job(three[0].target, "victim-job")
    assert view.reserved_nanos > 0
    victim.proc.send_signal(signal.SIGKILL)
    assert victim.wait_exit() == -signal.SIGKILL
    await asyncio.gather(*calls)  # they fail with the process
    after = await _reserved_back_to_zero(three[1].target, "victim-job")
    assert after.reserved_nanos == 0  # the truth: nothing in flight anywhere
    assert after.cost_nanos == view.cost_nanos  # nothing settled by the dead calls


def _submit(target: str, n: int, gated: bool = False) -> str:
    with grpc.insecure_channel(target) as channel:
        stub = task_pb2_grpc.TaskServiceStub(channel)
        req = tpb.SubmitTaskRequest(
            kind="shared.work", payload_json=json.dumps({"n": n, "gated": gated})
        )
        r: tpb.SubmitTaskResponse = stub.SubmitTask(req, timeout=10)
        return r.task.task_id


def _wait_task(target: str, task_id: str) -> Any:
    with grpc.insecure_channel(target) as channel:
        stub = task_pb2_grpc.TaskServiceStub(channel)
        return stub.GetTask(
            tpb.GetTaskRequest(task_id=task_id, wait_ms=int(WAIT_S * 1e3)), timeout=WAIT_S + 5
        ).task


def test_servers_share_one_task_queue_each_task_runs_once(
    three: list[ServeProcess], env: dict[str, str]
) -> None:
    ids = [_submit(three[i % 2].target, n) for i, n in enumerate(range(30))]
    tasks = [_wait_task(three[2].target, t) for t in ids]
    assert all(t.status == tpb.TASK_STATUS_SUCCEEDED and t.attempts == 1 for t in tasks)
    ends = [t for what, t, _ in _lines(env["SHARED_LOG"]) if what == "end"]
    assert sorted(t for t in ends if t in set(ids)) == sorted(ids)  # each ran exactly once


def test_a_killed_servers_running_task_is_finished_by_another(
    spawn_server: SpawnServer,
    redis: RedisServer,
    env: dict[str, str],
    three: list[ServeProcess],
) -> None:
    victim = spawn_server(config=_config(redis.url), env=env)
    # Only the victim takes work until it holds the task: the others' pools are paused.
    for s in three:
        with grpc.insecure_channel(s.target) as channel:
            task_pb2_grpc.TaskServiceStub(channel).ScalePool(
                tpb.ScalePoolRequest(pool="shared", workers=0), timeout=10
            )
    try:
        task_id = _submit(victim.target, 999, gated=True)
        started: list[list[str]] = []
        deadline = time.monotonic() + WAIT_S
        while not started:  # bounded
            assert time.monotonic() < deadline, "the victim never started the task"
            started = [ln for ln in _lines(env["SHARED_LOG"]) if ln[:2] == ["start", task_id]]
            time.sleep(0.02)
        assert started[0][2] == str(victim.proc.pid)
        victim.proc.send_signal(signal.SIGKILL)
        assert victim.wait_exit() == -signal.SIGKILL
    finally:
        for s in three:
            with grpc.insecure_channel(s.target) as channel:
                task_pb2_grpc.TaskServiceStub(channel).ScalePool(
                    tpb.ScalePoolRequest(pool="shared", workers=1), timeout=10
                )
    Path(env["SHARED_GATE"]).touch()
    task = _wait_task(three[0].target, task_id)
    assert task.status == tpb.TASK_STATUS_SUCCEEDED and task.attempts == 2
    runs = [ln for ln in _lines(env["SHARED_LOG"]) if ln[1] == task_id]
    ends = [ln for ln in runs if ln[0] == "end"]
    assert len(ends) == 1 and ends[0][2] != str(victim.proc.pid)


async def test_redis_down_fails_closed_then_recovers_by_itself(
    spawn_server: SpawnServer, env: dict[str, str]
) -> None:
    with RedisServer.start() as own:  # its own server: this test stops it
        server = spawn_server(config=_config(own.url, prefix="outage"), env=env)
        try:
            await _set_budget(server.target, "outage-job", 10**12)
            assert (await _generate(server.target, "outage-job"))[0] is grpc.StatusCode.OK
            own.stop(save=True)
            outcome = (grpc.StatusCode.OK, 0, "")
            for _ in range(int(WAIT_S / 0.1)):  # bounded: until its block needs Redis
                outcome = await _generate(server.target, "outage-job-2")
                if outcome[0] is not grpc.StatusCode.OK:
                    break
                await asyncio.sleep(0.1)
            code, _, details = outcome
            assert code is grpc.StatusCode.UNAVAILABLE
            assert "Redis" in details
            own.resume()
            for _ in range(int(WAIT_S / 0.1)):  # bounded: no restart, it reconnects
                outcome = await _generate(server.target, "outage-job")
                if outcome[0] is grpc.StatusCode.OK:
                    break
                await asyncio.sleep(0.1)
            assert outcome[0] is grpc.StatusCode.OK, outcome
            view = await _job(server.target, "outage-job")
            assert view.budget_nanos == 10**12  # the data came back with the server
        finally:
            server.stop()
