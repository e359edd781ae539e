"""TaskService end to end through real gRPC: results, kinds, bad input (a clear status and
nothing created), llm.generate charged to its job in the ledger, budget failures, cancelling a
running inference call, progress and changes on WatchTasks, system events on WatchEvents, the
system view, compute.invoke against a wire-exact fake Lambda, and the ``aurea task`` CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
import pytest_asyncio
from google.protobuf import json_format, struct_pb2

from aurea.tasks import TaskContext, task
from aurea.testing import RunningServer, running_server
from aurea.testing import test_settings as settings_for
from aurea.testing.fakes import FakeLambda
from aurea.v1 import admin_pb2, ledger_pb2
from aurea.v1 import task_pb2 as pb
from tests.conftest import aurea_command, child_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

WAIT_MS = 30_000  # a bound on waits, never a performance claim
MEMORY_STORES = {"ledger": {"store": "memory"}, "routing": {"stats_store": "memory"}}
TERMINAL = (
    pb.TASK_STATUS_SUCCEEDED,
    pb.TASK_STATUS_FAILED,
    pb.TASK_STATUS_CANCELLED,
    pb.TASK_STATUS_TIMED_OUT,
)


def task_settings(**tasks: Any) -> Any:
    raw = {
        **MEMORY_STORES,
        "tasks": {
            "store": "memory",
            "pools": {"llm": 2, "tool": 1, "general": 2, "it": 2},
            "cpu_threshold_percent": 100,
            "poll_interval_s": 0.05,
            **tasks,
        },
    }
    return settings_for(raw)


@task("it.add", pool="it", payload_schema={"type": "object", "required": ["numbers"]})
async def add(payload: dict[str, Any], ctx: TaskContext) -> int:
    """Adds numbers."""
    return sum(payload["numbers"])


STEPS = asyncio.Event()


@task("it.steps", pool="it")
async def steps(payload: dict[str, Any], ctx: TaskContext) -> str:
    """Reports progress in steps, then waits for the test."""
    n = int(payload["n"])
    for i in range(1, n + 1):
        ctx.progress(i / n, f"step {i} of {n}")
    await asyncio.wait_for(STEPS.wait(), 60)
    return "done"


@pytest_asyncio.fixture
async def rs() -> AsyncIterator[RunningServer]:
    async with running_server(task_settings(max_payload_bytes=4096)) as server:
        yield server


async def submit(stubs: Any, kind: str, payload: Any = None, **kw: Any) -> pb.Task:
    req = pb.SubmitTaskRequest(kind=kind, **kw)
    if payload is not None:
        req.payload_json = json.dumps(payload)
    r: pb.SubmitTaskResponse = await stubs.task.SubmitTask(req, timeout=10)
    return r.task


async def finished(stubs: Any, task_id: str) -> pb.Task:
    r: pb.GetTaskResponse = await stubs.task.GetTask(
        pb.GetTaskRequest(task_id=task_id, wait_ms=WAIT_MS), timeout=WAIT_MS / 1e3 + 10
    )
    assert r.task.status in TERMINAL, f"still {pb.TaskStatus.Name(r.task.status)}"
    return r.task


def result_of(t: pb.Task) -> Any:
    return json_format.MessageToDict(t.result)


async def test_a_task_runs_and_its_result_comes_back(
    rs: RunningServer, make_stubs: Callable[..., Any]
) -> None:
    stubs = make_stubs(rs.channel)
    payload = struct_pb2.Struct()
    payload.update({"numbers": [1, 2, 39]})  # Struct numbers are doubles: the handler gets ints
    sub = await stubs.task.SubmitTask(pb.SubmitTaskRequest(kind="it.add", payload=payload))
    t = sub.task
    assert (t.status, t.pool, t.priority, t.max_attempts) == (
        pb.TASK_STATUS_QUEUED,
        "it",
        pb.TASK_PRIORITY_NORMAL,
        1,
    )
    assert t.timeout_ms == 300_000 and t.create_time.seconds > 0 and not sub.deduplicated
    done = await finished(stubs, t.task_id)
    assert (done.status, result_of(done), done.attempts) == (pb.TASK_STATUS_SUCCEEDED, 42, 1)
    assert done.end_time.seconds > 0 and done.payload["numbers"] == payload["numbers"]
    listed = await stubs.task.ListTasks(pb.ListTasksRequest(kind="it.add"))
    assert [x.task_id for x in listed.tasks] == [t.task_id]
    assert not listed.tasks[0].HasField("result")  # BASIC view
    full = await stubs.task.ListTasks(pb.ListTasksRequest(kind="it.add", view=pb.TASK_VIEW_FULL))
    assert result_of(full.tasks[0]) == 42


async def test_task_kinds_show_pool_timeout_retry_policy_and_schema(
    rs: RunningServer, make_stubs: Callable[..., Any]
) -> None:
    stubs = make_stubs(rs.channel)
    kinds = {k.kind: k for k in (await stubs.task.ListTaskKinds(pb.ListTaskKindsRequest())).kinds}
    assert {"llm.generate", "llm.embed", "compute.invoke", "it.add"} <= set(kinds)
    gen = kinds["llm.generate"]
    assert (gen.default_pool, gen.default_max_attempts, gen.default_timeout_ms) == (
        "llm",
        2,
        300_000,
    )
    assert gen.retry_backoff_ms == 1000 and "prompt" in gen.payload_schema["properties"]
    assert kinds["it.add"].description == "Adds numbers."
    page = await stubs.task.ListTaskKinds(pb.ListTaskKindsRequest(page_size=2))
    assert len(page.kinds) == 2 and page.next_page_token
    pools = (await stubs.task.ListPools(pb.ListPoolsRequest())).pools
    assert [(p.name, p.workers) for p in pools] == [
        ("general", 2),
        ("it", 2),
        ("llm", 2),
        ("tool", 1),
    ]


async def test_bad_input_gets_a_clear_status_and_creates_nothing(
    rs: RunningServer, make_stubs: Callable[..., Any], details: Callable[..., Any]
) -> None:
    stubs = make_stubs(rs.channel)
    nan = struct_pb2.Struct()
    nan.update({"numbers": [float("nan")]})
    cases: list[tuple[Any, grpc.StatusCode, str]] = [
        (
            pb.SubmitTaskRequest(kind="no.such.kind"),
            grpc.StatusCode.NOT_FOUND,
            "TASK_KIND_NOT_FOUND",
        ),
        (pb.SubmitTaskRequest(kind=""), grpc.StatusCode.INVALID_ARGUMENT, "kind"),
        (
            pb.SubmitTaskRequest(kind="it.add", payload_json="{not json"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "payload_json",
        ),
        (
            pb.SubmitTaskRequest(kind="it.add", payload_json=json.dumps({"numbers": [1] * 5000})),
            grpc.StatusCode.INVALID_ARGUMENT,
            "payload_json",
        ),
        (
            pb.SubmitTaskRequest(kind="it.add", payload=nan),
            grpc.StatusCode.INVALID_ARGUMENT,
            "payload.numbers[0]",
        ),
        (
            pb.SubmitTaskRequest(kind="it.add", payload_json='{"other": 1}'),
            grpc.StatusCode.INVALID_ARGUMENT,
            "payload.numbers",
        ),
        (
            pb.SubmitTaskRequest(kind="it.add", payload_json='{"numbers": []}', pool="nope"),
            grpc.StatusCode.NOT_FOUND,
            "POOL_NOT_FOUND",
        ),
        (
            pb.SubmitTaskRequest(kind="it.add", payload_json='{"numbers": []}', priority=9),  # type: ignore[arg-type]
            grpc.StatusCode.INVALID_ARGUMENT,
            "priority",
        ),
        (
            pb.SubmitTaskRequest(kind="it.add", payload_json='{"numbers": []}', max_attempts=21),
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_attempts",
        ),
        (
            pb.SubmitTaskRequest(kind="llm.generate", payload_json='{"model": "sim-small"}'),
            grpc.StatusCode.INVALID_ARGUMENT,
            "payload",
        ),
        (
            pb.SubmitTaskRequest(kind="compute.invoke", payload_json='{"backend": "none"}'),
            grpc.StatusCode.INVALID_ARGUMENT,
            "payload.backend",
        ),
    ]
    for req, code, where in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.task.SubmitTask(req, timeout=10)
        d = details(caught.value)
        assert d.code == code, (req, d.message)
        assert where in d.fields or where == d.reason, (req, d.fields, d.reason, d.message)
        assert d.message and len(d.message) < 1100
    for req, code in [
        (pb.ScalePoolRequest(pool="it", workers=-1), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.ScalePoolRequest(pool="it", workers=1025), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.ScalePoolRequest(pool="nope", workers=1), grpc.StatusCode.NOT_FOUND),
        (pb.ScalePoolRequest(pool="", workers=1), grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.task.ScalePool(req, timeout=10)
        assert caught.value.code() == code
    for req, code in [
        (pb.GetTaskRequest(task_id="nope"), grpc.StatusCode.NOT_FOUND),
        (pb.GetTaskRequest(task_id=""), grpc.StatusCode.INVALID_ARGUMENT),
        (pb.GetTaskRequest(task_id="x", wait_ms=-1), grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.task.GetTask(req, timeout=10)
        assert caught.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.task.ListTasks(pb.ListTasksRequest(page_token="bogus"), timeout=10)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (await stubs.task.ListTasks(pb.ListTasksRequest())).tasks == []
    pools = (await stubs.task.ListPools(pb.ListPoolsRequest())).pools
    assert [p.workers for p in pools if p.name == "it"] == [2]  # no scale half-applied


async def test_an_idempotency_key_prevents_a_second_task(
    rs: RunningServer, make_stubs: Callable[..., Any], details: Callable[..., Any]
) -> None:
    stubs = make_stubs(rs.channel)
    req = pb.SubmitTaskRequest(kind="it.add", payload_json='{"numbers": [1]}', idempotency_key="k")
    first = await stubs.task.SubmitTask(req)
    again = await stubs.task.SubmitTask(req)
    assert again.deduplicated and again.task.task_id == first.task.task_id
    req.payload_json = '{"numbers": [2]}'
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stubs.task.SubmitTask(req)
    d = details(caught.value)
    assert (d.code, d.reason) == (grpc.StatusCode.FAILED_PRECONDITION, "IDEMPOTENCY_KEY_REUSED")
    assert len((await stubs.task.ListTasks(pb.ListTasksRequest())).tasks) == 1


async def test_an_llm_generate_task_is_charged_to_its_job(
    rs: RunningServer, make_stubs: Callable[..., Any]
) -> None:
    stubs = make_stubs(rs.channel)
    job = f"job-{os.urandom(4).hex()}"
    t = await submit(stubs, "llm.generate", {"prompt": "say hello", "max_tokens": 12}, job_id=job)
    assert t.pool == "llm" and t.job_id == job
    done = await finished(stubs, t.task_id)
    assert done.status == pb.TASK_STATUS_SUCCEEDED, done.error_message
    r = result_of(done)
    assert r["model"] and r["text"] and r["max_tokens"] == 12
    assert r["input_tokens"] > 0 and 0 < r["output_tokens"] <= 12
    assert r["cost_nanos"] > 0 and r["latency_ms"] > 0
    spent = (await stubs.ledger.GetJob(ledger_pb2.GetJobRequest(job_id=job))).job
    assert (spent.cost_nanos, spent.calls) == (r["cost_nanos"], 1)
    assert (spent.input_tokens, spent.output_tokens) == (r["input_tokens"], r["output_tokens"])


async def test_a_task_whose_job_is_over_budget_fails_with_the_budget_reason(
    rs: RunningServer, make_stubs: Callable[..., Any]
) -> None:
    stubs = make_stubs(rs.channel)
    job = f"poor-{os.urandom(4).hex()}"
    await stubs.ledger.SetBudget(ledger_pb2.SetBudgetRequest(job_id=job, budget_nanos=1))
    events = stubs.admin.WatchEvents(admin_pb2.WatchEventsRequest(types=["budget."]))
    for _ in range(1000):  # bounded: the event watch is open before the call
        if rs.server.events.watchers:
            break
        await asyncio.sleep(0.01)
    t = await submit(stubs, "llm.generate", {"prompt": "say hello"}, job_id=job)
    done = await finished(stubs, t.task_id)
    assert (done.status, done.error_reason) == (pb.TASK_STATUS_FAILED, "BUDGET_EXCEEDED")
    assert done.attempts == 1  # another attempt cannot fix a budget: not retried
    assert job in done.error_message or "budget" in done.error_message.lower()
    async for ev in events:  # the budget stop is a system event too
        assert (ev.event.type, ev.event.attributes["job_id"]) == ("budget.exceeded", job)
        break
    events.cancel()


async def test_cancelling_a_running_llm_task_cancels_its_call(
    make_stubs: Callable[..., Any],
) -> None:
    slow = {"simulated": {"kind": "simulated", "options": {"first_token_delay_ms": 60_000}}}
    settings = settings_for({**MEMORY_STORES, "providers": slow, "tasks": {"store": "memory"}})
    async with running_server(settings) as server:
        stubs = make_stubs(server.channel)
        t = await submit(stubs, "llm.generate", {"prompt": "take your time"})
        for _ in range(500):  # bounded: until the call is in flight
            stats = await stubs.admin.GetProviderStats(admin_pb2.GetProviderStatsRequest())
            if sum(p.requests for p in stats.providers):
                break
            await asyncio.sleep(0.02)
        r = await stubs.task.CancelTask(pb.CancelTaskRequest(task_id=t.task_id), timeout=30)
        assert (r.task.status, r.task.error_reason) == (pb.TASK_STATUS_CANCELLED, "CANCELLED")
        assert r.task.attempts == 1
        stats = await stubs.admin.GetProviderStats(admin_pb2.GetProviderStatsRequest())
        assert sum(p.cancelled for p in stats.providers) == 1  # the attempt ended, cancelled
        again = await stubs.task.CancelTask(pb.CancelTaskRequest(task_id=t.task_id))
        assert again.task.status == pb.TASK_STATUS_CANCELLED  # cancelling again: unchanged


async def test_watches_stream_progress_changes_and_system_events(
    rs: RunningServer, make_stubs: Callable[..., Any]
) -> None:
    stubs = make_stubs(rs.channel)
    STEPS.clear()
    events = stubs.admin.WatchEvents(admin_pb2.WatchEventsRequest(types=["task."]))
    watch = stubs.task.WatchTasks(pb.WatchTasksRequest(kind="it.steps", view=pb.TASK_VIEW_FULL))
    seen: list[pb.WatchTasksResponse] = []

    async def read() -> None:
        async for ev in watch:
            seen.append(ev)
            if ev.WhichOneof("event") == "progress" and ev.progress.progress.fraction == 1.0:
                STEPS.set()
            if ev.WhichOneof("event") == "change" and ev.change.task.status in TERMINAL:
                return

    reader = asyncio.ensure_future(read())
    opened = asyncio.ensure_future(events.initial_metadata())
    for _ in range(1000):  # bounded: both watches are open before the submission
        if rs.server.task_system.hub.watchers and rs.server.events.watchers:
            break
        await asyncio.sleep(0.01)
    await opened
    t = await submit(stubs, "it.steps", {"n": 4})
    await asyncio.wait_for(reader, 60)
    watch.cancel()
    kinds = [ev.WhichOneof("event") for ev in seen]
    assert kinds == ["change", "change"] + ["progress"] * 4 + ["change"]
    fractions = [ev.progress.progress.fraction for ev in seen if ev.HasField("progress")]
    assert fractions == [0.25, 0.5, 0.75, 1.0]
    assert seen[2].progress.progress.message == "step 1 of 4"
    statuses = [
        (ev.change.previous_status, ev.change.task.status) for ev in seen if ev.HasField("change")
    ]
    assert statuses == [
        (pb.TASK_STATUS_UNSPECIFIED, pb.TASK_STATUS_QUEUED),
        (pb.TASK_STATUS_QUEUED, pb.TASK_STATUS_RUNNING),
        (pb.TASK_STATUS_RUNNING, pb.TASK_STATUS_SUCCEEDED),
    ]
    assert seen[-1].change.task.result.string_value == "done"
    types: list[str] = []
    async for ev in events:
        assert ev.event.attributes["task_id"] == t.task_id and ev.event.attributes["pool"] == "it"
        types.append(ev.event.type)
        if len(types) == 3:
            break
    events.cancel()
    assert types == ["task.queued", "task.running", "task.succeeded"]


async def test_the_system_view_shows_host_cpu_memory_and_pools(
    rs: RunningServer, make_stubs: Callable[..., Any]
) -> None:
    stubs = make_stubs(rs.channel)
    await stubs.task.ScalePool(pb.ScalePoolRequest(pool="it", workers=0))
    for _ in range(3):
        await submit(stubs, "it.add", {"numbers": [1]})
    m = await stubs.admin.GetSystemMetrics(admin_pb2.GetSystemMetricsRequest())
    assert 0.0 <= m.host_cpu_percent <= 100.0
    assert m.host_memory_total_bytes >= m.host_memory_available_bytes > 0
    pools = {p.name: p for p in m.pools}
    assert (pools["it"].workers, pools["it"].queued, pools["it"].busy) == (0, 3, 0)
    assert pools["llm"].workers == 2 and pools["it"].queue_capacity == 100_000
    assert "scheduler" in {a.name for a in m.actors}


async def test_scale_pool_needs_the_admin_scope(
    api_keys: tuple[str, str], make_stubs: Callable[..., Any]
) -> None:
    user, admin = api_keys
    keys = f"user:{user},admin:{admin}"
    settings = settings_for({**MEMORY_STORES, "tasks": {"store": "memory"}}, AUREA_API_KEYS=keys)
    async with running_server(settings) as server:
        stubs = make_stubs(server.channel)
        req = pb.ScalePoolRequest(pool="general", workers=3)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stubs.task.ScalePool(req, metadata=[("authorization", f"Bearer {user}")])
        assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
        r = await stubs.task.ScalePool(req, metadata=[("authorization", f"Bearer {admin}")])
        assert r.pool.workers == 3
        listed = await stubs.task.ListPools(
            pb.ListPoolsRequest(), metadata=[("authorization", f"Bearer {user}")]
        )
        assert [p.workers for p in listed.pools if p.name == "general"] == [3]


async def test_compute_invoke_runs_a_payload_on_a_lambda_backend(
    monkeypatch: pytest.MonkeyPatch, make_stubs: Callable[..., Any], details: Callable[..., Any]
) -> None:
    async with FakeLambda() as fake:
        fake.functions["adder"] = lambda event: {"sum": event["a"] + event["b"]}
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", fake.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", fake.secret_key)
        providers = {
            "simulated": {"kind": "simulated", "options": {"token_delay_ms": 1}},
            "fn": {"kind": "lambda", "options": {"function": "adder", "endpoint": fake.base_url}},
        }
        settings = settings_for(
            {**MEMORY_STORES, "providers": providers, "tasks": {"store": "memory"}}
        )
        async with running_server(settings) as server:
            stubs = make_stubs(server.channel)
            t = await submit(stubs, "compute.invoke", {"backend": "fn", "input": {"a": 2, "b": 5}})
            assert t.pool == "tool"
            done = await finished(stubs, t.task_id)
            assert done.status == pb.TASK_STATUS_SUCCEEDED, done.error_message
            assert result_of(done) == {"backend": "fn", "output": {"sum": 7}}
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await submit(stubs, "compute.invoke", {"backend": "simulated"})
            assert details(caught.value).fields == ["payload.backend"]


def test_the_task_cli_submits_waits_lists_gets_watches_and_cancels(
    spawn_server: Callable[..., Any], aurea_cli: Callable[..., Any], tmp_path: Any
) -> None:
    config = (
        '[ledger]\nstore = "memory"\n[routing]\nstats_store = "memory"\n'
        '[tasks]\nstore = "memory"\ncpu_threshold_percent = 100\n'
    )
    srv = spawn_server(config=config, env={"AUREA_HOME": str(tmp_path)})
    target = ["--target", srv.target]
    run = aurea_cli(
        "task", "submit", "llm.generate", "--payload", '{"prompt": "hi"}', "--job", "cli-job",
        "--wait", "30", *target,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["text"]
    listed = aurea_cli("task", "list", "--status", "succeeded", *target)
    assert listed.returncode == 0 and "llm.generate" in listed.stdout
    task_id = listed.stdout.split()[0]
    got = aurea_cli("task", "get", task_id, *target)
    assert got.returncode == 0 and json.loads(got.stdout)["job_id"] == "cli-job"
    watched = aurea_cli("task", "watch", task_id, *target)  # already ended: one line, exit 0
    assert watched.returncode == 0 and "succeeded" in watched.stdout
    cancelled = aurea_cli("task", "cancel", task_id, *target)
    assert cancelled.returncode == 1 and "FAILED_PRECONDITION" in cancelled.stderr
    queued = aurea_cli("task", "submit", "it.nothing", *target)
    assert queued.returncode == 1 and "NOT_FOUND" in queued.stderr
    bad = aurea_cli("task", "submit", "llm.generate", "--payload", "{nope", *target)
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr
    assert "Traceback" not in bad.stderr + queued.stderr + cancelled.stderr


CLI_KINDS = """
import asyncio, os
from aurea.tasks import task

