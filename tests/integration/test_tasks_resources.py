"""Task pools backed by resources, on the local backend through a real server: a pool's
``resource.execute`` tasks run inside the pool's resources, a queue that stays long scales the
pool's resources up to ``max_resources`` and no further, idle resources are released afterwards,
and nothing is left behind (the ``local_owner`` fixture checks for processes)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from test_infra_support import POLL_S, WAIT_S, S, stub

from aurea import testing
from aurea.config import Settings
from aurea.testing import running_server
from aurea.v1 import infrastructure_pb2 as pb
from aurea.v1 import infrastructure_pb2_grpc as pbg
from aurea.v1 import task_pb2, task_pb2_grpc

pytestmark = pytest.mark.integration
pytest_plugins = ["test_infra_support"]  # its fixtures: owner, local_owner

CHECK_S = 0.05  # the autoscaler's interval here: small, so the tests need few seconds


def _settings(tmp: Path, owner: str, pools: list[str], resource_pools: dict[str, Any]) -> Settings:
    return testing.test_settings(
        {
            "infra": {
                "store": "sqlite",
                "sqlite_path": str(tmp / "aurea.db"),
                "local_root": str(tmp / "resources"),
                "owner": owner,
            },
            "tasks": {"pools": pools, "resource_pools": resource_pools},
        }
    )


async def _running(st: pbg.InfrastructureServiceStub) -> list[pb.Resource]:
    page = await st.ListResources(
        pb.ListResourcesRequest(statuses=[S.RESOURCE_STATUS_RUNNING], page_size=1000)
    )
    return list(page.resources)


async def _until_running_count(st: pbg.InfrastructureServiceStub, n: int) -> list[pb.Resource]:
    """Poll (bounded) until exactly ``n`` resources run."""
    got: list[pb.Resource] = []
    for _ in range(int(WAIT_S / POLL_S)):
        got = await _running(st)
        if len(got) == n:
            return got
        await asyncio.sleep(POLL_S)
    raise AssertionError(f"{len(got)} resources running, wanted {n}")


async def _submit(tasks: task_pb2_grpc.TaskServiceStub, pool: str, command: list[str]) -> str:
    req = task_pb2.SubmitTaskRequest(
        kind="resource.execute", pool=pool, payload_json=json.dumps({"command": command})
    )
    return (await tasks.SubmitTask(req, timeout=10)).task.task_id


async def _done(tasks: task_pb2_grpc.TaskServiceStub, task_id: str) -> dict[str, Any]:
    req = task_pb2.GetTaskRequest(task_id=task_id, wait_ms=20_000)
    done = (await tasks.GetTask(req, timeout=30)).task
    assert done.status == task_pb2.TASK_STATUS_SUCCEEDED, done.error_message
    return json_format.MessageToDict(done.result)


async def test_tasks_of_a_resource_backed_pool_run_in_its_resources(
    tmp_path: Path, local_owner: str
) -> None:
    backed = {
        "cpu_millis": 100,
        "max_resources": 2,
        "idle_release_s": 0.2,
        "check_every_s": CHECK_S,
    }
    settings = _settings(tmp_path, local_owner, ["general=1", "res=3"], {"res": backed})
    async with running_server(settings) as rs:
        st = stub(rs.channel)
        tasks = task_pb2_grpc.TaskServiceStub(rs.channel)
        most = 0

        async def sample() -> None:
            nonlocal most
            while True:
                most = max(most, len(await _running(st)))
                await asyncio.sleep(POLL_S)

        sampler = asyncio.create_task(sample())
        script = 'echo "$AUREA_POOL"; pwd; sleep 0.2'
        ids = [await _submit(tasks, "res", ["sh", "-c", script]) for _ in range(6)]
        results = [await _done(tasks, i) for i in ids]
        sampler.cancel()
        assert 1 <= most <= 2  # three workers, but never more than max_resources at once
        root = f"{tmp_path / 'resources'}/"
        for r in results:
            pool, cwd = r["stdout"].split("\n")[:2]
            assert pool == "res" and r["exit_code"] == 0
            assert cwd.startswith(root)  # the command ran in a resource

        # A task of a pool not backed by resources must name one.
        req = task_pb2.SubmitTaskRequest(
            kind="resource.execute", pool="general", payload_json='{"command": ["true"]}'
        )
        task_id = (await tasks.SubmitTask(req, timeout=10)).task.task_id
        get = task_pb2.GetTaskRequest(task_id=task_id, wait_ms=20_000)
        failed = (await tasks.GetTask(get, timeout=30)).task
        assert failed.status == task_pb2.TASK_STATUS_FAILED
        assert "not backed by resources" in failed.error_message

        # Idle resources are released.
        await _until_running_count(st, 0)


async def test_a_long_queue_scales_resources_to_the_cap_and_idle_ones_go(
    tmp_path: Path, local_owner: str
) -> None:
    backed = {
        "cpu_millis": 100,
        "autoscale": True,
        "scale_up_queue": 1,
        "max_resources": 3,
        "idle_release_s": 0.2,
        "check_every_s": CHECK_S,
    }
    # No workers yet: the queue stays long, so only the autoscaler adds resources.
    settings = _settings(tmp_path, local_owner, ["general=1", "burst=0"], {"burst": backed})
    async with running_server(settings) as rs:
        st = stub(rs.channel)
        tasks = task_pb2_grpc.TaskServiceStub(rs.channel)
        ids = [await _submit(tasks, "burst", ["sh", "-c", "pwd"]) for _ in range(8)]
        scaled = {r.resource_id for r in await _until_running_count(st, 3)}
        for _ in range(10):  # many more checks: never beyond the cap, none released
            await asyncio.sleep(CHECK_S)
            assert {r.resource_id for r in await _running(st)} == scaled

        await tasks.ScalePool(task_pb2.ScalePoolRequest(pool="burst", workers=3), timeout=10)
        root = f"{tmp_path / 'resources'}/"
        for task_id in ids:
            result = await _done(tasks, task_id)
            assert result["stdout"].startswith(root)  # it ran in a resource
            assert len(await _running(st)) <= 3
        await _until_running_count(st, 0)
