"""Rich generation on the zero-config server (the simulated provider) through gRPC: tool calls
and schema-valid JSON, deterministically, unary and streamed; the request checks that refuse a
bad rich request with every bad field named; and a capability the catalog does not list."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from providers_conftest import failure_of, run_stream
from pydantic import BaseModel, ConfigDict, Field

from aurea import testing
from aurea.testing import RunningServer
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]


class Forecast(BaseModel):
    """What the schema asks for, validated independently of Aurea by pydantic."""

    model_config = ConfigDict(extra="forbid")
    city: str = Field(min_length=3, max_length=40)
    days: int = Field(ge=1, le=7)
    unit: str = Field(json_schema_extra={"enum": ["c", "f"]})
    alerts: list[str] = Field(min_length=1, max_length=3)
    hourly: bool


SCHEMA = Forecast.model_json_schema()
SCHEMA["properties"]["unit"]["enum"] = ["c", "f"]
TOOL = pb.Tool(
    name="forecast",
    description="The forecast for a city",
    parameters_json_schema=json.dumps(SCHEMA),
    strict=True,
)
OTHER = pb.Tool(name="noop", description="does nothing")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def server() -> AsyncIterator[RunningServer]:
    async with testing.running_server(testing.test_settings()) as rs:
        yield rs


@pytest.fixture
def stub(server: RunningServer) -> inference_pb2_grpc.InferenceServiceStub:
    return inference_pb2_grpc.InferenceServiceStub(server.channel)


def check(value: dict[str, Any]) -> None:
    forecast = Forecast.model_validate(value)
    assert forecast.unit in ("c", "f")


async def test_simulated_answers_with_a_schema_valid_tool_call_deterministically(
    server: RunningServer, stub: inference_pb2_grpc.InferenceServiceStub
) -> None:
    request = pb.GenerateRequest(prompt="Forecast for Paris?", tools=[TOOL])
    first = await stub.Generate(request, timeout=10)
    again = await stub.Generate(request, timeout=10)
    assert first.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    assert list(first.tool_calls) == list(again.tool_calls)  # ids and arguments alike
    [call] = first.tool_calls
    assert call.name == "forecast" and call.id.startswith("call_")
    check(json.loads(call.arguments))
    run = await run_stream(server, pb.GenerateStreamRequest(request=request))
    assert run.failure is None
    run.check_order()
    pieces = [e.tool_call for e in run.events if e.HasField("tool_call")]
    assert len(pieces) > 2  # the arguments come in pieces
    assert "".join(p.arguments for p in pieces) == call.arguments
    assert list(run.final.tool_calls) == [call]
    assert run.final.usage.output_tokens == first.usage.output_tokens > 0
    assert run.final.finish_reason == pb.FINISH_REASON_TOOL_CALLS


async def test_simulated_parallel_named_and_no_tool_calls(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    both = await stub.Generate(
        pb.GenerateRequest(prompt="both", tools=[TOOL, OTHER], parallel_tool_calls=True),
        timeout=10,
    )
    assert [c.name for c in both.tool_calls] == ["forecast", "noop"]
    assert both.tool_calls[1].arguments == "{}"
    named = await stub.Generate(
        pb.GenerateRequest(
            prompt="just one", tools=[TOOL, OTHER], tool_choice=pb.ToolChoice(tool="noop")
        ),
        timeout=10,
    )
    assert [c.name for c in named.tool_calls] == ["noop"]
    none = await stub.Generate(
        pb.GenerateRequest(
            prompt="talk",
            tools=[TOOL],
            tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_NONE),
        ),
        timeout=10,
    )
    assert not none.tool_calls and none.text and none.finish_reason == pb.FINISH_REASON_STOP


async def test_simulated_round_trip_answers_after_the_tool_result(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    first = await stub.Generate(pb.GenerateRequest(prompt="Paris?", tools=[TOOL]), timeout=10)
    messages = [
        pb.ChatMessage(role=pb.ROLE_USER, content="Paris?"),
        pb.ChatMessage(role=pb.ROLE_ASSISTANT, tool_calls=first.tool_calls),
        pb.ChatMessage(
            role=pb.ROLE_TOOL, tool_call_id=first.tool_calls[0].id, content='{"sky": "clear"}'
        ),
    ]
    second = await stub.Generate(pb.GenerateRequest(messages=messages, tools=[TOOL]), timeout=10)
    assert second.finish_reason == pb.FINISH_REASON_STOP and second.text
    assert not second.tool_calls
    # The tool call and its result are part of the prompt.
    assert second.usage.input_tokens > first.usage.input_tokens


@pytest.mark.parametrize("stream", [False, True])
async def test_simulated_answers_schema_valid_json(
    server: RunningServer, stub: inference_pb2_grpc.InferenceServiceStub, stream: bool
) -> None:
    fmt = pb.ResponseFormat(
        type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, json_schema=json.dumps(SCHEMA), strict=True
    )
    request = pb.GenerateRequest(prompt="Forecast as JSON", response_format=fmt, max_tokens=500)
    unary = await stub.Generate(request, timeout=10)
    check(json.loads(unary.text))
    if stream:
        run = await run_stream(server, pb.GenerateStreamRequest(request=request))
        assert run.failure is None
        assert run.text == unary.text  # deterministic, and the same either way
        assert run.final.finish_reason == pb.FINISH_REASON_STOP
    obj = await stub.Generate(
        pb.GenerateRequest(
            prompt="any JSON",
            response_format=pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT),
        ),
        timeout=10,
    )
    assert isinstance(json.loads(obj.text), dict)


async def test_reasoning_on_a_model_without_it_names_the_model_and_the_feature(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(
            pb.GenerateRequest(
                prompt="think", model="sim-small", reasoning_effort=pb.REASONING_EFFORT_HIGH
            ),
            timeout=10,
        )
    failure = failure_of(info.value)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert failure.reason == "UNSUPPORTED_FEATURE"
    assert "'sim-small'" in failure.message and "a reasoning effort" in failure.message


def _bad_fields(err: grpc.aio.AioRpcError) -> list[str]:
    from google.rpc import error_details_pb2

    failure = failure_of(err)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    bad = failure.detail(error_details_pb2.BadRequest)
    return [v.field for v in bad.field_violations]


async def test_bad_rich_requests_name_every_bad_field(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    user = pb.ROLE_USER
    messages = [
        pb.ChatMessage(
            role=user,
            content="both",
            parts=[pb.ContentPart(text="x"), pb.ContentPart(image=pb.Image(data=b"not an image"))],
        ),
        pb.ChatMessage(role=pb.ROLE_ASSISTANT, tool_calls=[pb.ToolCall(id="", name="bad name")]),
        pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id="call_unknown", content="result"),
        pb.ChatMessage(role=user, content="x", tool_call_id="call_1"),
        pb.ChatMessage(role=user, parts=[pb.ContentPart(image=pb.Image(url="ftp://x/y.png"))]),
    ]
    request = pb.GenerateRequest(
        messages=messages,
        tools=[
            pb.Tool(name="t", parameters_json_schema="[1, 2]"),
            pb.Tool(name="t", parameters_json_schema="{nope"),
        ],
        tool_choice=pb.ToolChoice(tool="missing"),
        response_format=pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA),
    )
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await stub.Generate(request, timeout=10)
    assert _bad_fields(info.value) == [
        "messages[0].content",  # content and parts
        "messages[0].parts[1].image.media_type",  # not an image Aurea recognizes
        "messages[1].tool_calls[0].id",
        "messages[1].tool_calls[0].name",
        "messages[3].tool_call_id",  # only on ROLE_TOOL
        "messages[4].parts[0].image.url",  # not http(s) or data:
        "tools",  # two named t
        "tools[0].parameters_json_schema",  # not an object
        "tools[1].parameters_json_schema",  # not JSON
        "response_format.json_schema",  # required for JSON_SCHEMA
        "tool_choice",  # names no tool
        "messages[2].tool_call_id",  # answers no earlier call
    ]
    # The stream checks the same way, before any event.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.GenerateStream(pb.GenerateStreamRequest(request=request), timeout=10):
            pass
    assert "tool_choice" in _bad_fields(info.value)
    # GenerateStream needs its request.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        async for _ in stub.GenerateStream(pb.GenerateStreamRequest(), timeout=10):
            pass
    assert "request" in _bad_fields(info.value)
