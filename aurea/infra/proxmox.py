"""The ``proxmox_vm`` and ``proxmox_lxc`` backends, through proxmoxer with an API token.

proxmoxer is synchronous: every API call runs on a small dedicated thread pool (one proxmoxer
session per thread), never on the event loop. Long operations (clone, create, start, stop,
delete) return a task id (UPID) that is polled, with the loop free between polls, until the task
stops; an exit status other than ``OK`` is the error. Replicas carry tags (``aurea``,
``aurea-o-<owner>``, ``aurea-r-<resource>``) so a restarted Aurea finds them, and a replica is
only ever deleted when its tags say Aurea made it.

Commands run in a VM through the QEMU guest agent (``agent/exec``, then ``agent/exec-status``
until it has exited); the agent returns output only at the end, so it arrives as one chunk per
stream. Proxmox's API has no way to run a command in an LXC container (only ``pct exec`` on the
node), so Execute on one fails with FAILED_PRECONDITION.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from typing import Any

import structlog

from aurea.errors import (
    AureaError,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    Unavailable,
)
from aurea.infra._proxmox_client import ProxmoxClient
from aurea.infra.backend import ReplicaRef
from aurea.infra.model import BackendKind, ExecRequest, ExecResult, Found, OutputSink, Replica, Spec

__all__ = ["ProxmoxBackend", "ProxmoxClient"]

log = structlog.get_logger("aurea.infra")

_TAG = "aurea"
_DEFAULT_LXC_DISK_GIB = 8


class ProxmoxBackend:
    """One of the two Proxmox kinds (VMs or LXC containers) on a shared client."""

    def __init__(self, client: ProxmoxClient, kind: BackendKind) -> None:
        self.client = client
        self.kind = kind
        self._type = "qemu" if kind is BackendKind.PROXMOX_VM else "lxc"

    async def _template(self, spec: Spec, node: str) -> tuple[str, int]:
        """(node, vmid) of a VM template named by id or name."""
        c = self.client
        rows = await c.call("resources", lambda api: api.cluster.resources.get(type="vm"))
        for row in rows:
            named = str(row.get("vmid")) == spec.template or row.get("name") == spec.template
            if named and row.get("type") == "qemu" and int(row.get("template", 0)):
                return str(row["node"]), int(row["vmid"])
        raise NotFound(f"proxmox VM template {spec.template!r} does not exist")

    async def check(self, spec: Spec) -> None:
        if not spec.template:
            raise InvalidRequest.field("spec.template", "is required for the Proxmox backends")
        c = self.client
        node = await c.pick_node(spec.node)
        storage = spec.storage or c.storage
        stores = await c.call("storage", lambda api: api.nodes(node).storage.get())
        if storage not in {s["storage"] for s in stores}:
            raise NotFound(f"proxmox storage {storage!r} does not exist on node {node}")
        if self._type == "qemu":
            await self._template(spec, node)
            return
        where = spec.template.split(":", 1)[0]
        if where not in {s["storage"] for s in stores}:
            raise NotFound(f"proxmox storage {where!r} of template {spec.template!r} is unknown")
        content = await c.call(
            "templates", lambda api: api.nodes(node).storage(where).content.get(content="vztmpl")
        )
        if spec.template not in {v["volid"] for v in content}:
            raise NotFound(f"proxmox LXC template {spec.template!r} does not exist")

    async def create(self, ref: ReplicaRef, spec: Spec) -> Replica:
        c = self.client
        node = await c.pick_node(spec.node)
        tags = f"{_TAG};{_TAG}-o-{ref.owner};{_TAG}-r-{ref.resource_id}"
        cores = max(1, math.ceil(spec.cpu_millis / 1000))
        for _ in range(3):  # nextid races with other creators: take another on a clash
            vmid = int(await c.call("nextid", lambda api: api.cluster.nextid.get()))
            try:
                await self._make(node, vmid, ref, spec, tags, cores)
            except _IdTaken:
                continue
            replica = Replica(str(vmid), node=node)
            try:
                await self._start(replica)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.destroy(replica))
                raise
            return replica
        raise Unavailable("proxmox kept handing out vmids already taken; retry")

    async def _make(
        self, node: str, vmid: int, ref: ReplicaRef, spec: Spec, tags: str, cores: int
    ) -> None:
        c = self.client
        storage = spec.storage or c.storage
        labels = ",".join(f"{k}={v}" for k, v in spec.labels)
        try:
            if self._type == "qemu":
                tnode, tid = await self._template(spec, node)
                upid = await c.call(
                    "clone",
                    lambda api: (
                        api.nodes(tnode)
                        .qemu(tid)
                        .clone.post(newid=vmid, name=ref.name, full=1, storage=storage, target=node)
                    ),
                )
                await c.wait("clone", upid)
                config = {"cores": cores, "memory": spec.memory_mib, "tags": tags}
                if labels:
                    config["description"] = f"aurea labels: {labels}"
                await c.call("config", lambda api: api.nodes(node).qemu(vmid).config.put(**config))
                return
            net = f"name=eth0,bridge={spec.network or c.bridge},ip=dhcp"
            upid = await c.call(
                "create",
                lambda api: api.nodes(node).lxc.post(
                    vmid=vmid,
                    ostemplate=spec.template,
                    hostname=ref.name,
                    cores=cores,
                    memory=spec.memory_mib,
                    rootfs=f"{storage}:{spec.disk_gib or _DEFAULT_LXC_DISK_GIB}",
                    net0=net,
                    tags=tags,
                    description=f"aurea labels: {labels}" if labels else None,
                ),
            )
            await c.wait("create", upid)
        except AureaError as exc:
            if "already exists" in exc.message:
                raise _IdTaken from exc
            with contextlib.suppress(Exception):  # a half-made guest must not stay
                await asyncio.shield(self.destroy(Replica(str(vmid), node=node)))
            raise

    async def _start(self, replica: Replica) -> None:
        c, node, vmid, kind = self.client, replica.node, replica.backend_id, self._type
        upid = await c.call(
            "start", lambda api: getattr(api.nodes(node), kind)(vmid).status.start.post()
        )
        await c.wait("start", upid)

    async def destroy(self, replica: Replica) -> None:
        c, node, vmid, kind = self.client, replica.node, replica.backend_id, self._type

        def guest(api: Any) -> Any:
            return getattr(api.nodes(node), kind)(vmid)

        try:
            config = await c.call("config", lambda api: guest(api).config.get())
        except NotFound:
            return  # gone already
        if _TAG not in str(config.get("tags", "")).split(";"):
            raise FailedPrecondition(f"proxmox {kind} {vmid} has no aurea tag: not deleting it")
        status = await c.call("status", lambda api: guest(api).status.current.get())
        if status.get("status") == "running":
            await c.wait("stop", await c.call("stop", lambda api: guest(api).status.stop.post()))
        upid = await c.call("delete", lambda api: guest(api).delete(purge=1))
        await c.wait("delete", upid)

    async def execute(
        self, replica: Replica, spec: Spec, request: ExecRequest, sink: OutputSink
    ) -> ExecResult:
        if self._type == "lxc":
            raise FailedPrecondition(
                "Proxmox's API cannot run a command in an LXC container (only `pct exec` on "
                "the node can); use a PROXMOX_VM with the guest agent"
            )
        c, node, vmid = self.client, replica.node, replica.backend_id
        argv = list(request.argv)
        env = dict(spec.env) | dict(request.env)
        if request.working_dir:
            argv = ["/bin/sh", "-c", 'cd "$0" && exec "$@"', request.working_dir, *argv]
        if env:  # the agent's exec takes no environment: env(1) sets it
            argv = ["/usr/bin/env", *(f"{k}={v}" for k, v in env.items()), *argv]
        data: dict[str, Any] = {"command": argv}
        if request.stdin:
            data["input-data"] = request.stdin.decode(errors="replace")
        started = time.monotonic()
        res = await c.call("exec", lambda api: api.nodes(node).qemu(vmid).agent.exec.post(**data))
        pid = int(res["pid"])
        timed_out = False
        try:
            async with asyncio.timeout(request.timeout_s or None):
                st = await self._exec_status(node, vmid, pid)
        except TimeoutError:
            timed_out = True
            st = {}
            await self._kill(node, vmid, pid)
        except BaseException:
            await asyncio.shield(self._kill(node, vmid, pid))
            raise
        if st.get("out-data"):
            await sink(1, str(st["out-data"]).encode())
        if st.get("err-data"):
            await sink(2, str(st["err-data"]).encode())
        code = -1 if timed_out or "signal" in st else int(st.get("exitcode", -1))
        return ExecResult(code, time.monotonic() - started, timed_out)

    async def _exec_status(self, node: str, vmid: str, pid: int) -> dict[str, Any]:
        c = self.client
        while True:
            st: dict[str, Any] = await c.call(
                "exec-status",
                lambda api: api.nodes(node).qemu(vmid).agent("exec-status").get(pid=pid),
            )
            if int(st.get("exited", 0)):
                return st
            await asyncio.sleep(c.poll_s)

    async def _kill(self, node: str, vmid: str, pid: int) -> None:
        with contextlib.suppress(Exception):  # the VM may be gone: then so is the command
            await self.client.call(
                "kill",
                lambda api: (
                    api.nodes(node).qemu(vmid).agent.exec.post(command=["kill", "-KILL", str(pid)])
                ),
            )

    async def discover(self, owner: str) -> list[Found]:
        rows = await self.client.call("resources", lambda api: api.cluster.resources.get(type="vm"))
        out = []
        for row in rows:
            tags = str(row.get("tags", "")).split(";")
            if row.get("type") != self._type or f"{_TAG}-o-{owner}" not in tags:
                continue
            rid = next((t[len(_TAG) + 3 :] for t in tags if t.startswith(f"{_TAG}-r-")), "")
            if rid:
                replica = Replica(str(row["vmid"]), node=str(row["node"]))
                out.append(Found(rid, replica, running=row.get("status") == "running"))
        return out

    async def aclose(self) -> None:
        await self.client.aclose()


class _IdTaken(Exception):
    pass
