"""Supervision and back-pressure through the real gRPC API: a crashed actor is restarted and the
next call succeeds; a full mailbox answers UNAVAILABLE (OVERLOADED, RetryInfo) at once."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aurea.actors.provider import ProviderActor
from aurea.errors import Overloaded
from aurea.testing import RunningServer, running_server
from aurea.testing import test_settings as settings_for
from aurea.v1 import admin_pb2, admin_pb2_grpc, inference_pb2, inference_pb2_grpc

pytestmark = pytest.mark.integration

CALL_TIMEOUT_S = 5.0  # a hang would surface as DEADLINE_EXCEEDED, not as a pass


async def generate(rs: RunningServer, prompt: str = "hello") -> inference_pb2.GenerateResponse:
    stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
    return await stub.Generate(inference_pb2.GenerateRequest(prompt=prompt), timeout=CALL_TIMEOUT_S)


async def restarts_of(rs: RunningServer, make_stubs: Callable[..., Any]) -> dict[str, int]:
    reply = await make_stubs(rs.channel).admin.GetSystemMetrics(
        admin_pb2.GetSystemMetricsRequest(), timeout=CALL_TIMEOUT_S
    )
    return {a.name: a.restarts for a in reply.actors}


async def serving(rs: RunningServer) -> bool:
    stub = health_pb2_grpc.HealthStub(rs.channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


@pytest.mark.parametrize("actor", ["router", "provider:simulated"])
async def test_crashed_actor_restarts_and_next_call_succeeds(
    server: RunningServer, make_stubs: Callable[..., Any], actor: str
) -> None:
    """An actor that raises is restarted and the next call succeeds; the server stays up."""
    before = await restarts_of(server, make_stubs)
    assert before[actor] == 0
    # Every receive() ends in assert_never: an unknown message makes the actor raise.
    server.server.system.get(actor).tell(object())
    reply = await generate(server)
    assert reply.text
    after = await restarts_of(server, make_stubs)
    assert after[actor] >= 1
    assert all(after[name] == 0 for name in after if name != actor)
    assert await serving(server)
    again = await generate(server, "and again")
    assert again.text


async def test_call_that_hits_a_crash_is_unavailable_then_retry_succeeds(
    server: RunningServer,
    make_stubs: Callable[..., Any],
    details: Callable[[grpc.RpcError], Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The call in flight when the actor crashes gets a retryable status, never INTERNAL."""
    original = ProviderActor.receive
    crashes = 0

    async def crash_once(self: ProviderActor, msg: Any) -> Any:
        nonlocal crashes
        if crashes == 0:
            crashes += 1
            raise RuntimeError("provider actor bug (injected by the test)")
        return await original(self, msg)

    monkeypatch.setattr(ProviderActor, "receive", crash_once)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await generate(server)
    d = details(info.value)
    assert d.code == grpc.StatusCode.UNAVAILABLE, f"{d.code}: {d.message}"
    assert d.reason == "ACTOR_RESTARTED"
    assert d.retry_info is not None
    assert "injected" not in d.message  # internals stay in the log
    reply = await generate(server)
    assert reply.text
    assert (await restarts_of(server, make_stubs))["provider:simulated"] == 1


async def kill(ref: Any) -> None:
    """Crash ``ref``'s actor until it is out of restarts (bounded)."""
    for _ in range(50):
        if not ref.alive:
            break
        try:
            ref.tell(object())
        except Exception:
            break
        await asyncio.sleep(0.02)
    deadline = asyncio.get_running_loop().time() + 5.0
    while ref.alive:
        assert asyncio.get_running_loop().time() < deadline, f"{ref.name} never died"
        await asyncio.sleep(0.02)


async def test_calls_are_routed_from_the_published_table_while_the_router_is_down(
    server: RunningServer,
) -> None:
    """Routing reads the router's last published table: a dead router does not stop calls."""
    await kill(server.server.system.get("router"))
    reply = await generate(server)
    assert reply.text and reply.model == "sim-small"
    assert await serving(server)


async def test_actor_out_of_restarts_gives_unavailable_not_a_hang(
    server: RunningServer, details: Callable[[grpc.RpcError], Any]
) -> None:
    """The only provider's actor is dead: calls fail fast, health says inference is down."""
    ref = server.server.system.get("provider:simulated")
    await kill(ref)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await generate(server)
    d = details(info.value)
    assert d.code == grpc.StatusCode.UNAVAILABLE, f"{d.code}: {d.message}"
    assert d.retry_info is not None
    # Health tells load balancers inference is down; the rest of the server still answers.
    stub = health_pb2_grpc.HealthStub(server.channel)
    for service in ("", "aurea.v1.InferenceService"):
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING, service
    admin = admin_pb2_grpc.AdminServiceStub(server.channel)
    info = await admin.GetInfo(admin_pb2.GetInfoRequest(), timeout=5)
    assert info.name == "aurea"


# --- back-pressure ----------------------------------------------------------------------------


class Block:
    """A private message that parks the actor until the test opens the gate."""


