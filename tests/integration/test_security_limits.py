"""Input limits (``[input]``, and ``tasks.max_payload_bytes``): through the gRPC API and the
HTTP door, every request over a configured limit is refused INVALID_ARGUMENT (HTTP 400, 413 for
the body) with a message naming the limit's key, and the same request under the limit passes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import grpc
import pytest
import pytest_asyncio

from aurea.testing import RunningServer, running_server
from aurea.testing import test_settings as make_settings
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc, task_pb2, task_pb2_grpc

pytestmark = pytest.mark.integration

LIMITS = {
    "max_request_bytes": 4096,
    "max_prompt_chars": 200,
    "max_messages": 3,
    "max_tools": 1,
    "max_labels": 2,
    "max_label_chars": 8,
    "max_tokens": 50,
    "max_embed_inputs": 2,
}
TIMEOUT = 20.0


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rs() -> AsyncIterator[RunningServer]:
    settings = make_settings(
        {
            "input": LIMITS,
            "tasks": {"max_payload_bytes": 64, "store": "memory"},
            "ledger": {"store": "memory"},
            "routing": {"stats_store": "memory"},
        }
    )
    async with running_server(settings) as server:
        yield server


def _msgs(n: int, text: str = "hi") -> list[pb.ChatMessage]:
    return [pb.ChatMessage(role=pb.ROLE_USER, content=text) for _ in range(n)]


TOOL = pb.Tool(name="lookup", description="d", parameters_json_schema='{"type":"object"}')
OVER: dict[str, Any] = {
    "max_prompt_chars": pb.GenerateRequest(prompt="x" * 201),
    "max_messages": pb.GenerateRequest(messages=_msgs(4)),
    "max_tools": pb.GenerateRequest(
        prompt="p", tools=[TOOL, pb.Tool(name="other", parameters_json_schema="{}")]
    ),
    "max_labels": pb.GenerateRequest(prompt="p", labels={"a": "1", "b": "2", "c": "3"}),
    "max_label_chars": pb.GenerateRequest(prompt="p", labels={"a": "123456789"}),
    "max_tokens": pb.GenerateRequest(prompt="p", max_tokens=51),
    "max_request_bytes": pb.GenerateRequest(messages=_msgs(2, "y" * 3000)),
}
UNDER: dict[str, Any] = {
    "max_prompt_chars": pb.GenerateRequest(prompt="x" * 200, max_tokens=5),
    "max_messages": pb.GenerateRequest(messages=_msgs(3), max_tokens=5),
    "max_tools": pb.GenerateRequest(prompt="p", tools=[TOOL], max_tokens=5),
    "max_labels": pb.GenerateRequest(prompt="p", labels={"a": "1", "b": "2"}, max_tokens=5),
    "max_label_chars": pb.GenerateRequest(prompt="p", labels={"a": "12345678"}, max_tokens=5),
    "max_tokens": pb.GenerateRequest(prompt="p", max_tokens=50),
}


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("limit", sorted(OVER))
async def test_grpc_refuses_each_limit_by_name(rs: RunningServer, limit: str) -> None:
    stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(OVER[limit], timeout=TIMEOUT)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert f"input.{limit}" in (info.value.details() or "")
    if limit == "max_request_bytes":  # the prompt limit would refuse it too: size comes first
        assert "max_prompt_chars" not in (info.value.details() or "")
    # the stream refuses the same request the same way
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.GenerateStream(
            pb.GenerateStreamRequest(request=OVER[limit]), timeout=TIMEOUT
        ):
            pass
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("limit", sorted(UNDER))
async def test_grpc_accepts_a_request_at_each_limit(rs: RunningServer, limit: str) -> None:
    stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
    answer = await stub.Generate(UNDER[limit], timeout=TIMEOUT)
    assert answer.model


@pytest.mark.asyncio(loop_scope="module")
async def test_grpc_embed_limits(rs: RunningServer) -> None:
    stub = inference_pb2_grpc.InferenceServiceStub(rs.channel)
    for req, limit in (
        (pb.EmbedRequest(inputs=["a", "b", "c"]), "max_embed_inputs"),
        (pb.EmbedRequest(inputs=["a" * 150, "b" * 51]), "max_prompt_chars"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.Embed(req, timeout=TIMEOUT)
        assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert f"input.{limit}" in (info.value.details() or "")
    assert (await stub.Embed(pb.EmbedRequest(inputs=["a", "b"]), timeout=TIMEOUT)).embeddings


@pytest.mark.asyncio(loop_scope="module")
async def test_task_payload_over_its_limit(rs: RunningServer) -> None:
    stub = task_pb2_grpc.TaskServiceStub(rs.channel)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.SubmitTask(
            task_pb2.SubmitTaskRequest(
                kind="llm.generate", payload_json=json.dumps({"x": "y" * 100})
            ),
            timeout=TIMEOUT,
        )
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "tasks.max_payload_bytes" in (info.value.details() or "")


HTTP_OVER: dict[str, dict[str, Any]] = {
    "max_prompt_chars": {"messages": [{"role": "user", "content": "x" * 201}]},
    "max_messages": {"messages": [{"role": "user", "content": "hi"}] * 4},
    "max_labels": {
        "messages": [{"role": "user", "content": "hi"}],
        "aurea": {"labels": {"a": "1", "b": "2", "c": "3"}},
    },
    "max_label_chars": {
        "messages": [{"role": "user", "content": "hi"}],
        "aurea": {"labels": {"a": "123456789"}},
    },
    "max_tokens": {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 51},
}


async def _post(rs: RunningServer, path: str, body: Any) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{rs.server.http_port}{path}"
    async with aiohttp.ClientSession() as session, session.post(url, json=body) as resp:
        return resp.status, await resp.json()


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("limit", sorted(HTTP_OVER))
async def test_http_door_refuses_each_limit_by_name(rs: RunningServer, limit: str) -> None:
    status, body = await _post(
        rs, "/v1/chat/completions", {"model": "sim-small", **HTTP_OVER[limit]}
    )
    assert status == 400, body
    assert f"input.{limit}" in body["error"]["message"]


@pytest.mark.asyncio(loop_scope="module")
async def test_http_door_embed_limit(rs: RunningServer) -> None:
    status, body = await _post(rs, "/v1/embeddings", {"input": ["a", "b", "c"]})
    assert status == 400 and "input.max_embed_inputs" in body["error"]["message"]
