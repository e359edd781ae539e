"""InfrastructureService on the local backend, through a real server: provision with limits
(checked on the process), execute with streamed output and exit codes, timeouts and cancels
that kill the command, scale, clean-up of idle resources, release, restart with re-adoption and
orphan release. Each test's owner must leave no process or cgroup behind."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format
from test_infra_support import (
    B,
    S,
    infra_settings,
    local_cgroups,
    local_pids,
    provision,
    read_rest,
    rpc_fields,
    run,
    stub,
    wait_status,
)

from aurea.testing import running_server
from aurea.v1 import admin_pb2, admin_pb2_grpc, task_pb2, task_pb2_grpc
from aurea.v1 import infrastructure_pb2 as pb

pytestmark = pytest.mark.integration
pytest_plugins = ["test_infra_support"]  # its fixtures: owner, local_owner


LOCAL = B.COMPUTE_BACKEND_LOCAL_PROCESS


def _limits_of(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/cgroup") as f:
        groups = {line.split(":")[1]: line.split(":")[2].strip() for line in f}
    return groups


async def test_provision_with_limits_execute_and_release(tmp_path: Path, local_owner: str) -> None:
    async with running_server(infra_settings(tmp_path, local_owner)) as rs:
        st = stub(rs.channel)
        spec = pb.ResourceSpec(cpu_millis=500, memory_mib=64, env={"GREETING": "hi"})
        r = await provision(st, LOCAL, spec)
        assert r.status == S.RESOURCE_STATUS_RUNNING, r.status_message
        assert r.spec.env == {"GREETING": ""}  # names only
        pid = int(r.backend_ids[0])
        assert pid in local_pids(local_owner)

        # The limits are really applied: a cgroup where the host lets us, else RLIMIT_AS.
        groups = [p for p in local_cgroups(local_owner) if (p / "cgroup.procs").exists()]
        if groups:
            quota = [p / "cpu.cfs_quota_us" for p in groups if (p / "cpu.cfs_quota_us").exists()]
            mem = [p / "memory.limit_in_bytes" for p in groups]
            mem = [p for p in mem if p.exists()]
            assert quota and quota[0].read_text().strip() == "50000"
            assert mem and int(mem[0].read_text()) == 64 << 20
            cg = _limits_of(pid)
            assert cg.get("cpu", "").endswith(groups[0].name), cg
        else:
            out = await run(st, r.resource_id, "sh", "-c", "ulimit -v")
            assert out.stdout.strip() == str(64 << 10).encode()

        out = await run(
            st,
            r.resource_id,
            "sh",
            "-c",
            'echo "$GREETING $EXTRA"; echo oops >&2; read line; echo "got $line"; exit 3',
            env={"EXTRA": "there"},
            stdin=b"input\n",
        )
        assert out.stdout == b"hi there\ngot input\n"
        assert out.stderr == b"oops\n"
        assert out.order[-1] == "exit" and out.order.count("exit") == 1
        assert out.exit is not None and out.exit.exit_code == 3 and not out.exit.timed_out

        ok = await run(st, r.resource_id, "true")
        assert ok.exit is not None and ok.exit.exit_code == 0 and ok.stdout == b""

        missing = await run(st, r.resource_id, "no-such-program-xyz")
        assert missing.exit is not None and missing.exit.exit_code == 127
        assert b"no-such-program-xyz" in missing.stderr

        stats = await st.GetStats(pb.GetStatsRequest())
        assert stats.executions == 3 and stats.processes_created == 1
        assert stats.available_capacity.cpu_millis == stats.total_capacity.cpu_millis - 500

        released = (await st.Release(pb.ReleaseRequest(resource_id=r.resource_id))).resource
        assert released.status in (S.RESOURCE_STATUS_RELEASING, S.RESOURCE_STATUS_RELEASED)
        await wait_status(st, r.resource_id, S.RESOURCE_STATUS_RELEASED)
        assert local_pids(local_owner) == []
        assert local_cgroups(local_owner) == []
        again = (await st.Release(pb.ReleaseRequest(resource_id=r.resource_id))).resource
        assert again.status == S.RESOURCE_STATUS_RELEASED

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await run(st, r.resource_id, "true")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "released" in (err.value.details() or "")


async def test_output_streams_as_it_is_written(tmp_path: Path, local_owner: str) -> None:
    async with running_server(infra_settings(tmp_path, local_owner)) as rs:
        st = stub(rs.channel)
        r = await provision(st, LOCAL, pb.ResourceSpec())
        gate = tmp_path / "gate"
        script = f"echo first; while [ ! -e {gate} ]; do sleep 0.01; done; echo second"
        call = st.Execute(
            pb.ExecuteRequest(resource_id=r.resource_id, command=["sh", "-c", script]), timeout=30
        )
        first = await call.read()
        # The first line arrived while the command still runs (it waits for the gate).
        assert first.stdout_chunk == b"first\n"
        gate.touch()
        rest = await read_rest(call)
        assert b"".join(m.stdout_chunk for m in rest) == b"second\n"
        assert rest[-1].exit.exit_code == 0
        await st.Release(pb.ReleaseRequest(resource_id=r.resource_id))
        await wait_status(st, r.resource_id, S.RESOURCE_STATUS_RELEASED)


async def test_timeout_deadline_and_cancel_kill_the_command(
    tmp_path: Path, local_owner: str
) -> None:
    async with running_server(infra_settings(tmp_path, local_owner)) as rs:
        st = stub(rs.channel)
        r = await provision(st, LOCAL, pb.ResourceSpec())
        holder = int(r.backend_ids[0])

        out = await run(st, r.resource_id, "sleep", "60", timeout_ms=200)
        assert out.exit is not None and out.exit.timed_out and out.exit.exit_code == -1

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await run(st, r.resource_id, "sleep", "60", deadline_s=0.5)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

        call = st.Execute(
            pb.ExecuteRequest(resource_id=r.resource_id, command=["sh", "-c", "echo up; sleep 60"]),
            timeout=30,
        )
        assert (await call.read()).stdout_chunk == b"up\n"
        call.cancel()
        # Nothing but the holder may remain: the sleeps of all three commands are gone.
        for _ in range(500):
            if local_pids(local_owner) == [holder]:
                break
            await asyncio.sleep(0.01)
        assert local_pids(local_owner) == [holder]
        await st.Release(pb.ReleaseRequest(resource_id=r.resource_id))
        await wait_status(st, r.resource_id, S.RESOURCE_STATUS_RELEASED)


async def test_scale_cleanup_and_stats(tmp_path: Path, local_owner: str) -> None:
    async with running_server(infra_settings(tmp_path, local_owner)) as rs:
        st = stub(rs.channel)
        r = await provision(st, LOCAL, pb.ResourceSpec(cpu_millis=100, memory_mib=32))
        scaled = (await st.Scale(pb.ScaleRequest(resource_id=r.resource_id, replicas=3))).resource
        assert scaled.replicas == 3 and len(set(scaled.backend_ids)) == 3
        assert len(local_pids(local_owner)) == 3
        out = await run(st, r.resource_id, "sh", "-c", "echo $AUREA_REPLICA", replica=2)
        assert out.stdout == b"2\n"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await run(st, r.resource_id, "true", replica=3)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        down = (await st.Scale(pb.ScaleRequest(resource_id=r.resource_id, replicas=1))).resource
        assert list(down.backend_ids) == [scaled.backend_ids[0]]
        assert local_pids(local_owner) == [int(scaled.backend_ids[0])]

        other = await provision(st, LOCAL, pb.ResourceSpec(cpu_millis=100, memory_mib=32))
        dry = await st.Cleanup(pb.CleanupRequest(idle_ms=1, validate_only=True))
        assert set(dry.released_resource_ids) == {r.resource_id, other.resource_id}
        assert (
            await st.GetResource(pb.GetResourceRequest(resource_id=r.resource_id))
        ).resource.status == S.RESOURCE_STATUS_RUNNING

        # A resource with a command in progress is never idle.
        busy = st.Execute(
            pb.ExecuteRequest(
                resource_id=other.resource_id, command=["sh", "-c", "echo x; sleep 30"]
            ),
            timeout=30,
        )
        await busy.read()
        done = await st.Cleanup(pb.CleanupRequest(idle_ms=1))
        assert list(done.released_resource_ids) == [r.resource_id]
        busy.cancel()
        await wait_status(st, r.resource_id, S.RESOURCE_STATUS_RELEASED)
        await asyncio.sleep(0.05)
        done = await st.Cleanup(pb.CleanupRequest(idle_ms=1))
        assert list(done.released_resource_ids) == [other.resource_id]
        await wait_status(st, other.resource_id, S.RESOURCE_STATUS_RELEASED)
        stats = await st.GetStats(pb.GetStatsRequest())
        assert stats.processes_created == 4
        assert stats.available_capacity == stats.total_capacity
        counts = {c.status: c.count for c in stats.status_counts}
        assert counts == {S.RESOURCE_STATUS_RELEASED: 2}
        listed = await st.ListResources(pb.ListResourcesRequest())
        assert list(listed.resources) == []
        listed = await st.ListResources(
            pb.ListResourcesRequest(statuses=[S.RESOURCE_STATUS_RELEASED], page_size=1)
        )
        assert [x.resource_id for x in listed.resources] == [other.resource_id]
        nxt = await st.ListResources(
            pb.ListResourcesRequest(
                statuses=[S.RESOURCE_STATUS_RELEASED],
                page_size=1,
                page_token=listed.next_page_token,
            )
        )
        assert [x.resource_id for x in nxt.resources] == [r.resource_id] and not nxt.next_page_token


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env, start_new_session=True)


async def test_restart_readopts_and_releases_orphans(tmp_path: Path, local_owner: str) -> None:
    settings = infra_settings(tmp_path, local_owner)
    async with running_server(settings) as rs:
        st = stub(rs.channel)
        kept = await provision(st, LOCAL, pb.ResourceSpec(memory_mib=32))
        pid = int(kept.backend_ids[0])
    # Aurea is down; its replica is not.
    assert pid in local_pids(local_owner)
    # A process with this owner's markers that no record knows: an orphan.
    env = {
        "AUREA_OWNER": local_owner,
        "AUREA_RESOURCE_ID": "rdeadbeef0000",
        "AUREA_REPLICA": "0",
        "AUREA_ROLE": "holder",
        "PATH": os.environ["PATH"],
    }
    orphan = _spawn(["sleep", "60"], env)
    try:
        async with running_server(settings) as rs:
            st = stub(rs.channel)
            r = (await st.GetResource(pb.GetResourceRequest(resource_id=kept.resource_id))).resource
            assert r.status == S.RESOURCE_STATUS_RUNNING and int(r.backend_ids[0]) == pid
            for _ in range(500):
                if orphan.poll() is not None:
                    break
                await asyncio.sleep(0.01)
            assert orphan.poll() is not None, "the orphan was not released"
            out = await run(st, kept.resource_id, "echo", "still here")
            assert out.stdout == b"still here\n"
            await st.Release(pb.ReleaseRequest(resource_id=kept.resource_id))
            await wait_status(st, kept.resource_id, S.RESOURCE_STATUS_RELEASED)
    finally:
        if orphan.poll() is None:
            orphan.kill()
        orphan.wait()


async def test_a_replica_gone_while_down_is_failed_at_start(
    tmp_path: Path, local_owner: str
) -> None:
    settings = infra_settings(tmp_path, local_owner)
    async with running_server(settings) as rs:
        r = await provision(stub(rs.channel), LOCAL, pb.ResourceSpec())
    os.kill(int(r.backend_ids[0]), 9)
    async with running_server(settings) as rs:
        st = stub(rs.channel)
        failed = await wait_status(st, r.resource_id, S.RESOURCE_STATUS_FAILED)
        assert "gone" in failed.status_message


@pytest.mark.parametrize(
    ("request_", "code", "field"),
    [
        (pb.ProvisionRequest(), grpc.StatusCode.INVALID_ARGUMENT, "backend"),
        (
            pb.ProvisionRequest(backend=LOCAL, spec=pb.ResourceSpec(cpu_millis=256_000)),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "",
        ),
        (
            pb.ProvisionRequest(backend=LOCAL, spec=pb.ResourceSpec(gpu_count=1)),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "",
        ),
        (
            pb.ProvisionRequest(backend=B.COMPUTE_BACKEND_DOCKER, spec=pb.ResourceSpec(image="x")),
            grpc.StatusCode.FAILED_PRECONDITION,
            "",
        ),
        (
            pb.ProvisionRequest(backend=LOCAL, spec=pb.ResourceSpec(image="x")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "spec.image",
        ),
        (
            pb.ProvisionRequest(backend=LOCAL, spec=pb.ResourceSpec(labels={"aurea.x": "1"})),
            grpc.StatusCode.INVALID_ARGUMENT,
            "spec.labels[aurea.x]",
        ),
        (
            pb.ProvisionRequest(backend=LOCAL, replicas=65),
            grpc.StatusCode.INVALID_ARGUMENT,
            "replicas",
        ),
    ],
)
async def test_bad_provision_requests_create_nothing(
    tmp_path: Path,
    local_owner: str,
    request_: pb.ProvisionRequest,
    code: grpc.StatusCode,
    field: str,
) -> None:
    async with running_server(infra_settings(tmp_path, local_owner)) as rs:
        st = stub(rs.channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await st.Provision(request_)
        assert err.value.code() == code, err.value.details()
        assert err.value.details()
        if field:
            assert field in rpc_fields(err.value)
        listed = await st.ListResources(pb.ListResourcesRequest(statuses=list(S.values())[1:]))
        assert list(listed.resources) == []
        assert local_pids(local_owner) == []
        assert not (tmp_path / "resources").exists() or not any((tmp_path / "resources").iterdir())


async def test_unknown_resource_and_bad_calls(tmp_path: Path, local_owner: str) -> None:
    async with running_server(infra_settings(tmp_path, local_owner, max_resources=1)) as rs:
        st = stub(rs.channel)
        for call in (
            st.GetResource(pb.GetResourceRequest(resource_id="rnope")),
            st.Release(pb.ReleaseRequest(resource_id="rnope")),
            st.Scale(pb.ScaleRequest(resource_id="rnope", replicas=2)),
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            assert err.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await run(st, "rnope", "true")
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        for bad in (
            pb.CleanupRequest(idle_ms=0),
            pb.CleanupRequest(idle_ms=1, backend=99),  # type: ignore[arg-type]
        ):
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await st.Cleanup(bad)
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await st.ListResources(pb.ListResourcesRequest(page_token="garbage"))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        r = await provision(st, LOCAL, pb.ResourceSpec(), replicas=1)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await st.Provision(pb.ProvisionRequest(backend=LOCAL))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "max_resources" in (err.value.details() or "")
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await run(st, r.resource_id)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        await st.Release(pb.ReleaseRequest(resource_id=r.resource_id))
        await wait_status(st, r.resource_id, S.RESOURCE_STATUS_RELEASED)


async def test_request_id_makes_provision_retries_safe(tmp_path: Path, local_owner: str) -> None:
    async with running_server(infra_settings(tmp_path, local_owner)) as rs:
        st = stub(rs.channel)
        req = pb.ProvisionRequest(backend=LOCAL, request_id="retry-1")
        first = (await st.Provision(req)).resource
        second = (await st.Provision(req)).resource
        assert first.resource_id == second.resource_id
        await wait_status(st, first.resource_id, S.RESOURCE_STATUS_RUNNING)
        assert len(local_pids(local_owner)) == 1
        await st.Release(pb.ReleaseRequest(resource_id=first.resource_id))
        await wait_status(st, first.resource_id, S.RESOURCE_STATUS_RELEASED)


async def test_resource_changes_reach_watch_events(tmp_path: Path, local_owner: str) -> None:
    async with running_server(infra_settings(tmp_path, local_owner)) as rs:
        st = stub(rs.channel)
        admin = admin_pb2_grpc.AdminServiceStub(rs.channel)
        watch = admin.WatchEvents(admin_pb2.WatchEventsRequest(types=["resource."]), timeout=30)
        await asyncio.sleep(0.1)  # the subscription is open before anything happens
        r = await provision(st, LOCAL, pb.ResourceSpec())
        await st.Release(pb.ReleaseRequest(resource_id=r.resource_id))
        await wait_status(st, r.resource_id, S.RESOURCE_STATUS_RELEASED)
        seen = []
        while len(seen) < 4:
            m = await watch.read()
            seen.append((m.event.type, m.event.attributes["resource_id"]))
        watch.cancel()
        assert seen == [
            ("resource.provisioning", r.resource_id),
            ("resource.running", r.resource_id),
            ("resource.releasing", r.resource_id),
            ("resource.released", r.resource_id),
        ]


async def test_a_task_runs_a_command_in_a_resource(tmp_path: Path, local_owner: str) -> None:
    async with running_server(infra_settings(tmp_path, local_owner)) as rs:
        st = stub(rs.channel)
        tasks = task_pb2_grpc.TaskServiceStub(rs.channel)
        r = await provision(st, LOCAL, pb.ResourceSpec())
        payload = {
            "resource_id": r.resource_id,
            "command": ["sh", "-c", 'read x; echo "task $x"; echo warn >&2; exit 2'],
            "stdin": "input\n",
        }
        req = task_pb2.SubmitTaskRequest(kind="resource.execute", payload_json=json.dumps(payload))
        submitted = (await tasks.SubmitTask(req, timeout=10)).task
        done = (
            await tasks.GetTask(
                task_pb2.GetTaskRequest(task_id=submitted.task_id, wait_ms=20_000), timeout=30
            )
        ).task
        assert done.status == task_pb2.TASK_STATUS_SUCCEEDED, done.error_message
        result = json_format.MessageToDict(done.result)
        assert result["exit_code"] == 2 and result["stdout"] == "task input\n"
        assert result["stderr"] == "warn\n"
        assert (await st.GetStats(pb.GetStatsRequest())).executions == 1
        await st.Release(pb.ReleaseRequest(resource_id=r.resource_id))
        await wait_status(st, r.resource_id, S.RESOURCE_STATUS_RELEASED)


async def test_interleaved_stdout_and_stderr_arrive_whole(tmp_path: Path, local_owner: str) -> None:
    # Regression: the two streams' readers wrote to the call at the same time, and grpc lost
    # messages (stderr came back empty now and then).
    async with running_server(infra_settings(tmp_path, local_owner)) as rs:
        st = stub(rs.channel)
        r = await provision(st, LOCAL, pb.ResourceSpec())
        script = "i=0; while [ $i -lt 300 ]; do echo o$i; echo e$i >&2; i=$((i+1)); done"
        for _ in range(5):
            out = await run(st, r.resource_id, "sh", "-c", script)
            assert out.stdout == b"".join(b"o%d\n" % i for i in range(300))
            assert out.stderr == b"".join(b"e%d\n" % i for i in range(300))
        await st.Release(pb.ReleaseRequest(resource_id=r.resource_id))
        await wait_status(st, r.resource_id, S.RESOURCE_STATUS_RELEASED)
