"""A fake Proxmox VE API server for tests: HTTPS on 127.0.0.1 with a throwaway self-signed
certificate, the documented ``/api2/json`` paths Aurea's proxmox backend (through proxmoxer)
uses, API-token auth (``Authorization: PVEAPIToken=USER@REALM!NAME=SECRET``), and asynchronous
tasks named by UPIDs that report ``running`` until they finish (polled at
``/nodes/{node}/tasks/{upid}/status``).

What it models: nodes, storages and their content (LXC OS templates), QEMU VMs (templates,
full clones, config, start/stop, delete) and LXC containers (create, start/stop, delete), tags,
``/cluster/resources`` and ``/cluster/nextid``, and the QEMU guest agent's ``exec`` and
``exec-status``: the "guest" runs the command as a real process on this host (so output, exit
codes and ``kill`` behave as in a guest), and, as the real agent does, hands its output back only
once it has exited. Every reply is ``{"data": ...}``; errors use PVE's status lines and bodies
(401 with an empty body for bad tokens, 400 ``{"errors": {...}}`` for bad parameters, 500 with
the reason in the status line for everything else).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from aiohttp import web

from aurea.testing.fakes._proxmox_model import Guest, _cert, _Exec, _Fail, _kill, _Task

__all__ = ["FakeProxmox", "Guest"]

_DATA = web.AppKey("fake", object)


class FakeProxmox:
    """``async with FakeProxmox() as pve:`` serves on ``pve.host`` (``127.0.0.1:PORT``);
    ``pve.ca_file`` is the certificate to trust, ``pve.token_id``/``pve.token_secret`` the token
    it accepts. ``task_delay_s`` is how long each task stays ``running``."""

    def __init__(
        self,
        *,
        token_id: str = "root@pam!aurea",
        token_secret: str = "8e0f6c1a-5d4e-4b7a-9f1e-2c3d4e5f6a7b",
        task_delay_s: float = 0.05,
        nodes: tuple[str, ...] = ("pve1",),
    ) -> None:
        self.token_id = token_id
        self.token_secret = token_secret
        self.task_delay_s = task_delay_s
        self.nodes = {n: "online" for n in nodes}
        self.storages = {"local": "vztmpl,iso,backup", "local-lvm": "images,rootdir"}
        self.templates = ["local:vztmpl/debian-12-standard_12.2-1_amd64.tar.zst"]
        self.guests: dict[int, Guest] = {}
        self.requests: list[tuple[str, str]] = []  # (method, path) of every request
        self._tasks: dict[str, _Task] = {}
        self._execs: dict[tuple[int, int], _Exec] = {}
        self._pids = itertools.count(0x1000)
        self._tmp = tempfile.TemporaryDirectory(prefix="fake-pve-")
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.ca_file = ""
        first = nodes[0]
        self.guests[9000] = Guest(
            9000,
            first,
            "qemu",
            "debian12-cloud",
            {"cores": "1", "memory": "1024", "agent": "1", "template": "1"},
            template=True,
        )

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        tmp = Path(self._tmp.name)
        cert, key = await asyncio.to_thread(_cert, tmp)
        self.ca_file = str(cert)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(cert, key)
        app = web.Application(middlewares=[self._auth])
        app[_DATA] = self
        app.router.add_route("*", "/api2/json/{path:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        server = site._server
        assert server is not None and server.sockets  # type: ignore[attr-defined]
        self.port = int(server.sockets[0].getsockname()[1])  # type: ignore[attr-defined]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ex in self._execs.values():
            _kill(ex.proc)
        for ex in self._execs.values():
            with contextlib.suppress(ProcessLookupError):
                await ex.proc.wait()
        if self._runner is not None:
            server = self._runner.server
            # TLS connections whose client left without a close_notify would wait out the TLS
            # shutdown after this loop ends; end them now.
            for conn in list(server.connections if server is not None else ()):
                if conn.transport is not None:
                    conn.transport.abort()
            await self._runner.cleanup()
        self._tmp.cleanup()

    # -- plumbing ----------------------------------------------------------------------------

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        expected = f"PVEAPIToken={self.token_id}={self.token_secret}"
        if request.headers.get("Authorization") != expected:
            return web.Response(status=401, reason="invalid token value!", text="")
        return await handler(request)  # type: ignore[no-any-return]

    async def _dispatch(self, request: web.Request) -> web.Response:
        parts = [p for p in request.match_info["path"].split("/") if p]
        args: dict[str, Any] = dict(request.query)
        if request.method in ("POST", "PUT"):
            form = await request.post()
            for k in form:
                values = form.getall(k)
                args[k] = [str(v) for v in values] if len(values) > 1 else str(values[0])
        try:
            data = await self._route(request.method, parts, args)
        except _Fail as f:
            body = {"data": None, **({"errors": f.errors} if f.errors else {})}
            return web.json_response(body, status=f.status, reason=f.reason)
        return web.json_response({"data": data})

    def _task(self, node: str, kind: str, vmid: int, effect: Callable[[], None]) -> str:
        now = int(time.time())
        pid, pstart = next(self._pids), now & 0xFFFFFFF
        upid = f"UPID:{node}:{pid:08X}:{pstart:08X}:{now:08X}:{kind}:{vmid}:{self.token_id}:"
        self._tasks[upid] = _Task(upid, node, time.monotonic() + self.task_delay_s, effect)
        return upid

    def _guest(self, node: str, kind: str, vmid: str) -> Guest:
        g = self.guests.get(int(vmid)) if vmid.isdigit() else None
        if g is None or g.kind != kind or g.node != node:
            conf = "qemu-server" if kind == "qemu" else "lxc"
            raise _Fail(500, f"Configuration file 'nodes/{node}/{conf}/{vmid}.conf' does not exist")
        return g

    def _new_id(self, raw: Any) -> int:
        if not str(raw).isdigit() or not 100 <= int(raw) <= 999_999_999:
            raise _Fail(400, "Parameter verification failed.", {"vmid": "invalid format"})
        vmid = int(raw)
        if vmid in self.guests:
            raise _Fail(500, f"unable to create VM {vmid}: config file already exists")
        return vmid

    # -- routes ------------------------------------------------------------------------------

    async def _route(self, method: str, p: list[str], a: dict[str, Any]) -> Any:
        if p == ["version"]:
            return {"version": "8.2.4", "release": "8.2", "repoid": "faa83925c9641325"}
        if p == ["cluster", "nextid"]:
            return str(max([99, *self.guests]) + 1)
        if p == ["cluster", "resources"]:
            return self._resources(a.get("type", ""))
        if p == ["nodes"]:
            return [
                {"node": n, "status": s, "type": "node", "maxcpu": 16}
                for n, s in self.nodes.items()
            ]
        if len(p) < 2 or p[0] != "nodes" or p[1] not in self.nodes:
            raise _Fail(500, f"hostname lookup '{p[1] if len(p) > 1 else ''}' failed - not found")
        node, rest = p[1], p[2:]
        if rest[:1] == ["tasks"] and len(rest) == 3 and rest[2] == "status":
            return self._task_status(rest[1])
        if rest == ["storage"]:
            return [{"storage": s, "content": c, "active": 1} for s, c in self.storages.items()]
        if len(rest) == 3 and rest[0] == "storage" and rest[2] == "content":
            if rest[1] not in self.storages:
                raise _Fail(500, f"storage '{rest[1]}' does not exist")
            return [
                {"volid": v, "content": "vztmpl"}
                for v in self.templates
                if v.startswith(rest[1] + ":")
            ]
        if rest[:1] in (["qemu"], ["lxc"]):
            return await self._guests(method, node, rest[0], rest[1:], a)
        raise _Fail(501, f"Method '{method} /nodes/{node}/{'/'.join(rest)}' not implemented")

    def _resources(self, kind: str) -> list[dict[str, Any]]:
        if kind not in ("", "vm"):
            return []
        return [
            {
                "id": f"{g.kind}/{g.vmid}",
                "vmid": g.vmid,
                "node": g.node,
                "type": g.kind,
                "name": g.name,
                "status": g.status,
                "template": int(g.template),
                "tags": g.config.get("tags", ""),
                "maxcpu": int(g.config.get("cores", "1")),
                "maxmem": int(g.config.get("memory", "512")) << 20,
            }
            for g in self.guests.values()
        ]

    def _task_status(self, upid: str) -> dict[str, Any]:
        t = self._tasks.get(upid)
        if t is None:
            raise _Fail(500, "unable to parse worker upid")
        if t.status == "running" and time.monotonic() >= t.done_at:
            try:
                t.effect()
                t.exitstatus = "OK"
            except _Fail as f:
                t.exitstatus = f.reason
            t.status = "stopped"
        out: dict[str, Any] = {
            "upid": upid,
            "node": t.node,
            "status": t.status,
            "type": upid.split(":")[5],
        }
        if t.status == "stopped":
            out["exitstatus"] = t.exitstatus
        return out

    async def _guests(
        self, method: str, node: str, kind: str, rest: list[str], a: dict[str, Any]
    ) -> Any:
        if not rest:
            if method == "GET":
                return [
                    {"vmid": g.vmid, "name": g.name, "status": g.status}
                    for g in self.guests.values()
                    if g.node == node and g.kind == kind
                ]
            if method == "POST" and kind == "lxc":
                return self._create_lxc(node, a)
        if not rest:
            raise _Fail(501, "Method not implemented")
        g = self._guest(node, kind, rest[0])
        what = rest[1:]
        if method == "DELETE" and not what:
            if g.status == "running":
                raise _Fail(500, f"CT/VM {g.vmid} is running - destroy failed")
            return self._task(node, f"{kind}destroy", g.vmid, lambda: self._delete(g.vmid))
        if what == ["config"]:
            if method == "GET":
                return {**g.config, "digest": "0" * 40}
            if method in ("PUT", "POST"):
                g.config.update({k: str(v) for k, v in a.items() if k != "digest"})
                return (
                    None if method == "PUT" else self._task(node, "qmconfig", g.vmid, lambda: None)
                )
        if what == ["clone"] and method == "POST" and kind == "qemu":
            return self._clone(g, a)
        if what == ["status", "current"]:
            return {"vmid": g.vmid, "status": g.status, "name": g.name, "template": int(g.template)}
        if what in (["status", "start"], ["status", "stop"], ["status", "shutdown"]):
            want = "running" if what[1] == "start" else "stopped"
            if g.template:
                raise _Fail(500, f"VM {g.vmid} is a template")
            return self._task(node, f"{kind}{what[1]}", g.vmid, lambda: self._set(g, want))
        if what[:1] == ["agent"] and kind == "qemu":
            return await self._agent(g, what[1:], method, a)
        raise _Fail(501, f"Method '{method} .../{'/'.join(what)}' not implemented")

    def _create_lxc(self, node: str, a: dict[str, Any]) -> str:
        vmid = self._new_id(a.get("vmid"))
        template = str(a.get("ostemplate", ""))
        if template not in self.templates:
            raise _Fail(500, f"volume '{template}' does not exist")
        storage = str(a.get("rootfs", "")).split(":")[0]
        if storage not in self.storages:
            raise _Fail(500, f"storage '{storage}' does not exist")
        keys = ("cores", "memory", "rootfs", "net0", "tags", "hostname", "description")
        config = {k: str(a[k]) for k in keys if k in a}
        config["ostemplate"] = template
        guest = Guest(vmid, node, "lxc", str(a.get("hostname", f"CT{vmid}")), config)
        # The id is taken at once (as PVE locks it); the container is usable when the task ends.
        self.guests[vmid] = guest
        return self._task(node, "vzcreate", vmid, lambda: None)

    def _clone(self, source: Guest, a: dict[str, Any]) -> str:
        vmid = self._new_id(a.get("newid"))
        target = str(a.get("target") or source.node)
        if target not in self.nodes:
            raise _Fail(500, f"no such cluster node '{target}'")
        storage = a.get("storage")
        if storage is not None and storage not in self.storages:
            raise _Fail(500, f"storage '{storage}' does not exist")
        config = {k: v for k, v in source.config.items() if k != "template"}
        guest = Guest(vmid, target, "qemu", str(a.get("name", f"VM{vmid}")), config)
        self.guests[vmid] = guest
        return self._task(source.node, "qmclone", source.vmid, lambda: None)

    def _set(self, g: Guest, status: str) -> None:
        if g.vmid not in self.guests:
            raise _Fail(500, f"VM {g.vmid} does not exist")
        g.status = status
        if status == "stopped":
            self._stop_execs(g.vmid)

    def _delete(self, vmid: int) -> None:
        self._stop_execs(vmid)
        self.guests.pop(vmid, None)

    def _stop_execs(self, vmid: int) -> None:
        for (v, _), ex in self._execs.items():
            if v == vmid:
                _kill(ex.proc)

    async def _agent(self, g: Guest, what: list[str], method: str, a: dict[str, Any]) -> Any:
        if g.config.get("agent", "0").split(",")[0] not in ("1", "enabled=1"):
            raise _Fail(500, "No QEMU guest agent configured")
        if g.status != "running":
            raise _Fail(500, f"VM {g.vmid} is not running")
        if what == ["ping"]:
            return {}
        if what == ["exec"] and method == "POST":
            command = a.get("command", [])
            argv = [command] if isinstance(command, str) else list(command)
            if not argv:
                raise _Fail(
                    400, "Parameter verification failed.", {"command": "property is missing"}
                )
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    start_new_session=True,
                    cwd=self._tmp.name,
                )
            except OSError as exc:
                raise _Fail(
                    500,
                    f"Agent error: Failed to execute child process “{argv[0]}” ({exc.strerror})",
                ) from exc
            ex = _Exec(proc)
            self._execs[(g.vmid, proc.pid)] = ex
            stdin = str(a.get("input-data", "")).encode()

            async def run() -> None:
                ex.out, ex.err = await proc.communicate(stdin)
                ex.done = True

            task = asyncio.ensure_future(run())
            _running.add(task)
            task.add_done_callback(_running.discard)
            return {"pid": proc.pid}
        if what == ["exec-status"]:
            found = self._execs.get((g.vmid, int(a.get("pid", -1))))
            if found is None:
                raise _Fail(500, "Agent error: Invalid parameter 'pid'")
            if not found.done:
                return {"exited": 0}
            code = found.proc.returncode or 0
            out: dict[str, Any] = {"exited": 1}
            if code < 0:
                out["signal"] = -code
            else:
                out["exitcode"] = code
            if found.out:
                out["out-data"] = found.out.decode(errors="replace")
            if found.err:
                out["err-data"] = found.err.decode(errors="replace")
            return out
        raise _Fail(501, f"Method '{method} agent/{'/'.join(what)}' not implemented")


_running: set[asyncio.Future[None]] = set()
