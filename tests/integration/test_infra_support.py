"""Shared helpers for the InfrastructureService tests (no tests here): settings with a store and
owner of the test's own, polling a resource to a status, collecting an Execute stream, and the
clean-up that removes whatever a test's owner left at the engine, in /proc and in cgroups, even
when the test failed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from aurea import testing
from aurea.config import Settings
from aurea.v1 import infrastructure_pb2 as pb
from aurea.v1 import infrastructure_pb2_grpc as pbg

__test__ = False  # helpers and fixtures only (pytest_plugins of the test_infra_* modules)

LAB_SOCKET = Path("/tmp/lab/podman/podman.sock")  # scripts/podman-setup.sh's default
DEFAULT_IMAGE = "localhost/aurea-busybox:latest"
POLL_S = 0.02
WAIT_S = 30.0  # a bound on how long a backend may take, never a performance claim

S = pb.ResourceStatus
B = pb.ComputeBackend


def new_owner() -> str:
    return "t" + secrets.token_hex(5)


def infra_settings(tmp: Path, owner: str, **infra: Any) -> Settings:
    raw = {
        "store": "sqlite",
        "sqlite_path": str(tmp / "aurea.db"),
        "local_root": str(tmp / "resources"),
        "owner": owner,
        "docker_pull": False,
        **infra,
    }
    return testing.test_settings({"infra": raw})


def stub(channel: grpc.aio.Channel) -> pbg.InfrastructureServiceStub:
    return pbg.InfrastructureServiceStub(channel)


async def wait_status(
    st: pbg.InfrastructureServiceStub, rid: str, *statuses: int, timeout_s: float = WAIT_S
) -> pb.Resource:
    """Poll GetResource until the resource is in one of ``statuses`` (bounded)."""
    last: pb.Resource | None = None
    for _ in range(int(timeout_s / POLL_S)):
        last = (await st.GetResource(pb.GetResourceRequest(resource_id=rid))).resource
        if last.status in statuses:
            return last
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"resource {rid} never reached {statuses}: {last}")


async def provision(
    st: pbg.InfrastructureServiceStub, backend: int, spec: pb.ResourceSpec, replicas: int = 1
) -> pb.Resource:
    r = (
        await st.Provision(pb.ProvisionRequest(backend=backend, spec=spec, replicas=replicas))
    ).resource
    return await wait_status(st, r.resource_id, S.RESOURCE_STATUS_RUNNING, S.RESOURCE_STATUS_FAILED)


@dataclass
class ExecOutput:
    stdout: bytes = b""
    stderr: bytes = b""
    order: list[str] = field(default_factory=list)  # "out" / "err" / "exit", as received
    exit: pb.ExecuteExit | None = None


async def run(
    st: pbg.InfrastructureServiceStub, rid: str, *argv: str, deadline_s: float = WAIT_S, **kw: Any
) -> ExecOutput:
    out = ExecOutput()
    req = pb.ExecuteRequest(resource_id=rid, command=list(argv), **kw)
    call = st.Execute(req, timeout=deadline_s)
    async for m in call:
        kind = m.WhichOneof("event")
        if kind == "stdout_chunk":
            out.stdout += m.stdout_chunk
            out.order.append("out")
        elif kind == "stderr_chunk":
            out.stderr += m.stderr_chunk
            out.order.append("err")
        else:
            out.exit = m.exit
            out.order.append("exit")
    return out


async def read_rest(call: Any) -> list[pb.ExecuteResponse]:
    """The remaining messages of a stream read with ``call.read()`` (grpc forbids mixing)."""
    out = []
    while (m := await call.read()) is not grpc.aio.EOF:
        out.append(m)
    return out


def rpc_fields(err: grpc.aio.AioRpcError) -> list[str]:
    """The field paths of a failed call's BadRequest detail."""
    from google.rpc import error_details_pb2
    from grpc_status import rpc_status

    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    out: list[str] = []
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            out += [v.field for v in bad.field_violations]
    return out


# -- what a test's owner left behind ---------------------------------------------------------


def local_pids(owner: str) -> list[int]:
    """Processes whose environment marks them as this owner's (holders and commands)."""
    out = []
    needle = f"AUREA_OWNER={owner}".encode()
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry.name}/environ", "rb") as f:
                if needle in f.read().split(b"\0"):
                    out.append(int(entry.name))
    return out


def local_cgroups(owner: str) -> list[Path]:
    out: list[Path] = []
    for base in (Path("/sys/fs/cgroup/cpu/aurea"), Path("/sys/fs/cgroup/memory/aurea")):
        with contextlib.suppress(OSError):
            out += [p for p in base.iterdir() if p.is_dir() and p.name.startswith(owner)]
    return out


def sweep_local(owner: str) -> list[int]:
    """Kill what an owner left (returns the pids found) and remove its cgroups."""
    pids = local_pids(owner)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    for d in local_cgroups(owner):
        for _ in range(100):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.01)
    return pids


@pytest.fixture
def owner() -> str:
    return new_owner()


@pytest.fixture
def local_owner(owner: str) -> Any:
    """The test's owner; afterwards, nothing of it may be left (and is removed if it was)."""
    yield owner
    left = sweep_local(owner)
    assert not left, f"processes left behind by {owner}: {left}"


def skip_or_fail(reason: str) -> None:
    """Skip (under AUREA_REQUIRE_ALL the suite's hook turns the skip into a failure)."""
    pytest.skip(reason)


def docker_endpoint() -> str:
    host = os.environ.get("DOCKER_HOST", "")
    if host:
        return host
    if LAB_SOCKET.is_socket():
        return f"unix://{LAB_SOCKET}"
    skip_or_fail(
        "no Docker Engine API: set DOCKER_HOST or run scripts/podman-setup.sh (podman on "
        f"{LAB_SOCKET})"
    )
    raise AssertionError("unreachable")


@pytest_asyncio.fixture
async def engine(owner: str) -> AsyncIterator[Any]:
    """An aiodocker client on the test engine, for looking at what Aurea made. Afterwards every
    container with the test's owner label is removed, and the test fails if there was one."""
    import aiodocker

    url = docker_endpoint()
    client = aiodocker.Docker(url=url)
    try:
        await client.version()
    except Exception as exc:
        await client.close()
        skip_or_fail(f"the Docker engine at {url} does not answer: {exc}")
    image = os.environ.get("AUREA_TEST_IMAGE", DEFAULT_IMAGE)
    try:
        await client.images.inspect(image)
    except aiodocker.DockerError:
        await client.close()
        skip_or_fail(f"the test image {image} is not at {url} (scripts/podman-setup.sh makes it)")
    client.test_image = image  # type: ignore[attr-defined]
    client.test_url = url  # type: ignore[attr-defined]
    try:
        yield client
    finally:
        left = await owned_containers(client, owner)
        for c in left:
            with contextlib.suppress(Exception):
                await client.containers.container(c["Id"]).delete(force=True)
        await client.close()
    assert not left, f"containers left behind by {owner}: {[c['Names'] for c in left]}"


async def owned_containers(client: Any, owner: str) -> list[dict[str, Any]]:
    filters = json.dumps({"label": [f"aurea.owner={owner}"]})
    rows = await client.containers.list(all=True, filters=filters)
    return [c._container for c in rows]
