"""Rich generation through the Python client (``aurea_client``) against a real server: a two-turn
tool loop by echoing ``Completion.message()`` (the simulated provider, and the Anthropic and
Gemini fakes with thinking on, whose signed reasoning must come back unchanged), tool choice,
JSON answers, images, reasoning, and the stream's tool-call and reasoning events; plus what the
client makes of messages, tools and images before anything is sent."""

from __future__ import annotations

import asyncio
import json
import os
import re
import struct
import sys
import zlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from aurea import testing
from aurea.testing import RunningServer, running_server
from aurea.testing.fakes import FakeAnthropic, FakeGemini

aurea_client = pytest.importorskip("aurea_client")  # pip install -e clients/python
from aurea_client import (  # noqa: E402
    NO_RETRY,
    AsyncClient,
    Client,
    Completion,
    Delta,
    Final,
    Image,
    InvalidArgument,
    Message,
    ReasoningBlock,
    ReasoningDelta,
    StreamEvent,
    Tool,
    ToolCall,
    ToolCallDelta,
)
from aurea_client._convert import message_pb  # noqa: E402
from aurea_client._pb import inference_pb2 as pb  # noqa: E402

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "clients" / "python" / "examples" / "tools.py"

WEATHER = Tool(
    "get_weather",
    "The weather in a city",
    {
        "type": "object",
        "properties": {"city": {"type": "string", "minLength": 2}},
        "required": ["city"],
        "additionalProperties": False,
    },
)
TIME = Tool(
    "get_time",
    "The time in a timezone",
    {"type": "object", "properties": {"timezone": {"type": "string"}}},
)
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "days": {"type": "integer", "minimum": 1, "maximum": 7},
        "unit": {"enum": ["c", "f"]},
    },
    "required": ["city", "days", "unit"],
    "additionalProperties": False,
}


