"""InfrastructureService on the docker backend against a real Docker Engine API (podman's
service, set up by scripts/podman-setup.sh; DOCKER_HOST or its default socket). What Aurea did is
checked at the engine itself: limits by inspecting the container, leftovers by listing the
containers that carry the test's owner label (the ``engine`` fixture removes any and fails)."""

from __future__ import annotations

import asyncio
import io
import tarfile
from pathlib import Path
from typing import Any

import grpc
import pytest
from test_infra_support import (
    B,
    S,
    infra_settings,
    owned_containers,
    provision,
    read_rest,
    run,
    stub,
    wait_status,
)

from aurea.testing import running_server
from aurea.v1 import infrastructure_pb2 as pb

pytestmark = pytest.mark.integration
pytest_plugins = ["test_infra_support"]  # its fixtures: owner, engine

DOCKER = B.COMPUTE_BACKEND_DOCKER


def settings(tmp: Path, owner: str, engine: Any, **infra: Any) -> Any:
    return infra_settings(
        tmp,
        owner,
        backends=["docker"],
        docker_host=engine.test_url,
        docker_network="none",
        **infra,
    )


def spec(engine: Any, **kw: Any) -> pb.ResourceSpec:
    return pb.ResourceSpec(image=engine.test_image, **kw)


async def test_limits_are_applied_and_commands_stream(
    tmp_path: Path, owner: str, engine: Any
) -> None:
    async with running_server(settings(tmp_path, owner, engine)) as rs:
        st = stub(rs.channel)
        r = await provision(
            st,
            DOCKER,
            spec(
                engine, cpu_millis=500, memory_mib=64, env={"GREETING": "hi"}, labels={"team": "a"}
            ),
        )
        assert r.status == S.RESOURCE_STATUS_RUNNING, r.status_message
        info = await engine.containers.container(r.backend_ids[0]).show()
        assert info["HostConfig"]["NanoCpus"] == 500_000_000
        assert info["HostConfig"]["Memory"] == 64 << 20
        labels = info["Config"]["Labels"]
        assert labels["aurea.owner"] == owner and labels["aurea.resource"] == r.resource_id
        assert labels["team"] == "a"
        assert info["State"]["Running"]
        # The kernel holds the container to it, too.
        limit = await run(
            st,
            r.resource_id,
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || "
            "cat /sys/fs/cgroup/memory.max",
        )
        assert limit.stdout.strip() == str(64 << 20).encode()

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
        assert out.exit is not None and out.exit.exit_code == 3 and not out.exit.timed_out
        assert out.order[-1] == "exit"

        missing = await run(st, r.resource_id, "no-such-program-xyz")
        assert missing.exit is not None and missing.exit.exit_code in (126, 127)

        # Output arrives while the command runs: the second line waits for a file that a
        # second command creates only after the first line was received.
        call = st.Execute(
            pb.ExecuteRequest(
                resource_id=r.resource_id,
                command=[
                    "sh",
                    "-c",
                    "echo first; while [ ! -e /tmp/gate ]; do sleep 0.05; done; echo second",
                ],
            ),
            timeout=30,
        )
        first = await call.read()
        assert first.stdout_chunk == b"first\n"
        await run(st, r.resource_id, "touch", "/tmp/gate")
        rest = await read_rest(call)
        assert b"".join(m.stdout_chunk for m in rest) == b"second\n"
        assert rest[-1].exit.exit_code == 0

        stats = await st.GetStats(pb.GetStatsRequest())
        assert stats.containers_created == 1 and stats.executions == 5

        await st.Release(pb.ReleaseRequest(resource_id=r.resource_id))
        await wait_status(st, r.resource_id, S.RESOURCE_STATUS_RELEASED)
        assert await owned_containers(engine, owner) == []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await run(st, r.resource_id, "true")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def _sleepers(st: Any, rid: str) -> list[str]:
    """The `sleep 60` processes in the container."""
    ps = await run(st, rid, "ps", "-o", "pid,args")
    return [line for line in ps.stdout.decode().splitlines() if "sleep 60" in line]


