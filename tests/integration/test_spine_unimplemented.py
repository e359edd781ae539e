"""RPCs a later capability provides answer UNIMPLEMENTED with a message naming that capability,
never INTERNAL, UNKNOWN or a hang; the implemented ones do not claim to be missing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory

from aurea.testing import RunningServer
from aurea.v1 import (
    admin_pb2,
    inference_pb2,
    infrastructure_pb2,
    ledger_pb2,
    router_pb2,
    task_pb2,
)

pytestmark = pytest.mark.integration

MODULES = (admin_pb2, inference_pb2, infrastructure_pb2, ledger_pb2, router_pb2, task_pb2)
IMPLEMENTED = {
    "InferenceService.Generate",
    "InferenceService.GenerateStream",
    "InferenceService.Embed",
    "InfrastructureService.Provision",
    "InfrastructureService.GetResource",
    "InfrastructureService.ListResources",
    "InfrastructureService.Execute",
    "InfrastructureService.Release",
    "InfrastructureService.Scale",
    "InfrastructureService.Cleanup",
    "InfrastructureService.GetStats",
    "AdminService.GetInfo",
    "LedgerService.GetJob",
    "LedgerService.SetBudget",
    "LedgerService.ListJobs",
    "LedgerService.GetSummary",
    "AdminService.GetMetricsSummary",
    "AdminService.GetSystemMetrics",
    "AdminService.ListProviders",
    "AdminService.GetProviderStats",
    "AdminService.SetModelLimits",
    "AdminService.ListModelLimits",
    "RouterService.SelectModel",
    "RouterService.RecordOutcome",
    "RouterService.ListModelStats",
    "RouterService.OptimizeWeights",
    "RouterService.GetWeights",
    "RouterService.SetWeights",
    "AdminService.WatchEvents",
    "AdminService.GetCacheStats",
    "AdminService.ClearCache",
    "AdminService.ListApiKeys",
    "AdminService.CreateApiKey",
    "AdminService.DisableApiKey",
    "AdminService.EnableApiKey",
    "AdminService.RotateApiKey",
    "TaskService.SubmitTask",
    "TaskService.GetTask",
    "TaskService.ListTasks",
    "TaskService.CancelTask",
    "TaskService.WatchTasks",
    "TaskService.ListTaskKinds",
    "TaskService.ListPools",
    "TaskService.ScalePool",
}
# The capability each not-yet-built service (or RPC) arrives with, as the message must say.
CAPABILITY_WORDS = {
    "RouterService": "routing",
    "LedgerService": "ledger",
    "TaskService": "task",
    "InfrastructureService": "provisioning",
    "AdminService.GetMetricsSummary": "telemetry",
    "AdminService.WatchEvents": "event",
}


def _methods() -> list[tuple[str, str, Any, Any, bool]]:
    """(Service.Method, /full/path, request class, response class, server streaming)."""
    out = []
    for module in MODULES:
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                out.append(
                    (
                        f"{service.name}.{m.name}",
                        f"/{service.full_name}/{m.name}",
                        message_factory.GetMessageClass(m.input_type),
                        message_factory.GetMessageClass(m.output_type),
                        m.server_streaming,
                    )
                )
    return out


METHODS = _methods()
MISSING = [m for m in METHODS if m[0] not in IMPLEMENTED]


def test_the_api_surface_is_what_the_design_says() -> None:
    names = {name for name, *_ in METHODS}
    assert names >= IMPLEMENTED
    assert len([n for n in names if n.startswith("TaskService.")]) == 8
    assert {"LedgerService.GetJob", "RouterService.SetWeights", "AdminService.ClearCache"} <= names


async def call(
    rs: RunningServer,
    path: str,
    req_cls: Any,
    resp_cls: Any,
    streaming: bool,
    timeout_s: float = 5.0,
) -> grpc.aio.AioRpcError | None:
    kwargs = {
        "request_serializer": req_cls.SerializeToString,
        "response_deserializer": resp_cls.FromString,
    }
    try:
        if streaming:
            async for _ in rs.channel.unary_stream(path, **kwargs)(req_cls(), timeout=timeout_s):
                pass
        else:
            await rs.channel.unary_unary(path, **kwargs)(req_cls(), timeout=timeout_s)
    except grpc.aio.AioRpcError as exc:
        return exc
    return None


@pytest.mark.parametrize(
    ("name", "path", "req_cls", "resp_cls", "streaming"),
    [pytest.param(*m, id=m[0]) for m in MISSING],
)
async def test_unimplemented_rpc_names_its_capability(
    server: RunningServer,
    details: Callable[[grpc.RpcError], Any],
    name: str,
    path: str,
    req_cls: Any,
    resp_cls: Any,
    streaming: bool,
) -> None:
    err = await call(server, path, req_cls, resp_cls, streaming)
    assert err is not None, f"{name} answered OK but is listed as not implemented"
    d = details(err)
    assert d.code == grpc.StatusCode.UNIMPLEMENTED, f"{d.code}: {d.message}"
    assert d.reason == "NOT_IMPLEMENTED"
    assert name in d.message
    service = name.split(".")[0]
    words = CAPABILITY_WORDS.get(name) or CAPABILITY_WORDS[service]
    assert words in d.message.lower(), d.message
    assert "a later release" not in d.message  # every missing RPC names a real capability


@pytest.mark.parametrize(
    ("name", "path", "req_cls", "resp_cls", "streaming"),
    [pytest.param(*m, id=m[0]) for m in METHODS if m[0] in IMPLEMENTED],
)
async def test_implemented_rpc_is_not_unimplemented(
    server: RunningServer,
    name: str,
    path: str,
    req_cls: Any,
    resp_cls: Any,
    streaming: bool,
) -> None:
    # A watch (WatchTasks, WatchEvents) streams until the caller's deadline: a short one.
    err = await call(server, path, req_cls, resp_cls, streaming, 1.0 if streaming else 5.0)
    if err is not None:
        # An empty request may be invalid, or (OptimizeWeights before any outcome was recorded)
        # not possible yet; it must still be a considered answer.
        considered = (
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.NOT_FOUND,
            grpc.StatusCode.FAILED_PRECONDITION,
            *((grpc.StatusCode.DEADLINE_EXCEEDED,) if streaming else ()),
        )
        assert err.code() in considered, f"{name}: {err.code()}: {err.details()}"
