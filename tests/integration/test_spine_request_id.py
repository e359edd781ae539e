"""Request ids: every aurea.v1 call gets an ``x-request-id`` back (trailing metadata for unary
calls, initial metadata for streams); a valid client-supplied id is echoed, a bad one replaced."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import grpc
import pytest

from aurea.testing import RunningServer
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

pytestmark = pytest.mark.integration

GENERATED = re.compile(r"^[0-9a-f]{32}$")


def md(metadata: object) -> dict[str, str]:
    return {k: v for k, v in metadata or ()}  # type: ignore[attr-defined]


def stub(rs: RunningServer) -> inference_pb2_grpc.InferenceServiceStub:
    return inference_pb2_grpc.InferenceServiceStub(rs.channel)


async def test_unary_generate_returns_request_id_in_trailing_metadata(
    server: RunningServer,
) -> None:
    call = stub(server).Generate(pb.GenerateRequest(prompt="hi"), timeout=5)
    reply = await call
    rid = md(await call.trailing_metadata()).get("x-request-id", "")
    assert GENERATED.match(rid), rid
    assert reply.request_id == rid


async def test_each_call_gets_its_own_request_id(server: RunningServer) -> None:
    ids = set()
    for _ in range(3):
        call = stub(server).Generate(pb.GenerateRequest(prompt="hi"), timeout=5)
        await call
        ids.add(md(await call.trailing_metadata())["x-request-id"])
    assert len(ids) == 3


async def test_embed_returns_request_id(server: RunningServer) -> None:
    call = stub(server).Embed(pb.EmbedRequest(inputs=["a"]), timeout=5)
    reply = await call
    rid = md(await call.trailing_metadata())["x-request-id"]
    assert GENERATED.match(rid)
    assert reply.request_id == rid


async def test_client_request_id_is_echoed_on_unary(server: RunningServer) -> None:
    mine = "client-req-42:abc/DEF_1.2"
    call = stub(server).Generate(
        pb.GenerateRequest(prompt="hi"), metadata=(("x-request-id", mine),), timeout=5
    )
    reply = await call
    assert md(await call.trailing_metadata())["x-request-id"] == mine
    assert reply.request_id == mine


async def test_stream_returns_request_id_in_initial_metadata(server: RunningServer) -> None:
    call = stub(server).GenerateStream(
        pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt="hi")), timeout=5
    )
    rid = md(await call.initial_metadata()).get("x-request-id", "")
    assert GENERATED.match(rid), rid
    events = [e async for e in call]
    assert events[0].started.request_id == rid


async def test_client_request_id_is_echoed_on_stream(server: RunningServer) -> None:
    mine = "stream-req-7"
    call = stub(server).GenerateStream(
        pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt="hi")),
        metadata=(("x-request-id", mine),),
        timeout=5,
    )
    assert md(await call.initial_metadata())["x-request-id"] == mine
    events = [e async for e in call]
    assert events[0].started.request_id == mine


@pytest.mark.parametrize("bad", ["has space", "x" * 129], ids=["space", "too-long"])
async def test_bad_client_request_id_is_replaced(server: RunningServer, bad: str) -> None:
    call = stub(server).Generate(
        pb.GenerateRequest(prompt="hi"), metadata=(("x-request-id", bad),), timeout=5
    )
    reply = await call
    rid = md(await call.trailing_metadata())["x-request-id"]
    assert rid != bad
    assert GENERATED.match(rid)
    assert reply.request_id == rid


async def test_failed_stream_still_has_request_id(server: RunningServer) -> None:
    mine = "bad-stream-1"
    call = stub(server).GenerateStream(
        pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt="")),
        metadata=(("x-request-id", mine),),
        timeout=5,
    )
    with pytest.raises(grpc.aio.AioRpcError):
        async for _ in call:
            pass
    assert md(await call.initial_metadata()).get("x-request-id") == mine


async def test_failed_unary_call_still_has_request_id(server: RunningServer) -> None:
    mine = "bad-unary-1"
    call = stub(server).Generate(
        pb.GenerateRequest(prompt=""), metadata=(("x-request-id", mine),), timeout=5
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert md(info.value.trailing_metadata()).get("x-request-id") == mine


@pytest.mark.parametrize("rpc", ["Generate", "GenerateStream"])
@pytest.mark.parametrize("why", ["unauthenticated", "draining"])
async def test_rejected_call_still_has_request_id(
    keyed_server: RunningServer, api_keys: tuple[str, str], rpc: str, why: str
) -> None:
    mine = f"rejected-{why}-{rpc}"
    metadata: tuple[tuple[str, str], ...] = (("x-request-id", mine),)
    expected = grpc.StatusCode.UNAUTHENTICATED
    if why == "draining":
        metadata += (("x-api-key", api_keys[0]),)
        expected = grpc.StatusCode.UNAVAILABLE
        keyed_server.server.tracker.draining = True
    try:
        if rpc == "Generate":
            call: Any = stub(keyed_server).Generate(
                pb.GenerateRequest(prompt="hi"), metadata=metadata, timeout=5
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call
        else:
            call = stub(keyed_server).GenerateStream(
                pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt="hi")),
                metadata=metadata,
                timeout=5,
            )
            with pytest.raises(grpc.aio.AioRpcError) as info:
                async for _ in call:
                    pass
    finally:
        keyed_server.server.tracker.draining = False
    assert info.value.code() == expected
    found = md(await call.initial_metadata()) | md(info.value.trailing_metadata())
    assert found.get("x-request-id") == mine


async def test_concurrent_calls_keep_their_own_request_ids(server: RunningServer) -> None:
    async def unary(i: int) -> tuple[str, str, str]:
        mine = f"concurrent-unary-{i}"
        call = stub(server).Generate(
            pb.GenerateRequest(prompt=f"p{i}"), metadata=(("x-request-id", mine),), timeout=10
        )
        reply = await call
        return mine, reply.request_id, md(await call.trailing_metadata())["x-request-id"]

    async def streamed(i: int) -> tuple[str, str, str]:
        mine = f"concurrent-stream-{i}"
        call = stub(server).GenerateStream(
            pb.GenerateStreamRequest(request=pb.GenerateRequest(prompt=f"p{i}")),
            metadata=(("x-request-id", mine),),
            timeout=10,
        )
        events = [e async for e in call]
        return mine, events[0].started.request_id, md(await call.initial_metadata())["x-request-id"]

    results = await asyncio.gather(*(f(i) for i in range(8) for f in (unary, streamed)))
    for mine, in_body, in_metadata in results:
        assert in_body == mine
        assert in_metadata == mine


async def test_one_log_line_per_call_carries_id_and_status(
    server: RunningServer, server_logs: list[dict[str, Any]]
) -> None:
    await stub(server).Generate(
        pb.GenerateRequest(prompt="hi"), metadata=(("x-request-id", "log-ok"),), timeout=5
    )
    with pytest.raises(grpc.aio.AioRpcError):
        await stub(server).Generate(
            pb.GenerateRequest(prompt=""), metadata=(("x-request-id", "log-bad"),), timeout=5
        )
    finished = {e.get("request_id"): e for e in server_logs if e.get("event") == "rpc_finished"}
    lines = [e for e in server_logs if e.get("event") == "rpc_finished"]
    assert len(lines) == 2
    assert finished["log-ok"]["status"] == "OK"
    assert finished["log-ok"]["rpc"] == "Generate"
    assert finished["log-ok"]["model"] == "sim-small"
    assert finished["log-bad"]["status"] == "INVALID_ARGUMENT"
