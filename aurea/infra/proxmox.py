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
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import requests
import structlog
from proxmoxer import ProxmoxAPI, ResourceException
from proxmoxer.tools import Tasks

from aurea.config import ConfigError, InfraSettings
from aurea.errors import (
    AureaError,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    Unavailable,
)
from aurea.infra.backend import ReplicaRef
from aurea.infra.model import BackendKind, ExecRequest, ExecResult, Found, OutputSink, Replica, Spec

__all__ = ["ProxmoxBackend", "ProxmoxClient"]

log = structlog.get_logger("aurea.infra")
T = TypeVar("T")

_TAG = "aurea"
_DEFAULT_LXC_DISK_GIB = 8


class ProxmoxClient:
    """The API connection shared by the VM and LXC backends: its thread pool, one proxmoxer
    session per thread, task polling, and the one place proxmoxer's errors are mapped."""

    def __init__(
        self,
        *,
        host: str,
        token_id: str,
        token_secret: str,
        verify: bool | str = True,
        threads: int = 4,
        poll_s: float = 1.0,
        task_timeout_s: float = 600.0,
        node: str = "",
        storage: str = "local-lvm",
        bridge: str = "vmbr0",
    ) -> None:
        user, sep, name = token_id.partition("!")
        if not sep or not user or not name:
            raise ConfigError("infra.proxmox_token_id_env", "the token id must be USER@REALM!NAME")
        self.host = host
        self._user, self._name, self._secret = user, name, token_secret
        self._verify = verify
        self.poll_s = poll_s
        self.task_timeout_s = task_timeout_s
        self.node = node
        self.storage = storage
        self.bridge = bridge
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="aurea-pve")
        self._local = threading.local()
        self._sessions: list[Any] = []  # every thread's requests session, closed at the end
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def from_settings(cls, s: InfraSettings, env: dict[str, str] | None = None) -> ProxmoxClient:
        env = dict(os.environ) if env is None else env
        token_id = env.get(s.proxmox_token_id_env, "")
        secret = env.get(s.proxmox_token_secret_env, "")
        if not token_id or not secret:
            raise ConfigError(
                "infra.proxmox_token_id_env",
                f"set {s.proxmox_token_id_env} and {s.proxmox_token_secret_env} to the API token",
            )
        verify: bool | str = s.proxmox_ca_file or s.proxmox_verify_tls
        return cls(
            host=s.proxmox_host,
            token_id=token_id,
            token_secret=secret,
            verify=verify,
            threads=s.proxmox_threads,
            poll_s=s.proxmox_poll_s,
            task_timeout_s=s.proxmox_task_timeout_s,
            node=s.proxmox_node,
            storage=s.proxmox_storage,
            bridge=s.proxmox_bridge,
        )

    def _api(self) -> Any:
        api = getattr(self._local, "api", None)
        if api is None:  # requests sessions are not shared between threads
            api = ProxmoxAPI(
                self.host,
                user=self._user,
                token_name=self._name,
                token_value=self._secret,
                verify_ssl=self._verify,
                timeout=30,
            )
            self._local.api = api
            with self._lock:
                self._sessions.append(api._store["session"])
        return api

    async def call(self, what: str, fn: Callable[[Any], T]) -> T:
        """Run ``fn(api)`` on the pool; proxmoxer's and requests' errors become Aurea errors."""
        if self._closed:
            raise Unavailable("the proxmox client is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(self._api()))
        except ResourceException as exc:
            raise _mapped(what, exc) from exc
        except requests.RequestException as exc:
            raise Unavailable(
                f"proxmox API at {self.host} is unreachable ({what}): {type(exc).__name__}",
                retry_after_s=1.0,
            ) from exc

    async def wait(self, what: str, upid: Any) -> None:
        """Poll a task until it stops; raise unless it ended ``OK``."""
        if not isinstance(upid, str) or not upid.startswith("UPID:"):
            return  # a synchronous call (no task to wait for)
        node = Tasks.decode_upid(upid)["node"]
        deadline = time.monotonic() + self.task_timeout_s
        while True:
            st = await self.call(what, lambda api: api.nodes(node).tasks(upid).status.get())
            if st.get("status") == "stopped":
                if st.get("exitstatus") != "OK":
                    raise _task_failed(what, str(st.get("exitstatus", "")))
                return
            if time.monotonic() > deadline:
                raise Unavailable(f"proxmox task {what} did not finish in {self.task_timeout_s:g}s")
            await asyncio.sleep(self.poll_s)

    async def pick_node(self, wanted: str) -> str:
        nodes = await self.call("nodes", lambda api: api.nodes.get())
        online = [n["node"] for n in nodes if n.get("status") == "online"]
        name = wanted or self.node
        if not name:
            if not online:
                raise Unavailable("no proxmox node is online")
            return str(sorted(online)[0])
        if name not in {n["node"] for n in nodes}:
            raise NotFound(f"proxmox node {name!r} does not exist")
        if name not in online:
            raise Unavailable(f"proxmox node {name!r} is not online")
        return name

    async def aclose(self) -> None:
        """Stop the threads (letting calls in progress end) and close their connections."""
        if self._closed:
            return
        self._closed = True
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()


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


def _mapped(what: str, exc: ResourceException) -> AureaError:
    reason = str(exc.content or exc.status_message or "")
    text = f"proxmox {what}: {exc.status_code} {reason}".strip()
    if exc.errors:
        text += f" {exc.errors}"
    if exc.status_code in (401, 403):
        return FailedPrecondition(f"{text} (check the API token and its permissions)")
    if exc.status_code == 400:
        return InvalidRequest(text)
    if "does not exist" in reason or "not found" in reason.lower():
        return NotFound(text)
    return Unavailable(text, retry_after_s=1.0)


def _task_failed(what: str, status: str) -> AureaError:
    text = f"proxmox task {what} failed: {status}"
    if "does not exist" in status:
        return NotFound(text)
    return FailedPrecondition(text) if "already exists" not in status else Unavailable(text)
