"""Rich generation through the HTTP door with the official ``openai`` SDK, unchanged, against the
zero-config server's simulated provider (which answers with schema-valid tool calls and JSON
deterministically): a two-turn tool round trip unary and streamed (the SDK accumulates the
streamed tool-call deltas), a JSON-schema answer that validates, an image part accepted, and an
over-size inline image refused with a 400 naming its ``param``."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from pydantic import BaseModel, ConfigDict, Field

from aurea.providers._images import MAX_IMAGE_BYTES
from aurea.testing import RunningServer, running_server
from aurea.testing import test_settings as make_settings

openai = pytest.importorskip("openai")  # under AUREA_REQUIRE_ALL a missing SDK fails

pytestmark = pytest.mark.integration


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
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "forecast",
            "description": "The forecast for a city",
            "parameters": SCHEMA,
            "strict": True,
        },
    }
]
# A tiny PNG header is enough: the simulated provider does not look at the pixels.
PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


@pytest_asyncio.fixture
async def door() -> AsyncIterator[RunningServer]:
    settings = make_settings(
        {
            "http": {"host": "127.0.0.1", "port": 0, "max_body_bytes": 8 << 20},
            "routing": {"stats_store": "memory"},
            "ledger": {"store": "memory"},
        }
    )
    async with running_server(settings) as rs:
        yield rs


@pytest_asyncio.fixture
async def client(door: RunningServer) -> AsyncIterator[Any]:
    c = openai.AsyncOpenAI(
        base_url=f"http://127.0.0.1:{door.server.http_port}/v1",
        api_key="unused",
        max_retries=0,
        timeout=30.0,
    )
    yield c
    await c.close()


def second_turn(question: str, calls: list[Any]) -> list[dict[str, Any]]:
    """The conversation after the tool ran: the assistant's calls and one result per call."""
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in calls
        ],
    }
    results = [{"role": "tool", "tool_call_id": c.id, "content": '{"sky": "clear"}'} for c in calls]
    return [{"role": "user", "content": question}, assistant, *results]


async def test_a_two_turn_tool_round_trip_unary(client: Any) -> None:
    first = await client.chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": "Forecast for Paris?"}],
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "forecast"
    assert call.id.startswith("call_")
    Forecast.model_validate(json.loads(call.function.arguments))
    again = await client.chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": "Forecast for Paris?"}],
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
    )
    assert again.choices[0].message.tool_calls == choice.message.tool_calls  # deterministic
    second = await client.chat.completions.create(
        model="sim-small",
        messages=second_turn("Forecast for Paris?", [call]),
        tools=TOOLS,
    )
    answer = second.choices[0]
    assert answer.finish_reason == "stop"
    assert not answer.message.tool_calls and answer.message.content


async def test_a_two_turn_tool_round_trip_streamed(client: Any) -> None:
    unary = await client.chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": "Forecast for Oslo?"}],
        tools=TOOLS,
    )
    [expected] = unary.choices[0].message.tool_calls
    chunks = []
    async with client.chat.completions.stream(
        model="sim-small",
        messages=[{"role": "user", "content": "Forecast for Oslo?"}],
        tools=TOOLS,
        stream_options={"include_usage": True},
    ) as stream:
        async for event in stream:
            if event.type == "chunk":
                chunks.append(event.chunk)
        final = await stream.get_final_completion()
    pieces = [
        d
        for c in chunks
        if c.choices and c.choices[0].delta.tool_calls
        for d in c.choices[0].delta.tool_calls
    ]
    assert len(pieces) >= 2  # the name first, then the arguments in fragments
    assert pieces[0].index == 0 and pieces[0].id == expected.id and pieces[0].type == "function"
    assert pieces[0].function.name == "forecast"
    assert all(p.id is None and p.function.name is None for p in pieces[1:])
    joined = "".join(p.function.arguments or "" for p in pieces)
    assert joined == expected.function.arguments
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    [call] = final.choices[0].message.tool_calls  # the SDK's own accumulation of the deltas
    assert (call.id, call.function.name, call.function.arguments) == (
        expected.id,
        "forecast",
        expected.function.arguments,
    )
    Forecast.model_validate(json.loads(call.function.arguments))
    text = []
    stream2 = await client.chat.completions.create(
        model="sim-small",
        messages=second_turn("Forecast for Oslo?", [call]),
        tools=TOOLS,
        stream=True,
    )
    last = None
    async for chunk in stream2:
        if chunk.choices:
            assert not chunk.choices[0].delta.tool_calls
            text.append(chunk.choices[0].delta.content or "")
            last = chunk.choices[0].finish_reason or last
    assert "".join(text) and last == "stop"


async def test_parallel_tool_calls_stream_with_their_indexes(client: Any) -> None:
    tools = [*TOOLS, {"type": "function", "function": {"name": "noop"}}]
    unary = await client.chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": "both"}],
        tools=tools,
        parallel_tool_calls=True,
    )
    expected = unary.choices[0].message.tool_calls
    assert [c.function.name for c in expected] == ["forecast", "noop"]
    async with client.chat.completions.stream(
        model="sim-small",
        messages=[{"role": "user", "content": "both"}],
        tools=tools,
        parallel_tool_calls=True,
    ) as stream:
        final = await stream.get_final_completion()
    got = final.choices[0].message.tool_calls
    assert [(c.id, c.function.name, c.function.arguments) for c in got] == [
        (c.id, c.function.name, c.function.arguments) for c in expected
    ]


async def test_a_json_schema_answer_validates(client: Any) -> None:
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "forecast", "schema": SCHEMA, "strict": True},
    }
    reply = await client.chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": "Forecast as JSON"}],
        response_format=response_format,
        max_tokens=500,
    )
    assert reply.choices[0].finish_reason == "stop"
    Forecast.model_validate(json.loads(reply.choices[0].message.content))
    parsed = await client.chat.completions.parse(  # the SDK's own structured-output helper
        model="sim-small",
        messages=[{"role": "user", "content": "Forecast as JSON"}],
        response_format=response_format,
        max_tokens=500,
    )
    assert json.loads(parsed.choices[0].message.content)["city"]
    obj = await client.chat.completions.create(
        model="sim-small",
        messages=[{"role": "user", "content": "any JSON"}],
        response_format={"type": "json_object"},
    )
    assert isinstance(json.loads(obj.choices[0].message.content), dict)


async def test_image_parts_are_accepted(client: Any) -> None:
    inline = "data:image/png;base64," + base64.b64encode(PNG).decode()
    reply = await client.chat.completions.create(
        model="sim-small",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in these images?"},
                    {"type": "image_url", "image_url": {"url": inline, "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            }
        ],
    )
    assert reply.choices[0].message.content


async def test_an_over_size_inline_image_is_refused_400_naming_its_param(client: Any) -> None:
    big = base64.b64encode(PNG + b"\0" * MAX_IMAGE_BYTES).decode()
    with pytest.raises(openai.BadRequestError) as info:
        await client.chat.completions.create(
            model="sim-small",
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "look"},
                        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{big}"}},
                    ],
                }
            ],
        )
    assert info.value.status_code == 400
    assert info.value.param == "messages[0].content[1].image_url.url"
    assert str(MAX_IMAGE_BYTES) in info.value.message
