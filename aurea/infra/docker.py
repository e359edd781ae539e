"""The ``docker`` backend: one container per replica on any Docker Engine API endpoint (Docker,
or podman's compatible service), through aiodocker.

A replica runs a keep-alive shell loop (so any image with ``/bin/sh`` works, whatever its own
command) with the spec's limits as ``HostConfig.NanoCpus`` and ``Memory``, and Aurea's labels.
The engine API cannot kill an exec'd command, so each command carries a marker variable and a
second exec kills the processes that hold it (the command and its children) on timeout or
cancel. ``disk_gib`` is recorded but not applied (it needs a storage driver with quotas).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiodocker
import aiohttp
import structlog

from aurea.errors import AureaError, FailedPrecondition, InvalidRequest, NotFound, Unavailable
from aurea.infra.backend import LABEL_INDEX, LABEL_OWNER, LABEL_RESOURCE, ReplicaRef
from aurea.infra.model import BackendKind, ExecRequest, ExecResult, Found, OutputSink, Replica, Spec

__all__ = ["DockerBackend"]

log = structlog.get_logger("aurea.infra")
T = TypeVar("T")

KEEPALIVE = "trap 'exit 0' TERM INT; while :; do sleep 3600 & wait $!; done"
_MARK = "AUREA_EXEC"
_KILL = (
    "for p in /proc/[0-9]*; do "
    'grep -q "{mark}={token}" "$p/environ" 2>/dev/null && kill -KILL "${{p#/proc/}}"; '
    "done; true"
)
_MIN_MEMORY_MIB = 6  # the Docker API refuses less


class DockerBackend:
    kind = BackendKind.DOCKER

    def __init__(
        self, *, url: str = "", pull: bool = True, network: str = "", stop_timeout_s: int = 2
    ) -> None:
        self._url = url or None  # None: aiodocker reads DOCKER_HOST, then the usual sockets
        self._pull = pull
        self._network = network
        self._stop_timeout_s = stop_timeout_s
        self._client: aiodocker.Docker | None = None

    @property
    def _docker(self) -> aiodocker.Docker:
        if self._client is None:  # made on first use: it needs the running loop
            try:
                self._client = aiodocker.Docker(url=self._url)
            except (ValueError, AssertionError) as exc:
                raise Unavailable(f"no Docker engine endpoint: {exc}") from exc
        return self._client

    @property
    def endpoint(self) -> str:
        return str(self._docker.docker_host)

    async def _call(self, what: str, work: Awaitable[T]) -> T:
        """One engine call, its failure mapped to an Aurea error at this one boundary."""
        try:
            return await work
        except aiodocker.DockerError as exc:
            if exc.status == 900:  # aiodocker's code for "could not connect"
                raise Unavailable(
                    f"docker engine at {self.endpoint} is unreachable ({what}): {exc.message}",
                    retry_after_s=1.0,
                ) from exc
            raise _mapped(what, exc.status, str(exc.message)) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise Unavailable(
                f"docker engine at {self.endpoint} is unreachable ({what}): {exc}",
                retry_after_s=1.0,
            ) from exc

    async def check(self, spec: Spec) -> None:
        if not spec.image:
            raise InvalidRequest.field("spec.image", "is required for the docker backend")
        if spec.template:
            raise InvalidRequest.field("spec.template", "is for Proxmox; docker uses spec.image")
        if spec.memory_mib and spec.memory_mib < _MIN_MEMORY_MIB:
            raise InvalidRequest.field(
                "spec.memory_mib", f"docker needs at least {_MIN_MEMORY_MIB}"
            )
        try:
            await self._call("image", self._docker.images.inspect(spec.image))
        except NotFound:
            if not self._pull:
                raise NotFound(
                    f"image {spec.image!r} is not at the engine (pulling is off: "
                    "[infra] docker_pull)"
                ) from None
            try:
                await self._call("pull", self._docker.images.pull(spec.image))
            except AureaError as exc:
                raise NotFound(
                    f"image {spec.image!r} is not at the engine and the pull failed: {exc.message}"
                ) from exc
        network = spec.network or self._network
        if network and network not in ("none", "host", "bridge", "default"):
            await self._call("network", self._docker.networks.get(network))

    async def create(self, ref: ReplicaRef, spec: Spec) -> Replica:
        labels = dict(spec.labels)
        labels.update({
            LABEL_OWNER: ref.owner,
            LABEL_RESOURCE: ref.resource_id,
            LABEL_INDEX: str(ref.index),
        })  # fmt: skip
        host: dict[str, Any] = {
            "NanoCpus": spec.cpu_millis * 1_000_000,
            "Memory": spec.memory_mib << 20,
        }
        network = spec.network or self._network
        if network:
            host["NetworkMode"] = network
        if spec.gpu_count:
            host["DeviceRequests"] = [
                {"Driver": "", "Count": spec.gpu_count, "Capabilities": [["gpu"]]}
            ]
        config: dict[str, Any] = {
            "Image": spec.image,
            "Entrypoint": ["/bin/sh", "-c", KEEPALIVE],
            "Cmd": [],
            "Env": [f"{k}={v}" for k, v in spec.env],
            "Labels": labels,
            "StopTimeout": self._stop_timeout_s,
            "HostConfig": host,
        }
        container = await self._call(
            "create", self._docker.containers.create(config, name=ref.name)
        )
        try:
            await self._call("start", container.start())
            info = await self._call("inspect", container.show())
            state = info.get("State") or {}
            if not state.get("Running"):  # an image without /bin/sh ends at once
                raise FailedPrecondition(
                    f"the container of image {spec.image!r} stopped at start (exit code "
                    f"{state.get('ExitCode')}): the image needs /bin/sh"
                )
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.shield(container.delete(force=True, v=True))
            raise
        return Replica(str(info["Id"]), address=_address(info))

    async def destroy(self, replica: Replica) -> None:
        container = self._docker.containers.container(replica.backend_id)
        try:
            await self._call("remove", container.delete(force=True, v=True))
        except NotFound:
            return

    async def execute(
        self, replica: Replica, spec: Spec, request: ExecRequest, sink: OutputSink
    ) -> ExecResult:
        container = self._docker.containers.container(replica.backend_id)
        token = secrets.token_hex(8)
        env = dict(request.env)
        env[_MARK] = token
        try:
            exe = await self._call(
                "exec",
                container.exec(
                    list(request.argv),
                    stdin=bool(request.stdin),
                    environment=env,
                    workdir=request.working_dir or None,
                ),
            )
        except NotFound as exc:
            raise FailedPrecondition(f"replica {replica.backend_id[:12]} is gone") from exc
        started = time.monotonic()
        timed_out = False
        try:
            async with asyncio.timeout(request.timeout_s or None):
                await self._pump(exe, request.stdin, sink)
        except TimeoutError:
            timed_out = True
            await self._kill(container, token)
        except BaseException:
            await asyncio.shield(self._kill(container, token))
            raise
        code = -1 if timed_out else await self._exit_code(exe)
        return ExecResult(
            exit_code=code, duration_s=time.monotonic() - started, timed_out=timed_out
        )

    async def _pump(self, exe: Any, stdin: bytes, sink: OutputSink) -> None:
        stream = exe.start(detach=False)
        try:
            await self._call("attach", stream._init())
            if stdin:
                await stream.write_in(stdin)
            transport = stream._resp.connection.transport
            if transport is not None and transport.can_write_eof():
                transport.write_eof()  # the command sees the end of its standard input
            while (msg := await stream.read_out()) is not None:
                await sink(2 if msg.stream == 2 else 1, msg.data)
        finally:
            await stream.close()

    async def _exit_code(self, exe: Any) -> int:
        for _ in range(50):  # the engine may record the exit a moment after the stream ends
            info = await self._call("exec inspect", exe.inspect())
            if not info.get("Running"):
                code = info.get("ExitCode")
                return int(code) if code is not None else -1
            await asyncio.sleep(0.02)
        return -1

    async def _kill(self, container: Any, token: str) -> None:
        try:
            killer = await container.exec(["/bin/sh", "-c", _KILL.format(mark=_MARK, token=token)])
            await killer.start(detach=True)
        except Exception as exc:  # the container may be gone already: nothing left to kill
            log.info("infra_exec_kill_failed", error=repr(exc))

    async def discover(self, owner: str) -> list[Found]:
        filters = json.dumps({"label": [f"{LABEL_OWNER}={owner}"]})
        rows = await self._call("list", self._docker.containers.list(all=True, filters=filters))
        out = []
        for c in rows:
            data = c._container
            labels = data.get("Labels") or {}
            rid = labels.get(LABEL_RESOURCE, "")
            if not rid:
                continue
            running = str(data.get("State", "")).lower() == "running"
            out.append(Found(rid, Replica(str(data.get("Id") or c.id)), running=running))
        return out

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def _mapped(what: str, status: int, message: str) -> AureaError:
    text = f"docker {what}: {message}"
    if status == 404:
        return NotFound(text)
    if status == 409:
        return FailedPrecondition(text)
    if status == 400:
        return InvalidRequest(text)
    return Unavailable(text, retry_after_s=1.0)


def _address(info: dict[str, Any]) -> str:
    net = info.get("NetworkSettings") or {}
    if net.get("IPAddress"):
        return str(net["IPAddress"])
    for n in (net.get("Networks") or {}).values():
        if n and n.get("IPAddress"):
            return str(n["IPAddress"])
    return ""