@task("cli.steps", pool="general")
async def steps(payload, ctx):
    ctx.progress(0.5, "half way")
    for _ in range(6000):  # bounded: a minute of 10 ms steps
        if os.path.exists(os.environ["CLI_GATE"]):
            break
        await asyncio.sleep(0.01)
    ctx.progress(1.0, "all done")
    return "ok"
"""


def test_the_task_cli_watch_shows_progress_until_the_task_ends(
    spawn_server: Callable[..., Any], aurea_cli: Callable[..., Any], tmp_path: Any
) -> None:
    (tmp_path / "clikinds.py").write_text(CLI_KINDS)
    gate = tmp_path / "go"
    config = (
        '[ledger]\nstore = "memory"\n[routing]\nstats_store = "memory"\n'
        '[tasks]\nstore = "memory"\ncpu_threshold_percent = 100\nmodules = ["clikinds"]\n'
    )
    env = {"AUREA_HOME": str(tmp_path), "PYTHONPATH": str(tmp_path), "CLI_GATE": str(gate)}
    srv = spawn_server(config=config, env=env)
    target = ["--target", srv.target]
    submitted = aurea_cli("task", "submit", "cli.steps", *target)
    assert submitted.returncode == 0, submitted.stderr
    task_id = submitted.stdout.strip()
    watch = subprocess.Popen(
        [*aurea_command(), "task", "watch", task_id, *target],
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watch.stdout is not None
        first = [watch.stdout.readline() for _ in range(2)]  # current state, then its progress
        assert "running" in first[0] and "50.0% half way" in first[1] and "#" in first[1]
        gate.touch()
        rest, err = watch.communicate(timeout=60)
    finally:
        watch.kill()
        watch.wait()
    assert watch.returncode == 0, err
    assert "100.0% all done" in rest and "succeeded" in rest.splitlines()[-1]
