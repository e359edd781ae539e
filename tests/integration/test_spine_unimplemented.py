"""RPCs a later capability provides answer UNIMPLEMENTED with a message naming that capability,
never INTERNAL, UNKNOWN or a hang; the implemented ones do not claim to be missing."""

from __future__ import annotations

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


def test_every_rpc_of_the_api_is_implemented() -> None:
    """The whole API is built: nothing is left to the UNIMPLEMENTED filler."""
    assert [name for name, *_ in MISSING] == []


async def test_the_filler_names_the_capability_of_a_missing_rpc() -> None:
    """The machinery a future RPC starts with: a servicer that does not override a method gets
    an UNIMPLEMENTED answer naming the capability that will bring it."""
    from aurea.api.unimplemented import fill_unimplemented
    from aurea.errors import Unimplemented
    from aurea.v1 import ledger_pb2_grpc

    base = ledger_pb2_grpc.LedgerServiceServicer
    servicer = fill_unimplemented(
        base(), base, ledger_pb2.DESCRIPTOR.services_by_name["LedgerService"]
    )
    with pytest.raises(Unimplemented) as info:
        await servicer.GetJob(ledger_pb2.GetJobRequest(job_id="j"), None)
    assert "LedgerService.GetJob" in info.value.message
    assert CAPABILITY_WORDS["LedgerService"] in info.value.message.lower()


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
