"""The edge on a real Aurea server: oversized errors come back as the real status with a readable,
bounded message; every aurea.v1 RPC admits exactly the keys its scope allows; the server's
kwargs cap concurrent RPCs; and open health Watch streams are capped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aurea.api.health import CappedHealthServicer
from aurea.api.interceptors import server_kwargs
from aurea.edge import Edge, required_scope
from aurea.testing import RunningServer
from aurea.testing import test_settings as settings_for
from aurea.types import Scope
from aurea.v1 import (
    admin_pb2,
    inference_pb2,
    inference_pb2_grpc,
    infrastructure_pb2,
    ledger_pb2,
    router_pb2,
    task_pb2,
)
from aurea.v1 import inference_pb2 as pb

pytestmark = pytest.mark.integration

MODULES = (admin_pb2, inference_pb2, infrastructure_pb2, ledger_pb2, router_pb2, task_pb2)
TIMEOUT_S = 10.0  # a bound that turns a hang into a failure, not a performance claim
METADATA_LIMIT = 8192  # grpc's default max metadata size: the trailers must stay under it


def trailer_bytes(err: grpc.aio.AioRpcError) -> int:
    return sum(len(k) + len(v) for k, v in err.trailing_metadata() or ()) + len(err.details() or "")


async def test_600_empty_embed_inputs_are_invalid_argument_with_a_readable_message(
    server: RunningServer, details: Callable[[grpc.RpcError], Any]
) -> None:
    stub = inference_pb2_grpc.InferenceServiceStub(server.channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Embed(pb.EmbedRequest(inputs=[""] * 600), timeout=TIMEOUT_S)
    d = details(info.value)
    assert d.code is grpc.StatusCode.INVALID_ARGUMENT, f"{d.code}: {d.message[:200]}"
    assert d.message.startswith("invalid request: inputs[0]")
    assert "more characters" in d.message and len(d.message) <= 1024
    assert d.fields[:3] == ["inputs[0]", "inputs[1]", "inputs[2]"]
    assert len(d.fields) <= 21 and "more field violations" in (
        d.bad_request.field_violations[-1].description if d.bad_request else ""
    )
    assert trailer_bytes(info.value) < METADATA_LIMIT // 2


@pytest.mark.parametrize("rpc", ["Generate", "GenerateStream"])
async def test_300_role_less_messages_are_invalid_argument_with_a_readable_message(
    server: RunningServer, details: Callable[[grpc.RpcError], Any], rpc: str
) -> None:
    stub = inference_pb2_grpc.InferenceServiceStub(server.channel)
    messages = [pb.ChatMessage(content=f"message {i}") for i in range(300)]
    with pytest.raises(grpc.aio.AioRpcError) as info:
        if rpc == "Generate":
            await stub.Generate(pb.GenerateRequest(messages=messages), timeout=TIMEOUT_S)
        else:
            call = stub.GenerateStream(
                pb.GenerateStreamRequest(request=pb.GenerateRequest(messages=messages)),
                timeout=TIMEOUT_S,
            )
            async for _ in call:
                pass
    d = details(info.value)
    assert d.code is grpc.StatusCode.INVALID_ARGUMENT, f"{d.code}: {d.message[:200]}"
    assert "messages[0].role" in d.message and len(d.message) <= 1024
    assert d.fields[0] == "messages[0].role"
    assert trailer_bytes(info.value) < METADATA_LIMIT // 2


def operations() -> list[tuple[str, bool]]:
    """(path, server streaming) of every aurea.v1 RPC, from the descriptors."""
    return sorted(
        (f"/{service.full_name}/{m.name}", m.server_streaming)
        for module in MODULES
        for service in module.DESCRIPTOR.services_by_name.values()
        for m in service.methods
    )


async def raw_call(rs: RunningServer, path: str, stream: bool, key: str) -> grpc.StatusCode:
    """Call ``path`` with an empty request message; return the status code."""
    metadata = (("authorization", f"Bearer {key}"),)
    try:
        if stream:
            call = rs.channel.unary_stream(path)(b"", metadata=metadata, timeout=TIMEOUT_S)
            await call.read()  # the first message or the error is enough
            call.cancel()
        else:
            await rs.channel.unary_unary(path)(b"", metadata=metadata, timeout=TIMEOUT_S)
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


async def test_every_rpc_admits_exactly_the_keys_its_scope_allows(
    keyed_server: RunningServer, api_keys: tuple[str, str]
) -> None:
    user, admin = api_keys
    refused = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
    bugs = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
    ops = operations()
    assert len(ops) >= 30
    wrong = {}
    for path, stream in ops:
        as_user = await raw_call(keyed_server, path, stream, user)
        as_admin = await raw_call(keyed_server, path, stream, admin)
        if required_scope(path[1:]) is Scope.ADMIN:
            ok = as_user is grpc.StatusCode.PERMISSION_DENIED
        else:
            ok = as_user not in refused + bugs
        if not ok or as_admin in refused + bugs:
            wrong[path] = (as_user, as_admin)
    assert not wrong, wrong


class Hang:
    """A servicer for Generate that blocks until released."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.entered = 0

    async def Generate(self, request: Any, context: Any) -> Any:
        self.entered += 1
        await self.release.wait()
        return pb.GenerateResponse(text="done")


