"""InfrastructureService on the Proxmox backends against a fake Proxmox VE API (HTTPS, API
token, UPID tasks) started by the test: a VM cloned from a template and an LXC container, with
their limits; start, execute through the guest agent, stop and delete; bad input; restart.

The fake serves on this test's event loop, so every proxmoxer call (which blocks) must run on the
backend's thread pool: one made on the loop would deadlock the test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio
from test_infra_support import B, S, infra_settings, provision, run, stub, wait_status

from aurea.testing import running_server
from aurea.testing.fakes.proxmox import FakeProxmox, Guest
from aurea.v1 import infrastructure_pb2 as pb

pytestmark = pytest.mark.integration
pytest_plugins = ["test_infra_support"]  # its fixtures: owner

VM = B.COMPUTE_BACKEND_PROXMOX_VM
LXC = B.COMPUTE_BACKEND_PROXMOX_LXC
CT_TEMPLATE = "local:vztmpl/debian-12-standard_12.2-1_amd64.tar.zst"


@pytest_asyncio.fixture
async def pve(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeProxmox]:
    async with FakeProxmox(task_delay_s=0.05) as fake:
        monkeypatch.setenv("TEST_PVE_TOKEN_ID", fake.token_id)
        monkeypatch.setenv("TEST_PVE_TOKEN_SECRET", fake.token_secret)
        yield fake
        left = [g for g in fake.guests.values() if not g.template]
    assert not left, f"guests left in the fake cluster: {left}"


def settings(tmp: Path, owner: str, pve: FakeProxmox, **infra: Any) -> Any:
    return infra_settings(
        tmp,
        owner,
        backends=["proxmox"],
        proxmox_host=pve.host,
        proxmox_ca_file=pve.ca_file,
        proxmox_token_id_env="TEST_PVE_TOKEN_ID",
        proxmox_token_secret_env="TEST_PVE_TOKEN_SECRET",
        proxmox_poll_s=0.02,
        proxmox_storage="local-lvm",
        **infra,
    )


async def test_vm_from_template_with_limits_exec_and_delete(
    tmp_path: Path, owner: str, pve: FakeProxmox
) -> None:
    async with running_server(settings(tmp_path, owner, pve)) as rs:
        st = stub(rs.channel)
        spec = pb.ResourceSpec(template="debian12-cloud", cpu_millis=1500, memory_mib=2048)
        r = await provision(st, VM, spec)
        assert r.status == S.RESOURCE_STATUS_RUNNING, r.status_message
        guest = pve.guests[int(r.backend_ids[0])]
        assert guest.kind == "qemu" and guest.status == "running" and not guest.template
        assert guest.config["cores"] == "2" and guest.config["memory"] == "2048"
        assert f"aurea-o-{owner}" in guest.config["tags"].split(";")
        assert ("POST", "/api2/json/nodes/pve1/qemu/9000/clone") in pve.requests
        assert any("/tasks/UPID:" in path for _, path in pve.requests)  # tasks were polled

        out = await run(
            st,
            r.resource_id,
            "sh",
            "-c",
            'echo "hi $WHO"; echo oops >&2; exit 4',
            env={"WHO": "vm"},
        )
        assert out.stdout == b"hi vm\n" and out.stderr == b"oops\n"
        assert out.exit is not None and out.exit.exit_code == 4

        timed = await run(st, r.resource_id, "sleep", "30", timeout_ms=300)
        assert timed.exit is not None and timed.exit.timed_out and timed.exit.exit_code == -1

        stats = await st.GetStats(pb.GetStatsRequest())
        assert stats.vms_created == 1 and stats.executions == 2

        await st.Release(pb.ReleaseRequest(resource_id=r.resource_id))
        await wait_status(st, r.resource_id, S.RESOURCE_STATUS_RELEASED)
        assert int(r.backend_ids[0]) not in pve.guests
        vm = f"/api2/json/nodes/pve1/qemu/{r.backend_ids[0]}"
        calls = [(m, p) for m, p in pve.requests if p.startswith(vm)]
        # Started, stopped, then deleted, in that order.
        order = [
            c
            for c in calls
            if c in {("POST", f"{vm}/status/start"), ("POST", f"{vm}/status/stop"), ("DELETE", vm)}
        ]
        assert order == [
            ("POST", f"{vm}/status/start"),
            ("POST", f"{vm}/status/stop"),
            ("DELETE", vm),
        ]


async def test_lxc_container_with_limits(tmp_path: Path, owner: str, pve: FakeProxmox) -> None:
    async with running_server(settings(tmp_path, owner, pve)) as rs:
        st = stub(rs.channel)
        spec = pb.ResourceSpec(template=CT_TEMPLATE, cpu_millis=1000, memory_mib=512, disk_gib=4)
        r = await provision(st, LXC, spec)
        assert r.status == S.RESOURCE_STATUS_RUNNING, r.status_message
        guest = pve.guests[int(r.backend_ids[0])]
        assert guest.kind == "lxc" and guest.status == "running"
        assert guest.config["cores"] == "1" and guest.config["memory"] == "512"
        assert guest.config["rootfs"] == "local-lvm:4"
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await run(st, r.resource_id, "true")
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "LXC" in (err.value.details() or "")
        scaled = (await st.Scale(pb.ScaleRequest(resource_id=r.resource_id, replicas=2))).resource
        assert scaled.replicas == 2 and len({g for g in pve.guests if g != 9000}) == 2
        await st.Release(pb.ReleaseRequest(resource_id=r.resource_id))
        await wait_status(st, r.resource_id, S.RESOURCE_STATUS_RELEASED)
        stats = await st.GetStats(pb.GetStatsRequest())
        assert stats.containers_created == 2 and stats.vms_created == 0


async def test_bad_input_creates_nothing(tmp_path: Path, owner: str, pve: FakeProxmox) -> None:
    async with running_server(settings(tmp_path, owner, pve)) as rs:
        st = stub(rs.channel)
        cases = [
            (VM, pb.ResourceSpec(template="no-such-template"), grpc.StatusCode.NOT_FOUND),
            (LXC, pb.ResourceSpec(template="local:vztmpl/nope.tar.zst"), grpc.StatusCode.NOT_FOUND),
            (VM, pb.ResourceSpec(template="9000", node="pve9"), grpc.StatusCode.NOT_FOUND),
            (VM, pb.ResourceSpec(template="9000", storage="tank"), grpc.StatusCode.NOT_FOUND),
            (VM, pb.ResourceSpec(template="9000", gpu_count=1), grpc.StatusCode.RESOURCE_EXHAUSTED),
            (VM, pb.ResourceSpec(image="x"), grpc.StatusCode.INVALID_ARGUMENT),
        ]
        for backend, spec, code in cases:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await st.Provision(pb.ProvisionRequest(backend=backend, spec=spec))
            assert err.value.code() == code, (spec, err.value.details())
            assert [g for g in pve.guests.values() if not g.template] == []
        listed = await st.ListResources(pb.ListResourcesRequest(statuses=list(S.values())[1:]))
        assert list(listed.resources) == []


async def test_a_wrong_token_is_a_clear_status(
    tmp_path: Path, owner: str, pve: FakeProxmox, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PVE_TOKEN_SECRET", "wrong")
    async with running_server(settings(tmp_path, owner, pve)) as rs:
        st = stub(rs.channel)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await st.Provision(
                pb.ProvisionRequest(backend=VM, spec=pb.ResourceSpec(template="9000"))
            )
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "401" in (err.value.details() or "")
        assert "wrong" not in (err.value.details() or "")


async def test_restart_readopts_and_releases_orphans(
    tmp_path: Path, owner: str, pve: FakeProxmox
) -> None:
    cfg = settings(tmp_path, owner, pve)
    async with running_server(cfg) as rs:
        kept = await provision(stub(rs.channel), VM, pb.ResourceSpec(template="9000"))
    tags = f"aurea;aurea-o-{owner};aurea-r-rdeadbeef0000"
    pve.guests[4242] = Guest(4242, "pve1", "qemu", "orphan", {"tags": tags}, status="running")
    pve.guests[4243] = Guest(4243, "pve1", "qemu", "not-ours", {"tags": "prod"}, status="running")
    async with running_server(cfg) as rs:
        st = stub(rs.channel)
        r = (await st.GetResource(pb.GetResourceRequest(resource_id=kept.resource_id))).resource
        assert r.status == S.RESOURCE_STATUS_RUNNING
        for _ in range(500):
            if 4242 not in pve.guests:
                break
            await asyncio.sleep(0.01)
        assert 4242 not in pve.guests, "the orphan was not released"
        assert 4243 in pve.guests  # a guest without this owner's tag is never touched
        await st.Release(pb.ReleaseRequest(resource_id=kept.resource_id))
        await wait_status(st, kept.resource_id, S.RESOURCE_STATUS_RELEASED)
    del pve.guests[4243]
