"""SIGTERM against a real ``aurea serve`` process: in-flight streams finish within the grace
period, health says NOT_SERVING while draining, new calls are refused, and the exit code is 0."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
import pytest_asyncio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from aurea.v1 import admin_pb2, admin_pb2_grpc, inference_pb2, inference_pb2_grpc

pytestmark = pytest.mark.integration

TOKENS = 30
SLOW_CONFIG = f"""
[providers.simulated]
kind = "simulated"

[providers.simulated.options]
token_delay_ms = 60
min_tokens = {TOKENS}
max_tokens = {TOKENS}
"""
SERVICES = ("", "aurea.v1.InferenceService", "aurea.v1.AdminService")


@pytest_asyncio.fixture
async def channel_to() -> AsyncIterator[Callable[[str], grpc.aio.Channel]]:
    opened: list[grpc.aio.Channel] = []

    def open_(target: str) -> grpc.aio.Channel:
        ch = grpc.aio.insecure_channel(target)
        opened.append(ch)
        return ch

    yield open_
    for ch in opened:
        await ch.close()


async def health(channel: grpc.aio.Channel, service: str = "") -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
    return int(reply.status)


async def until_not_serving(channel: grpc.aio.Channel, timeout_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while await health(channel) != health_pb2.HealthCheckResponse.NOT_SERVING:
        assert loop.time() < deadline, "health never reported NOT_SERVING after SIGTERM"
        await asyncio.sleep(0.02)


async def read_until_first_delta(call: Any) -> list[Any]:
    events: list[Any] = []
    while True:
        event = await asyncio.wait_for(call.read(), timeout=10)
        assert event is not grpc.aio.EOF, f"the stream ended before its first delta: {events}"
        events.append(event)
        if event.WhichOneof("event") == "delta":
            return events


async def read_rest(call: Any, events: list[Any]) -> None:
    while (event := await asyncio.wait_for(call.read(), timeout=30)) is not grpc.aio.EOF:
        events.append(event)


def kinds_of(events: list[Any]) -> list[str]:
    return [e.WhichOneof("event") for e in events]


def tokens_in(events: list[Any]) -> int:
    """Tokens in the streamed text: the simulated provider sends one word per token. (Not the
    number of ``delta`` events: text the client has not read yet may merge into one.)"""
    return len("".join(e.delta.text for e in events if e.HasField("delta")).split())


async def test_sigterm_drains_stream_then_exits_zero(
    spawn_server: Callable[..., Any],
    channel_to: Callable[[str], grpc.aio.Channel],
    details: Callable[[grpc.RpcError], Any],
) -> None:
    """SIGTERM during a stream: the stream completes within the grace period, health reports
    NOT_SERVING, and the process exits 0."""
    sp = spawn_server(config=SLOW_CONFIG, env={"AUREA_SERVER_GRACE_S": "10"})
    channel = channel_to(sp.target)
    inference = inference_pb2_grpc.InferenceServiceStub(channel)
    call = inference.GenerateStream(
        inference_pb2.GenerateStreamRequest(
            request=inference_pb2.GenerateRequest(prompt="a long story")
        ),
        timeout=60,
    )
    events = await read_until_first_delta(call)
    assert kinds_of(events)[0] == "started"

    sp.proc.send_signal(signal.SIGTERM)
    await until_not_serving(channel)
    for service in SERVICES:
        assert await health(channel, service) == health_pb2.HealthCheckResponse.NOT_SERVING

    # New aurea.v1 calls are refused with a retryable status while the stream drains.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await inference.Generate(inference_pb2.GenerateRequest(prompt="new"), timeout=5)
    d = details(info.value)
    assert d.code == grpc.StatusCode.UNAVAILABLE, f"{d.code}: {d.message}"
    assert d.reason == "SHUTTING_DOWN"
    assert d.retry_info is not None
    # GetInfo stays answerable so operators can watch the drain.
    info_resp = await admin_pb2_grpc.AdminServiceStub(channel).GetInfo(
        admin_pb2.GetInfoRequest(), timeout=5
    )
    assert info_resp.status == admin_pb2.SERVING_STATUS_DRAINING
    assert sp.proc.poll() is None, "the server exited while a stream was in flight"

    await read_rest(call, events)
    assert await call.code() == grpc.StatusCode.OK
    assert kinds_of(events)[-1] == "final", kinds_of(events)
    assert events[-1].final.usage.output_tokens == TOKENS
    assert tokens_in(events) == TOKENS, "the drained stream lost text"

    code = await asyncio.to_thread(sp.wait_exit)
    assert code == 0, sp.log_tail()
    log = sp.log_text()
    assert "server_draining" in log and "server_stopped" in log
    assert "drain_timeout" not in log
    assert "rpc_bug" not in log


async def test_sigterm_cuts_a_stream_longer_than_the_grace_period(
    spawn_server: Callable[..., Any],
    channel_to: Callable[[str], grpc.aio.Channel],
) -> None:
    """A stream that outlives the grace period is cut with a non-OK status (never a silent
    success), and the process still exits 0; a second SIGTERM does not break the drain."""
    long_config = SLOW_CONFIG.replace(f"= {TOKENS}", "= 500")
    sp = spawn_server(config=long_config, env={"AUREA_SERVER_GRACE_S": "0.5"})
    channel = channel_to(sp.target)
    inference = inference_pb2_grpc.InferenceServiceStub(channel)
    call = inference.GenerateStream(
        inference_pb2.GenerateStreamRequest(
            request=inference_pb2.GenerateRequest(prompt="an endless story")
        ),
        timeout=60,
    )
    events = await read_until_first_delta(call)
    sp.proc.send_signal(signal.SIGTERM)
    await until_not_serving(channel)
    sp.proc.send_signal(signal.SIGTERM)

    with pytest.raises(grpc.aio.AioRpcError) as info:
        await read_rest(call, events)
    # Cut by the server going away: retryable on another replica, never OK.
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
    assert "final" not in kinds_of(events)
    assert tokens_in(events) < 500

    code = await asyncio.to_thread(sp.wait_exit)
    assert code == 0, sp.log_tail()
    assert "drain_timeout" in sp.log_text()


def test_sigint_stops_an_idle_server_with_exit_zero(spawn_server: Callable[..., Any]) -> None:
    sp = spawn_server(config=SLOW_CONFIG)
    sp.proc.send_signal(signal.SIGINT)
    assert sp.wait_exit() == 0, sp.log_tail()
    log = sp.log_text()
    assert "server_stopped" in log
    assert "Traceback" not in log