Small = tuple[grpc.aio.Channel, Hang, CappedHealthServicer]


@pytest_asyncio.fixture
async def small_server(request: pytest.FixtureRequest) -> AsyncIterator[Small]:
    """A grpc server built like server.py builds Aurea's: ``server_kwargs`` from settings and
    the capped health servicer; the test's parameter sets the cap it exercises."""
    settings = settings_for({"server": request.param})
    server = grpc.aio.server(**server_kwargs(settings, Edge(keys=settings.api_keys)))
    hang = Hang()
    handler = grpc.unary_unary_rpc_method_handler(
        hang.Generate,
        request_deserializer=pb.GenerateRequest.FromString,
        response_serializer=pb.GenerateResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("aurea.v1.InferenceService", {"Generate": handler})]
    )
    health = CappedHealthServicer(max_watches=settings.server.max_health_watches)
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield channel, hang, health
    finally:
        hang.release.set()
        await channel.close()
        await server.stop(0)


async def poll(predicate: Callable[[], bool]) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT_S
    while not predicate():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.01)
    return True


@pytest.mark.parametrize("small_server", [{"max_concurrent_rpcs": 2}], indirect=True)
async def test_max_concurrent_rpcs_from_config_refuses_the_extra_call(small_server: Small) -> None:
    channel, hang, _ = small_server
    stub = inference_pb2_grpc.InferenceServiceStub(channel)
    held = [stub.Generate(pb.GenerateRequest(prompt="hi"), timeout=TIMEOUT_S) for _ in range(2)]
    assert await poll(lambda: hang.entered == 2)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(pb.GenerateRequest(prompt="hi"), timeout=TIMEOUT_S)
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    hang.release.set()
    assert [r.text for r in await asyncio.gather(*held)] == ["done", "done"]


@pytest.mark.parametrize("small_server", [{"max_health_watches": 2}], indirect=True)
async def test_health_watch_streams_are_capped(small_server: Small) -> None:
    channel, _, health = small_server
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest(service="")
    watches = [stub.Watch(request, timeout=TIMEOUT_S) for _ in range(2)]
    for w in watches:
        assert (await w.read()).status == health_pb2.HealthCheckResponse.SERVING
    assert health.watching == 2
    extra = stub.Watch(request, timeout=TIMEOUT_S)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await extra.read()
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_health_watches" in (info.value.details() or "")
    # Check is never capped, and a closed Watch frees its place.
    assert (await stub.Check(request, timeout=TIMEOUT_S)).status == 1
    watches[0].cancel()
    assert await poll(lambda: health.watching == 1)
    again = stub.Watch(request, timeout=TIMEOUT_S)
    assert (await again.read()).status == health_pb2.HealthCheckResponse.SERVING
    again.cancel()
    watches[1].cancel()


@pytest.mark.parametrize("small_server", [{"max_health_watches": 2}], indirect=True)
async def test_health_watch_refuses_absurd_service_names(small_server: Small) -> None:
    channel, _, health = small_server
    call = health_pb2_grpc.HealthStub(channel).Watch(
        health_pb2.HealthCheckRequest(service="s" * 100_000), timeout=TIMEOUT_S
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call.read()
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert health.watching == 0