async def test_timeout_deadline_and_cancel_kill_the_command(
    tmp_path: Path, owner: str, engine: Any
) -> None:
    async with running_server(settings(tmp_path, owner, engine)) as rs:
        st = stub(rs.channel)
        r = await provision(st, DOCKER, spec(engine))
        out = await run(st, r.resource_id, "sleep", "60", timeout_ms=300)
        assert out.exit is not None and out.exit.timed_out and out.exit.exit_code == -1
        assert await _sleepers(st, r.resource_id) == []

        with pytest.raises(grpc.aio.AioRpcError) as err:
            await run(st, r.resource_id, "sleep", "60", deadline_s=0.5)
        assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED

        call = st.Execute(
            pb.ExecuteRequest(resource_id=r.resource_id, command=["sh", "-c", "echo up; sleep 60"]),
            timeout=30,
        )
        assert (await call.read()).stdout_chunk == b"up\n"
        call.cancel()
        for _ in range(200):
            if not await _sleepers(st, r.resource_id):
                break
            await asyncio.sleep(0.05)
        assert await _sleepers(st, r.resource_id) == []
        await st.Release(pb.ReleaseRequest(resource_id=r.resource_id))
        await wait_status(st, r.resource_id, S.RESOURCE_STATUS_RELEASED)


async def test_scale_cleanup_release(tmp_path: Path, owner: str, engine: Any) -> None:
    async with running_server(settings(tmp_path, owner, engine)) as rs:
        st = stub(rs.channel)
        r = await provision(st, DOCKER, spec(engine, cpu_millis=100, memory_mib=32))
        scaled = (await st.Scale(pb.ScaleRequest(resource_id=r.resource_id, replicas=3))).resource
        assert scaled.replicas == 3
        at_engine = await owned_containers(engine, owner)
        assert sorted(c["Id"] for c in at_engine) == sorted(scaled.backend_ids)
        for c in at_engine:
            info = await engine.containers.container(c["Id"]).show()
            assert info["HostConfig"]["NanoCpus"] == 100_000_000
        out = await run(st, r.resource_id, "hostname", replica=2)
        assert out.exit is not None and out.exit.exit_code == 0

        down = (await st.Scale(pb.ScaleRequest(resource_id=r.resource_id, replicas=1))).resource
        assert list(down.backend_ids) == [scaled.backend_ids[0]]
        assert [c["Id"] for c in await owned_containers(engine, owner)] == [scaled.backend_ids[0]]

        await asyncio.sleep(0.01)
        cleaned = await st.Cleanup(pb.CleanupRequest(idle_ms=1, backend=DOCKER))
        assert list(cleaned.released_resource_ids) == [r.resource_id]
        await wait_status(st, r.resource_id, S.RESOURCE_STATUS_RELEASED)
        assert await owned_containers(engine, owner) == []
        stats = await st.GetStats(pb.GetStatsRequest())
        assert stats.containers_created == 3


async def test_restart_readopts_and_releases_orphans(
    tmp_path: Path, owner: str, engine: Any
) -> None:
    cfg = settings(tmp_path, owner, engine)
    async with running_server(cfg) as rs:
        kept = await provision(stub(rs.channel), DOCKER, spec(engine))
    orphan = await engine.containers.create(
        {
            "Image": engine.test_image,
            "Entrypoint": ["sleep", "600"],
            "Labels": {"aurea.owner": owner, "aurea.resource": "rdeadbeef0000"},
            "HostConfig": {"NetworkMode": "none"},
        },
        name=f"orphan-{owner}",
    )
    await orphan.start()
    async with running_server(cfg) as rs:
        st = stub(rs.channel)
        r = (await st.GetResource(pb.GetResourceRequest(resource_id=kept.resource_id))).resource
        assert r.status == S.RESOURCE_STATUS_RUNNING
        assert list(r.backend_ids) == list(kept.backend_ids)
        for _ in range(200):
            ids = [c["Id"] for c in await owned_containers(engine, owner)]
            if ids == list(kept.backend_ids):
                break
            await asyncio.sleep(0.05)
        assert ids == list(kept.backend_ids), "the orphan was not released"
        out = await run(st, kept.resource_id, "echo", "still here")
        assert out.stdout == b"still here\n"
        await st.Release(pb.ReleaseRequest(resource_id=kept.resource_id))
        await wait_status(st, kept.resource_id, S.RESOURCE_STATUS_RELEASED)


