"""API keys end to end: a missing or wrong key gives UNAUTHENTICATED; a user key on an admin RPC
gives PERMISSION_DENIED; both metadata forms work; health and reflection need no key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from aurea.testing import RunningServer
from aurea.v1 import admin_pb2, inference_pb2, inference_pb2_grpc, router_pb2

pytestmark = pytest.mark.integration

UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED

# RPCs that change server-wide state: they need the admin scope (DESIGN.md, "Auth").
ADMIN_RPCS = (
    "/aurea.v1.RouterService/OptimizeWeights",
    "/aurea.v1.RouterService/SetWeights",
    "/aurea.v1.LedgerService/SetBudget",
    "/aurea.v1.TaskService/ScalePool",
    "/aurea.v1.InfrastructureService/Provision",
    "/aurea.v1.InfrastructureService/Release",
    "/aurea.v1.InfrastructureService/Scale",
    "/aurea.v1.InfrastructureService/Cleanup",
    "/aurea.v1.AdminService/ClearCache",
    "/aurea.v1.AdminService/SetModelLimits",
)
ADMIN_STREAMS = ("/aurea.v1.InfrastructureService/Execute",)
# RPCs a user key may call: inference and reading stats.
USER_RPCS = (
    "/aurea.v1.AdminService/GetInfo",
    "/aurea.v1.AdminService/GetSystemMetrics",
    "/aurea.v1.AdminService/ListProviders",
    "/aurea.v1.AdminService/GetProviderStats",
)


def bearer(key: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {key}"),)


def x_api_key(key: str) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", key),)


async def raw_call(
    rs: RunningServer, method: str, metadata: Any = (), *, stream: bool = False
) -> grpc.StatusCode:
    """Call ``method`` with an empty request message; return the status code."""
    try:
        if stream:
            async for _ in rs.channel.unary_stream(method)(b"", metadata=metadata, timeout=5):
                pass
        else:
            await rs.channel.unary_unary(method)(b"", metadata=metadata, timeout=5)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def generate(rs: RunningServer, metadata: Any) -> inference_pb2.GenerateResponse:
    stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
    return await stub.Generate(
        inference_pb2.GenerateRequest(prompt="hi"), metadata=metadata, timeout=5
    )


async def stream_kinds(rs: RunningServer, metadata: Any) -> list[str]:
    stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
    call = stub.GenerateStream(
        inference_pb2.GenerateStreamRequest(request=inference_pb2.GenerateRequest(prompt="hi")),
        metadata=metadata,
        timeout=5,
    )
    return [e.WhichOneof("event") async for e in call]


BAD_CREDENTIALS = [
    pytest.param((), id="missing"),
    pytest.param(bearer("wrong-key-0123456789"), id="wrong-bearer"),
    pytest.param(x_api_key("wrong-key-0123456789"), id="wrong-x-api-key"),
    pytest.param((("authorization", "Basic dXNlcjpwYXNz"),), id="basic-scheme"),
    pytest.param((("authorization", "Bearer "),), id="empty-bearer"),
    pytest.param((("authorization", "user-key-0123456789"),), id="no-scheme"),
]


@pytest.mark.parametrize("metadata", BAD_CREDENTIALS)
@pytest.mark.parametrize("rpc", ["Generate", "GenerateStream", "Embed", "GetInfo"])
async def test_missing_or_wrong_key_is_unauthenticated(
    keyed_server: RunningServer,
    details: Callable[[grpc.RpcError], Any],
    metadata: Any,
    rpc: str,
) -> None:
    stub = inference_pb2_grpc.InferenceServiceStub(keyed_server.channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        if rpc == "Generate":
            await generate(keyed_server, metadata)
        elif rpc == "GenerateStream":
            await stream_kinds(keyed_server, metadata)
        elif rpc == "Embed":
            await stub.Embed(inference_pb2.EmbedRequest(inputs=["a"]), metadata=metadata, timeout=5)
        else:
            await keyed_server.channel.unary_unary(
                "/aurea.v1.AdminService/GetInfo",
                request_serializer=admin_pb2.GetInfoRequest.SerializeToString,
                response_deserializer=admin_pb2.GetInfoResponse.FromString,
            )(admin_pb2.GetInfoRequest(), metadata=metadata, timeout=5)
    d = details(info.value)
    assert d.code == UNAUTHENTICATED, f"{d.code}: {d.message}"
    assert d.reason == "UNAUTHENTICATED"
    for _, value in metadata:
        secret = value.split(" ", 1)[-1]
        if secret:
            assert secret not in d.message  # a presented key is never echoed


async def test_wrong_key_does_not_reach_the_provider(keyed_server: RunningServer) -> None:
    with pytest.raises(grpc.aio.AioRpcError):
        await generate(keyed_server, bearer("wrong-key-0123456789"))
    assert keyed_server.provider("simulated").streams_started == 0
    assert keyed_server.provider("simulated").tokens_generated == 0


@pytest.mark.parametrize(
    "metadata",
    [
        pytest.param(bearer("user-key-0123456789"), id="bearer-user"),
        pytest.param(x_api_key("user-key-0123456789"), id="x-api-key-user"),
        pytest.param((("authorization", "bearer user-key-0123456789"),), id="lowercase-scheme"),
        pytest.param(bearer("admin-key-0123456789"), id="bearer-admin"),
        pytest.param(x_api_key("admin-key-0123456789"), id="x-api-key-admin"),
    ],
)
async def test_valid_key_generates_and_streams(
    keyed_server: RunningServer, api_keys: tuple[str, str], metadata: Any
) -> None:
    assert {v.split()[-1] for _, v in metadata} <= set(api_keys)
    reply = await generate(keyed_server, metadata)
    assert reply.text
    kinds = await stream_kinds(keyed_server, metadata)
    assert kinds[0] == "started" and kinds[-1] == "final" and "delta" in kinds


@pytest.mark.parametrize("method", ADMIN_RPCS + ADMIN_STREAMS)
async def test_user_key_on_admin_rpc_is_permission_denied(
    keyed_server: RunningServer, api_keys: tuple[str, str], method: str
) -> None:
    user, admin = api_keys
    stream = method in ADMIN_STREAMS
    assert await raw_call(keyed_server, method, bearer(user), stream=stream) == DENIED
    assert await raw_call(keyed_server, method, x_api_key(user), stream=stream) == DENIED
    # The admin key passes the scope check (the RPC itself may not be built yet).
    code = await raw_call(keyed_server, method, bearer(admin), stream=stream)
    assert code not in (DENIED, UNAUTHENTICATED, grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)


async def test_permission_denied_names_the_scope(
    keyed_server: RunningServer, api_keys: tuple[str, str], details: Callable[..., Any]
) -> None:
    user, _ = api_keys
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await keyed_server.channel.unary_unary(
            "/aurea.v1.RouterService/SetWeights",
            request_serializer=router_pb2.SetWeightsRequest.SerializeToString,
        )(router_pb2.SetWeightsRequest(), metadata=bearer(user), timeout=5)
    d = details(info.value)
    assert d.code == DENIED
    assert d.reason == "PERMISSION_DENIED"
    assert "admin" in d.message
    assert user not in d.message


@pytest.mark.parametrize("method", USER_RPCS)
async def test_user_key_reads_stats(
    keyed_server: RunningServer, api_keys: tuple[str, str], method: str
) -> None:
    user, _ = api_keys
    assert await raw_call(keyed_server, method, bearer(user)) == grpc.StatusCode.OK
    assert await raw_call(keyed_server, method) == UNAUTHENTICATED


async def test_health_needs_no_key(keyed_server: RunningServer) -> None:
    stub = health_pb2_grpc.HealthStub(keyed_server.channel)
    for service in ("", "aurea.v1.InferenceService"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_needs_no_key(keyed_server: RunningServer) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(keyed_server.channel)
    call = stub.ServerReflectionInfo(timeout=5)
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    reply = await call.read()
    await call.done_writing()
    names = {s.name for s in reply.list_services_response.service}
    assert "aurea.v1.InferenceService" in names
    assert "aurea.v1.AdminService" in names
    assert "grpc.health.v1.Health" in names


async def test_open_mode_needs_no_key(server: RunningServer) -> None:
    """With no keys configured every caller has full access (bound to loopback)."""
    reply = await generate(server, ())
    assert reply.text
    code = await raw_call(server, "/aurea.v1.AdminService/ClearCache")
    assert code not in (DENIED, UNAUTHENTICATED)
