"""InfrastructureService: validate, ask the Provisioner, convert the answer. ``Execute`` gets a
permit from the provisioner and runs the command in this call's task, writing each chunk of
output as it is read; the call's deadline or the client leaving kills the command."""

from __future__ import annotations

import asyncio
import time

import grpc

from aurea.api import _infra_convert as cv
from aurea.api.interceptors import WRITE_FAILED
from aurea.config import Settings
from aurea.edge import current_scope
from aurea.errors import DeadlineExceeded, FieldViolation, InvalidRequest
from aurea.inference import CallerGone
from aurea.infra import Infra
from aurea.infra.messages import (
    BeginExec,
    Cleanup,
    GetResource,
    GetStats,
    ListResources,
    Provision,
    ProvisionerMsg,
    Release,
    Scale,
)
from aurea.infra.model import BackendKind, ExecRequest
from aurea.runtime import ActorRef
from aurea.v1 import infrastructure_pb2 as pb
from aurea.v1 import infrastructure_pb2_grpc

_CHUNK = 64 * 1024


class InfrastructureServicer(infrastructure_pb2_grpc.InfrastructureServiceServicer):
    def __init__(
        self,
        provisioner: ActorRef[ProvisionerMsg],
        *,
        backends: list[BackendKind],
        ask_timeout_s: float,
        work_timeout_s: float,
    ) -> None:
        self._p = provisioner
        self._backends = backends
        self._timeout = ask_timeout_s
        self._work_timeout = work_timeout_s  # asks that wait on backend work (check, scale)

    @classmethod
    def of(cls, infra: Infra, settings: Settings) -> InfrastructureServicer:
        return cls(
            infra.ref,
            backends=infra.kinds,
            ask_timeout_s=settings.runtime.ask_timeout_s,
            work_timeout_s=settings.server.default_call_timeout_s,
        )

    def _work_bound(self) -> float:
        scope = current_scope.get()
        if scope is None or scope.deadline is None:
            return self._work_timeout
        return max(scope.deadline - time.monotonic(), 0.001)

    async def Provision(
        self, request: pb.ProvisionRequest, context: grpc.aio.ServicerContext
    ) -> pb.ProvisionResponse:
        kind, spec, replicas, request_id = cv.provision_args(request)
        r = await self._p.ask(
            Provision(backend=kind, spec=spec, replicas=replicas, request_id=request_id),
            timeout_s=self._work_bound(),
        )
        return pb.ProvisionResponse(resource=cv.resource_pb(r))

    async def GetResource(
        self, request: pb.GetResourceRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetResourceResponse:
        rid = cv.resource_id(request.resource_id)
        r = await self._p.ask(GetResource(resource_id=rid), timeout_s=self._timeout)
        return pb.GetResourceResponse(resource=cv.resource_pb(r))

    async def ListResources(
        self, request: pb.ListResourcesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListResourcesResponse:
        if request.page_size < 0:
            raise InvalidRequest.field("page_size", "must be at least 0")
        statuses = set()
        for i, s in enumerate(request.statuses):
            status = cv.STATUSES.get(s)
            if status is None:
                raise InvalidRequest.field(f"statuses[{i}]", "is not a resource status")
            statuses.add(status)
        backend = None
        if request.backend:
            backend = cv.BACKENDS.get(request.backend)
            if backend is None:
                raise InvalidRequest.field("backend", "is not a backend")
        page = await self._p.ask(
            ListResources(
                statuses=frozenset(statuses),
                backend=backend,
                page_size=min(request.page_size or 100, 1000),
                cursor=request.page_token,
            ),
            timeout_s=self._timeout,
        )
        return pb.ListResourcesResponse(
            resources=[cv.resource_pb(r) for r in page.resources],
            next_page_token=page.next_cursor,
        )

    async def Execute(self, request: pb.ExecuteRequest, context: grpc.aio.ServicerContext) -> None:
        cv.check_exec(request)
        exec_request = ExecRequest(
            argv=tuple(request.command),
            env=tuple(sorted(request.env.items())),
            working_dir=request.working_dir,
            stdin=request.stdin,
            timeout_s=request.timeout_ms / 1000,
        )
        permit = await self._p.ask(
            BeginExec(resource_id=request.resource_id, replica=request.replica),
            timeout_s=self._timeout,
        )
        write = context.write
        # A backend may read stdout and stderr in two tasks; grpc's writes must not overlap
        # (overlapping ones lose messages), so they take turns.
        turn = asyncio.Lock()

        async def sink(stream: int, data: bytes) -> None:
            async with turn:
                await _write_chunks(stream, data)

        async def _write_chunks(stream: int, data: bytes) -> None:
            for i in range(0, len(data), _CHUNK):
                piece = data[i : i + _CHUNK]
                msg = (
                    pb.ExecuteResponse(stderr_chunk=piece)
                    if stream == 2
                    else pb.ExecuteResponse(stdout_chunk=piece)
                )
                try:
                    await write(msg)
                except WRITE_FAILED as exc:
                    raise CallerGone("the client went away") from exc

        scope = current_scope.get()
        deadline = scope.deadline if scope is not None else None
        async with permit:
            try:
                async with asyncio.timeout(
                    None if deadline is None else max(deadline - time.monotonic(), 0)
                ):
                    result = await permit.backend.execute(
                        permit.replica, permit.spec, exec_request, sink
                    )
            except TimeoutError as exc:
                raise DeadlineExceeded(
                    "the call's deadline passed; the command was killed"
                ) from exc
        exit_msg = pb.ExecuteExit(
            exit_code=result.exit_code,
            duration_ms=int(result.duration_s * 1000),
            timed_out=result.timed_out,
        )
        try:
            await write(pb.ExecuteResponse(exit=exit_msg))
        except WRITE_FAILED as exc:
            raise CallerGone("the client went away") from exc

    async def Release(
        self, request: pb.ReleaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.ReleaseResponse:
        rid = cv.resource_id(request.resource_id)
        r = await self._p.ask(Release(resource_id=rid), timeout_s=self._timeout)
        return pb.ReleaseResponse(resource=cv.resource_pb(r))

    async def Scale(
        self, request: pb.ScaleRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScaleResponse:
        rid = cv.resource_id(request.resource_id)
        if not 1 <= request.replicas <= cv.MAX_REPLICAS:
            raise InvalidRequest.field("replicas", f"must be in [1, {cv.MAX_REPLICAS}]")
        r = await self._p.ask(
            Scale(resource_id=rid, replicas=request.replicas), timeout_s=self._work_bound()
        )
        return pb.ScaleResponse(resource=cv.resource_pb(r))

    async def Cleanup(
        self, request: pb.CleanupRequest, context: grpc.aio.ServicerContext
    ) -> pb.CleanupResponse:
        if request.idle_ms < 1:
            raise InvalidRequest.field("idle_ms", "must be at least 1")
        bad: list[FieldViolation] = []
        backend = cv.backend_of(request.backend, "backend", bad) if request.backend else None
        if bad:
            raise InvalidRequest(bad[0].description, bad)
        ids = await self._p.ask(
            Cleanup(
                idle_s=request.idle_ms / 1000,
                backend=backend,
                validate_only=request.validate_only,
            ),
            timeout_s=self._timeout,
        )
        return pb.CleanupResponse(released_resource_ids=list(ids))

    async def GetStats(
        self, request: pb.GetStatsRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetStatsResponse:
        stats = await self._p.ask(GetStats(), timeout_s=self._timeout)
        return cv.stats_pb(stats, self._backends)