async def test_bad_input_creates_nothing(tmp_path: Path, owner: str, engine: Any) -> None:
    async with running_server(settings(tmp_path, owner, engine)) as rs:
        st = stub(rs.channel)
        nope = pb.ResourceSpec(image="localhost/nope:1")
        cases = [
            (pb.ProvisionRequest(backend=DOCKER, spec=nope), grpc.StatusCode.NOT_FOUND, "nope"),
            (
                pb.ProvisionRequest(backend=DOCKER, spec=spec(engine, cpu_millis=250_000)),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "cpu_millis",
            ),
            (
                pb.ProvisionRequest(backend=DOCKER, spec=spec(engine, network="no-such-net")),
                grpc.StatusCode.NOT_FOUND,
                "no-such-net",
            ),
            (
                pb.ProvisionRequest(backend=DOCKER, spec=pb.ResourceSpec(template="9000")),
                grpc.StatusCode.INVALID_ARGUMENT,
                "image",
            ),
            (
                pb.ProvisionRequest(backend=B.COMPUTE_BACKEND_LOCAL_PROCESS),
                grpc.StatusCode.FAILED_PRECONDITION,
                "not configured",
            ),
        ]
        for req, code, words in cases:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await st.Provision(req)
            assert err.value.code() == code, err.value.details()
            assert words in (err.value.details() or ""), err.value.details()
            assert await owned_containers(engine, owner) == []
        listed = await st.ListResources(pb.ListResourcesRequest(statuses=list(S.values())[1:]))
        assert list(listed.resources) == []
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await st.GetResource(pb.GetResourceRequest(resource_id="rnope"))
        assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_engine_down_is_unavailable(tmp_path: Path, owner: str) -> None:
    cfg = infra_settings(
        tmp_path, owner, backends=["docker"], docker_host=f"unix://{tmp_path}/no.sock"
    )
    async with running_server(cfg) as rs:
        st = stub(rs.channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await st.Provision(pb.ProvisionRequest(backend=DOCKER, spec=pb.ResourceSpec(image="x")))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "unreachable" in (err.value.details() or "")
        listed = await st.ListResources(pb.ListResourcesRequest())
        assert list(listed.resources) == []


async def test_an_image_without_a_shell_fails_and_leaves_nothing(
    tmp_path: Path, owner: str, engine: Any
) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("hello.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    image = f"localhost/aurea-noshell-{owner}"
    params = {"fromSrc": "-", "repo": image}  # podman ignores a "tag": it is :latest
    headers = {"Content-Type": "application/x-tar"}
    async with engine._query(
        "images/create", method="POST", params=params, data=buf.getvalue(), headers=headers
    ) as resp:
        await resp.read()
    try:
        async with running_server(settings(tmp_path, owner, engine)) as rs:
            st = stub(rs.channel)
            r = await provision(st, DOCKER, pb.ResourceSpec(image=f"{image}:latest"))
            assert r.status == S.RESOURCE_STATUS_FAILED
            assert "/bin/sh" in r.status_message  # the engine's own words, passed on
            assert await owned_containers(engine, owner) == []
            stats = await st.GetStats(pb.GetStatsRequest())
            assert stats.available_capacity == stats.total_capacity
    finally:
        await engine.images.delete(f"{image}:latest", force=True)