def png(width: int = 2, height: int = 2) -> bytes:
    """A real (tiny, grey) PNG, so the server recognizes its media type from the bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [e async for e in events]


def text_of(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, Delta))


def final_of(events: list[StreamEvent]) -> Final:
    last = events[-1]
    assert isinstance(last, Final), last
    return last


# -- the simulated provider --------------------------------------------------------------------


@pytest_asyncio.fixture
async def server() -> AsyncIterator[RunningServer]:
    think = {"provider": "simulated", "capabilities": ["tools", "images", "reasoning"]}
    async with running_server(testing.test_settings({"models": {"sim-think": think}})) as rs:
        yield rs


async def test_a_two_turn_tool_loop_by_echoing_the_answer(server: RunningServer) -> None:
    async with AsyncClient(server.target, retry=NO_RETRY) as aurea:
        messages: list[Any] = [Message("user", "What is the weather in Paris?")]
        c = await aurea.generate(messages=messages, tools=[WEATHER])
        assert c.finish_reason == "tool_calls" and c.text == ""
        [call] = c.tool_calls
        assert call.name == "get_weather" and call.id.startswith("call_")
        assert isinstance(call.parsed_arguments()["city"], str)
        echoed = c.message()
        assert echoed == Message("assistant", "", tool_calls=(call,))
        messages += [echoed, Message.tool_result(call.id, {"temp": 21})]
        second = await aurea.generate(messages=messages, tools=[WEATHER])
        assert second.finish_reason == "stop" and second.text and not second.tool_calls
        assert second.usage.input_tokens > c.usage.input_tokens  # the call and result were sent
        # A result that names no earlier call is refused, with the field named.
        wrong = [*messages[:2], Message.tool_result("call_nobody", "x")]
        with pytest.raises(InvalidArgument) as bad:
            await aurea.generate(messages=wrong, tools=[WEATHER])
        assert "messages[2].tool_call_id" in bad.value.fields


async def test_tool_choice_and_tools_as_mappings(server: RunningServer) -> None:
    openai_style = {
        "type": "function",
        "function": {"name": "get_time", "parameters": TIME.parameters},
    }
    async with AsyncClient(server.target, retry=NO_RETRY) as aurea:
        both = await aurea.generate("both", tools=[WEATHER, openai_style], parallel_tool_calls=True)
        assert [c.name for c in both.tool_calls] == ["get_weather", "get_time"]
        named = await aurea.generate("one", tools=[WEATHER, openai_style], tool_choice="get_time")
        assert [c.name for c in named.tool_calls] == ["get_time"]
        none = await aurea.generate("talk", tools=[WEATHER], tool_choice="none")
        assert not none.tool_calls and none.text and none.finish_reason == "stop"
        with pytest.raises(InvalidArgument) as bad:
            await aurea.generate("x", tools=[WEATHER], tool_choice="missing_tool")
        assert bad.value.fields == ["tool_choice"]
        # The messages of a loop may be plain mappings too (OpenAI's call shape included).
        call = both.tool_calls[1]
        history = [
            {"role": "user", "content": "both"},
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": a}}
                    for c, a in zip(
                        both.tool_calls,
                        [json.loads(both.tool_calls[0].arguments), call.arguments],
                        strict=True,
                    )
                ],
            },
            {"role": "tool", "tool_call_id": both.tool_calls[0].id, "content": "sunny"},
            {"role": "tool", "tool_call_id": call.id, "content": "noon"},
        ]
        after = await aurea.generate(messages=history, tools=[WEATHER, openai_style])
        assert after.finish_reason == "stop" and after.text


async def test_json_schema_and_json_object_answers(server: RunningServer) -> None:
    async with AsyncClient(server.target, retry=NO_RETRY) as aurea:
        answer = await aurea.generate(
            "A forecast as JSON", json_schema=SCHEMA, strict=True, max_tokens=400
        )
        value = json.loads(answer.text)
        assert set(value) == {"city", "days", "unit"}
        assert 1 <= value["days"] <= 7 and value["unit"] in ("c", "f")
        events = await collect(
            aurea.stream("A forecast as JSON", json_schema=SCHEMA, strict=True, max_tokens=400)
        )
        assert text_of(events) == answer.text
        anything = await aurea.generate("any JSON", json_object=True)
        assert isinstance(json.loads(anything.text), dict)
        with pytest.raises(ValueError, match="strict"):
            await aurea.generate("x", strict=True)


async def test_images_are_sent_with_the_prompt(server: RunningServer, tmp_path: Path) -> None:
    picture = tmp_path / "grey.png"
    picture.write_bytes(png())
    async with AsyncClient(server.target, retry=NO_RETRY) as aurea:
        # Each call on its own model: the simulated provider keeps plans by model and text.
        plain = await aurea.generate("Describe it", model="sim-large")
        seen = await aurea.generate(
            "Describe it",
            model="sim-small",
            images=[png(), picture, "https://example.com/cat.jpg"],
        )
        # The simulated provider counts 85 tokens an image (and does not look at them).
        assert seen.usage.input_tokens - plain.usage.input_tokens >= 3 * 85
        one = await aurea.generate(
            messages=[Message("user", "Describe it", images=[Image.from_file(picture)])],
            model="sim-think",
        )
        assert one.usage.input_tokens - plain.usage.input_tokens >= 85
        # Bytes that are no image the server recognizes are refused, the part named.
        with pytest.raises(InvalidArgument) as bad:
            await aurea.generate("x", images=[b"not an image"])
        assert bad.value.fields == ["messages[0].parts[1].image.media_type"]


async def test_reasoning_unary_and_streamed(server: RunningServer) -> None:
    async with AsyncClient(server.target, retry=NO_RETRY) as aurea:
        c = await aurea.generate("Think first", model="sim-think", reasoning_effort="low")
        assert c.reasoning and c.reasoning not in c.text
        assert c.reasoning_kind in ("text", "summary")
        events = await collect(
            aurea.stream("Think first", model="sim-think", reasoning_effort="low")
        )
        pieces = [e for e in events if isinstance(e, ReasoningDelta)]
        assert "".join(p.text for p in pieces) == c.reasoning
        assert all(p.kind == c.reasoning_kind for p in pieces)
        assert text_of(events) == c.text
        plain = await aurea.generate("Think first", model="sim-think")
        assert plain.reasoning == "" and plain.reasoning_kind is None
        with pytest.raises(InvalidArgument) as bad:
            await aurea.generate("x", model="sim-small", reasoning_effort="high")
        assert bad.value.reason == "UNSUPPORTED_FEATURE"


async def test_a_stream_yields_tool_call_pieces_and_a_final_with_the_calls(
    server: RunningServer,
) -> None:
    async with AsyncClient(server.target, retry=NO_RETRY) as aurea:
        unary = await aurea.generate("both", tools=[WEATHER, TIME], parallel_tool_calls=True)
        events = await collect(
            aurea.stream("both", tools=[WEATHER, TIME], parallel_tool_calls=True)
        )
        pieces = [e for e in events if isinstance(e, ToolCallDelta)]
        final = final_of(events)
        assert final.finish_reason == "tool_calls"
        assert final.tool_calls == unary.tool_calls
        for index, call in enumerate(final.tool_calls):
            mine = [p for p in pieces if p.index == index]
            assert (mine[0].id, mine[0].name) == (call.id, call.name)
            assert "".join(p.arguments for p in mine) == call.arguments
        assert len(pieces) > len(final.tool_calls)  # arguments come in pieces
        # The stream's answer echoed carries the loop on, as the unary one does.
        messages = [
            Message("user", "both"),
            final.message(text_of(events)),
            *[Message.tool_result(c.id, "done") for c in final.tool_calls],
        ]
        after = await collect(aurea.stream(messages=messages, tools=[WEATHER, TIME]))
        assert final_of(after).finish_reason == "stop" and text_of(after)


async def test_the_blocking_client_runs_the_loop_too(server: RunningServer) -> None:
    def work() -> tuple[Completion, Completion, list[StreamEvent]]:
        with Client(server.target, retry=NO_RETRY) as aurea:
            first = aurea.generate("Paris?", tools=[WEATHER], tool_choice="required")
            history = [
                ("user", "Paris?"),
                first.message(),
                Message.tool_result(first.tool_calls[0].id, "sunny"),
            ]
            second = aurea.generate(messages=history, tools=[WEATHER])
            events = list(aurea.stream("Paris?", tools=[WEATHER], tool_choice="required"))
            return first, second, events

    first, second, events = await asyncio.to_thread(work)
    assert first.finish_reason == "tool_calls" and second.finish_reason == "stop"
    assert any(isinstance(e, ToolCallDelta) for e in events)
    assert final_of(events).tool_calls == first.tool_calls


# -- what the client builds before sending -----------------------------------------------------


def test_messages_tuples_and_mappings_become_the_same_request() -> None:
    call = ToolCall("call_1", "get_weather", '{"city": "Paris"}', "sig")
    block = ReasoningBlock("anthropic_thinking", "hmm", "sig-1")
    typed = Message("assistant", "", tool_calls=[call], reasoning_blocks=[block])
    mapped = {
        "role": "assistant",
        "tool_calls": [
            {
                "id": "call_1",
                "name": "get_weather",
                "arguments": {"city": "Paris"},
                "signature": "sig",
            }
        ],
        "reasoning_blocks": [{"format": "anthropic_thinking", "text": "hmm", "signature": "sig-1"}],
    }
    assert message_pb(typed) == message_pb(mapped)
    sent = message_pb(typed)
    assert sent.role == pb.ROLE_ASSISTANT and sent.tool_calls[0].signature == "sig"
    assert sent.reasoning_blocks[0].format == pb.REASONING_BLOCK_FORMAT_ANTHROPIC_THINKING
    assert message_pb(("user", "hi")) == message_pb(Message("user", "hi"))
    assert message_pb({"role": "user", "content": "hi"}) == pb.ChatMessage(
        role=pb.ROLE_USER, content="hi"
    )
    result = message_pb(Message.tool_result("call_1", {"temp": 21}))
    assert (result.role, result.tool_call_id) == (pb.ROLE_TOOL, "call_1")
    assert json.loads(result.content) == {"temp": 21}
    # Images make the message parts: its text first, then the images (or parts as given).
    seen = message_pb(Message("user", "look", images=[b"\x89PNG", "https://x.test/a.png"]))
    assert seen.content == "" and [p.WhichOneof("part") for p in seen.parts] == [
        "text",
        "image",
        "image",
    ]
    assert seen.parts[2].image.url == "https://x.test/a.png"
    ordered = message_pb(
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "https://x.test/a.png"}},
                {"type": "text", "text": "what is this?"},
            ],
        }
    )
    assert [p.WhichOneof("part") for p in ordered.parts] == ["image", "text"]


def test_what_cannot_be_sent_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="role"):
        Message("bot", "hi")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tool_call_ids"):
        message_pb({"role": "tool", "tool_call_ids": "c", "content": "x"})
    with pytest.raises(ValueError, match="URL"):
        Message("user", "x", images=["cat.png"])  # a file is a Path, not a str
    with pytest.raises(ValueError, match="url or data"):
        Image()
    with pytest.raises(ValueError, match="not both"):
        Message("user", "x", parts=["y"])
    with pytest.raises(ValueError, match="format"):
        message_pb(Message("assistant", "x", reasoning_blocks=[ReasoningBlock("bogus")]))  # type: ignore[arg-type]


# -- thinking models: the signed reasoning goes back through c.message() ------------------------

VENDORS = ("anthropic", "gemini")
MODEL = {"anthropic": "claude-think", "gemini": "gemini-think"}
UPSTREAM = {"anthropic": "claude-sonnet-4-20250514", "gemini": "gemini-3-pro-preview"}
KEYS = {"anthropic": "sk-ant-pyc-1", "gemini": "AIza-pyc-2"}
ENV = {v: f"PYCLIENT_{v.upper()}_KEY" for v in KEYS}
PLAN = [("get_weather", '{"city": "Paris"}'), ("get_time", '{"timezone": "Europe/Paris"}')]
QUESTION = "What is the weather and the time in Paris?"


class Rig:
    def __init__(self, fakes: dict[str, Any], server: RunningServer) -> None:
        self.fakes = fakes
        self.server = server


@pytest_asyncio.fixture
async def rig() -> AsyncIterator[Rig]:
    fakes: dict[str, Any] = {
        "anthropic": FakeAnthropic(api_key=KEYS["anthropic"]),
        "gemini": FakeGemini(api_key=KEYS["gemini"]),
    }
    with pytest.MonkeyPatch.context() as mp:
        for vendor, key in KEYS.items():
            mp.setenv(ENV[vendor], key)
        for fake in fakes.values():
            await fake.start()
            fake.tool_calls = list(PLAN)
            fake.thoughts = "The user wants the weather; I should call the tools."
        try:
            settings = testing.test_settings(
                {
                    "providers": {
                        v: {"kind": v, "base_url": f.base_url, "api_key_env": ENV[v]}
                        for v, f in fakes.items()
                    },
                    "models": {
                        MODEL[v]: {
                            "provider": v,
                            "upstream": UPSTREAM[v],
                            "capabilities": ["tools", "reasoning"],
                        }
                        for v in VENDORS
                    },
                    "retry": {"max_retries": 0},
                    "breaker": {"failure_threshold": 1_000_000},
                }
            )
            async with running_server(settings) as server:
                yield Rig(fakes, server)
        finally:
            for fake in fakes.values():
                await fake.stop()


@pytest.mark.parametrize("mode", ["unary", "stream"])
@pytest.mark.parametrize("vendor", VENDORS)
async def test_tool_use_with_thinking_continues_by_echoing_the_message(
    rig: Rig, vendor: str, mode: str
) -> None:
    async def turn(aurea: AsyncClient, messages: list[Any]) -> tuple[Message, str]:
        kwargs: dict[str, Any] = {
            "messages": messages,
            "model": MODEL[vendor],
            "tools": [WEATHER, TIME],
            "reasoning_effort": "low",
        }
        if mode == "unary":
            c = await aurea.generate(**kwargs)
            return c.message(), c.text
        events = await collect(aurea.stream(**kwargs))
        assert any(isinstance(e, ReasoningDelta) for e in events)
        return final_of(events).message(text_of(events)), text_of(events)

    async with AsyncClient(rig.server.target, retry=NO_RETRY) as aurea:
        messages: list[Any] = [Message("user", QUESTION)]
        answer, _ = await turn(aurea, messages)
        assert [c.name for c in answer.tool_calls] == ["get_weather", "get_time"]
        if vendor == "anthropic":
            [block] = answer.reasoning_blocks
            assert block.format == "anthropic_thinking" and block.signature
        else:
            assert answer.tool_calls[0].signature and not answer.reasoning_blocks
        results = [Message.tool_result(c.id, {"ok": c.name}) for c in answer.tool_calls]
        _, text = await turn(aurea, [*messages, answer, *results])
        assert text.startswith("Tool results: ")
        sent = rig.fakes[vendor].last_request_body
        if vendor == "anthropic":
            thinking = sent["messages"][1]["content"][0]
            assert thinking["type"] == "thinking"
            assert thinking["signature"] == answer.reasoning_blocks[0].signature
        else:
            assert sent["contents"][1]["parts"][0]["thoughtSignature"] == (
                answer.tool_calls[0].signature
            )
        # Without the blocks and signatures the provider refuses the turn.
        bare = Message(
            "assistant",
            "",
            tool_calls=[ToolCall(c.id, c.name, c.arguments) for c in answer.tool_calls],
        )
        with pytest.raises(InvalidArgument):
            await turn(aurea, [*messages, bare, *results])


async def test_the_tool_loop_example_runs(server: RunningServer) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        "--target",
        server.target,
        "--model",
        "sim-think",
        "--reasoning",
        "low",
        "What is the weather in Paris?",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("AUREA_")},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    lines = out.decode().splitlines()
    assert lines[0].startswith("[reasoning] ")
    assert any(line.startswith("tool get_weather(") and "'temp_c': 21" in line for line in lines)
    assert lines[-1].startswith("answer: ") and len(lines[-1]) > len("answer: ")


@pytest.mark.parametrize(
    ("readme", "marker"),
    [("README.md", "python-client-tools"), ("clients/python/README.md", "tools")],
)
async def test_the_readmes_tool_loops_run(
    readme: str, marker: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (EXAMPLE.parents[3] / readme).read_text()
    found = re.search(rf"<!-- example: {marker} -->\n```python\n(.*?)```", text, re.S)
    assert found, f"{readme} lost its tool-loop example"
    think = {"provider": "simulated", "capabilities": ["tools", "reasoning"]}
    settings = testing.test_settings(
        {"models": {"sim-think": think}, "routing": {"default_model": "sim-think"}}
    )
    async with running_server(settings) as rs:
        monkeypatch.setenv("AUREA_TARGET", rs.target)
        monkeypatch.delenv("AUREA_API_KEY", raising=False)
        printed: list[str] = []
        scope = {"print": lambda *a: printed.append(" ".join(map(str, a)))}
        await asyncio.to_thread(exec, compile(found.group(1), readme, "exec"), scope)
    assert printed and printed[0]  # the loop ended with a text answer
    assert scope["c"].finish_reason == "stop" and len(scope["m"]) == 3  # user, call, result
