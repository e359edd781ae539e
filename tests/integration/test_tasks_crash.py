"""Acceptance: ``kill -9`` of ``aurea serve`` with tasks queued and running, then a restart on
the same SQLite file: nothing accepted is lost, tasks that were running run again (or fail, per
their retry policy), and resubmitting with the same idempotency keys creates nothing twice.
Executions are counted in a file the task kinds append to, which survives the kill."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from aurea.v1 import task_pb2 as pb
from aurea.v1 import task_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

N = 12
WAIT_S = 60.0  # a bound on each wait, never a performance claim

KINDS = '''
"""Task kinds for the crash test: each run appends "start"/"end" lines to a file."""
import asyncio, os
from aurea.tasks import task

def _log(line):
    with open(os.environ["CRASH_LOG"], "a") as f:
        f.write(line + "\\n")

async def _gated(payload, ctx):
    _log(f"start {ctx.task_id} {ctx.attempt}")
    for _ in range(12000):  # bounded: 2 minutes of 10 ms steps
        if os.path.exists(os.environ["CRASH_GATE"]):
            break
        await asyncio.sleep(0.01)
    _log(f"end {ctx.task_id} {ctx.attempt}")
    return payload["n"]

task("crash.work", pool="crash", retries=2, backoff_s=0.05, backoff_max_s=0.1)(_gated)
task("crash.once", pool="once")(_gated)
'''


def config(tmp: Path) -> str:
    return f"""
[ledger]
store = "memory"
[routing]
stats_store = "memory"
[tasks]
store = "sqlite"
sqlite_path = "{tmp / "tasks.db"}"
pools = ["crash=2", "once=1"]
modules = ["crashkinds"]
lease_s = 1.0
poll_interval_s = 0.1
cpu_threshold_percent = 100
"""


def lines(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def wait_for(cond: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_kill_9_with_tasks_queued_and_running_loses_nothing_and_dedups(
    spawn_server: Callable[..., Any], tmp_path: Path
) -> None:
    (tmp_path / "crashkinds.py").write_text(KINDS)
    log, gate = tmp_path / "runs.log", tmp_path / "release"
    env = {
        "PYTHONPATH": str(tmp_path),
        "AUREA_HOME": str(tmp_path),
        "CRASH_LOG": str(log),
        "CRASH_GATE": str(gate),
    }
    first = spawn_server(config=config(tmp_path), env=env)

    def submit(stub: Any, n: int, kind: str = "crash.work") -> pb.SubmitTaskResponse:
        req = pb.SubmitTaskRequest(kind=kind, payload_json=json.dumps({"n": n}))
        req.idempotency_key = f"key-{kind}-{n}"
        r: pb.SubmitTaskResponse = stub.SubmitTask(req, timeout=10)
        return r

    with grpc.insecure_channel(first.target) as channel:
        stub = task_pb2_grpc.TaskServiceStub(channel)
        accepted = {n: submit(stub, n).task.task_id for n in range(N)}
        once = submit(stub, 0, "crash.once").task.task_id
        # Two crash.work attempts and the crash.once one are running, the rest queued.
        wait_for(lambda: len(lines(log)) == 3, "three tasks to start")
    first.proc.send_signal(signal.SIGKILL)
    assert first.wait_exit() == -signal.SIGKILL
    running_at_kill = {t for _, t, _ in lines(log)}
    assert once in running_at_kill and len(running_at_kill) == 3

    second = spawn_server(config=config(tmp_path), env=env)
    with grpc.insecure_channel(second.target) as channel:
        stub = task_pb2_grpc.TaskServiceStub(channel)
        for n, task_id in accepted.items():  # a client retrying after the crash
            again = submit(stub, n)
            assert again.deduplicated and again.task.task_id == task_id
        gate.touch()
        results = {}
        for task_id in [*accepted.values(), once]:
            r = stub.GetTask(
                pb.GetTaskRequest(task_id=task_id, wait_ms=int(WAIT_S * 1e3)), timeout=WAIT_S + 5
            )
            results[task_id] = r.task
        listed = stub.ListTasks(pb.ListTasksRequest(page_size=1000), timeout=10).tasks
    second.stop()

    # Nothing accepted was lost, nothing was created twice.
    assert len(listed) == N + 1
    for task_id in accepted.values():
        t = results[task_id]
        assert t.status == pb.TASK_STATUS_SUCCEEDED, (t.error_reason, t.error_message)
        assert t.attempts == (2 if task_id in running_at_kill else 1)
    # crash.once has no retries: its interrupted attempt ends it, as its policy says.
    assert (results[once].status, results[once].error_reason) == (
        pb.TASK_STATUS_FAILED,
        "LEASE_EXPIRED",
    )
    # Executions, counted outside the server: every task finished exactly once; only the
    # attempts the kill interrupted started twice.
    events = lines(log)
    starts = Counter(t for what, t, _ in events if what == "start")
    ends = Counter(t for what, t, _ in events if what == "end")
    assert ends == Counter(accepted.values())
    rerun = running_at_kill - {once}
    assert starts == Counter({**Counter(accepted.values()), **{t: 2 for t in rerun}, once: 1})
    assert os.path.exists(tmp_path / "tasks.db")