@pytest_asyncio.fixture
async def tiny_mailboxes() -> AsyncIterator[RunningServer]:
    async with running_server(settings_for({"runtime": {"mailbox_capacity": 2}})) as rs:
        yield rs


def block_actor(monkeypatch: pytest.MonkeyPatch, cls: type) -> tuple[asyncio.Event, asyncio.Event]:
    """Patch ``cls.receive`` so a ``Block`` message parks the actor; returns (entered, gate)."""
    entered, gate = asyncio.Event(), asyncio.Event()
    original = cls.receive  # type: ignore[attr-defined]

    async def receive(self: Any, msg: Any) -> Any:
        if isinstance(msg, Block):
            entered.set()
            await gate.wait()
            return None
        return await original(self, msg)

    monkeypatch.setattr(cls, "receive", receive)
    return entered, gate


async def fill(ref: Any, msg: Callable[[], Any]) -> None:
    for _ in range(ref.capacity + 10):
        try:
            ref.tell(msg())
        except Overloaded:
            return
    pytest.fail(f"{ref.name}'s mailbox never filled")


@pytest.mark.parametrize(
    ("actor", "cls", "filler"),
    [pytest.param("provider:simulated", ProviderActor, Block, id="provider")],
)
@pytest.mark.parametrize("rpc", ["Generate", "GenerateStream", "Embed"])
async def test_full_mailbox_gives_unavailable_promptly(
    tiny_mailboxes: RunningServer,
    details: Callable[[grpc.RpcError], Any],
    monkeypatch: pytest.MonkeyPatch,
    actor: str,
    cls: type,
    filler: Callable[[], Any],
    rpc: str,
) -> None:
    """A full mailbox gives UNAVAILABLE promptly, never a hang."""
    rs = tiny_mailboxes
    ref = rs.server.system.get(actor)
    entered, gate = block_actor(monkeypatch, cls)
    try:
        ref.tell(Block())
        await asyncio.wait_for(entered.wait(), timeout=CALL_TIMEOUT_S)
        await fill(ref, filler)
        assert ref.depth == ref.capacity == 2

        stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        with pytest.raises(grpc.aio.AioRpcError) as info:
            if rpc == "Generate":
                await stub.Generate(
                    inference_pb2.GenerateRequest(prompt="hi"), timeout=CALL_TIMEOUT_S
                )
            elif rpc == "Embed":
                await stub.Embed(inference_pb2.EmbedRequest(inputs=["hi"]), timeout=CALL_TIMEOUT_S)
            else:
                call = stub.GenerateStream(
                    inference_pb2.GenerateStreamRequest(
                        request=inference_pb2.GenerateRequest(prompt="hi")
                    ),
                    timeout=CALL_TIMEOUT_S,
                )
                async for _ in call:
                    pass
        d = details(info.value)
        assert d.code == grpc.StatusCode.UNAVAILABLE, f"{d.code}: {d.message}"
        assert d.reason == "OVERLOADED"
        assert d.retry_info is not None
        delay = d.retry_info.retry_delay
        assert 0 < delay.seconds * 1e9 + delay.nanos <= 60 * 1e9
    finally:
        gate.set()

    loop = asyncio.get_running_loop()
    deadline = loop.time() + CALL_TIMEOUT_S
    while ref.depth:
        assert loop.time() < deadline, "the mailbox never drained"
        await asyncio.sleep(0.01)
    reply = await generate(rs)
    assert reply.text


async def test_provider_concurrency_cap_gives_unavailable(
    slow_server_settings: Callable[..., Any], details: Callable[[grpc.RpcError], Any]
) -> None:
    """A provider at its concurrency cap refuses more work at once with a retryable status."""
    settings = slow_server_settings(50, 40)
    spec = settings.providers["simulated"]
    settings = dataclasses.replace(
        settings,
        providers={"simulated": dataclasses.replace(spec, max_concurrency=1)},
    )
    async with running_server(settings) as rs:
        stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
        first = stub.GenerateStream(
            inference_pb2.GenerateStreamRequest(
                request=inference_pb2.GenerateRequest(prompt="hold the slot")
            ),
            timeout=30,
        )
        while (await first.read()).WhichOneof("event") != "delta":
            pass
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Generate(inference_pb2.GenerateRequest(prompt="one more"), timeout=5)
        d = details(info.value)
        assert d.code == grpc.StatusCode.UNAVAILABLE, f"{d.code}: {d.message}"
        assert d.reason == "OVERLOADED"
        assert d.retry_info is not None
        kinds: list[str] = []
        with pytest.raises(grpc.aio.AioRpcError) as info:
            async for event in stub.GenerateStream(
                inference_pb2.GenerateStreamRequest(
                    request=inference_pb2.GenerateRequest(prompt="one more")
                ),
                timeout=5,
            ):
                kinds.append(event.WhichOneof("event"))
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "final" not in kinds and "delta" not in kinds
        first.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CALL_TIMEOUT_S
        while True:  # the slot frees once the cancelled stream is torn down
            try:
                reply = await generate(rs, "after the slot frees")
                break
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
                assert loop.time() < deadline, "the concurrency slot was never released"
                await asyncio.sleep(0.05)
        assert reply.text
