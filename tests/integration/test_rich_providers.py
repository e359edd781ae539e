"""Rich generation end to end through gRPC, against the OpenAI, Anthropic and Gemini wire-format
fakes: two-turn tool round trips (unary and streamed, parallel calls kept in order with their
ids, streamed argument pieces reassembling to exactly what the fake sent), structured output in
each vendor's own format (and a strict schema refused up front), images by URL and inline, a
mid-stream failover with tool calls in flight, reasoning, and token estimates for tools."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio
from providers_conftest import StreamRun, failure_of, run_stream

from aurea import testing
from aurea.testing import RunningServer, running_server
from aurea.testing.fakes import FakeAnthropic, FakeGemini, FakeOpenAI, FakeServer, Fault, FaultKind
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

VENDORS = ("openai", "anthropic", "gemini")
MODEL = {"openai": "gpt-x", "anthropic": "claude-x", "gemini": "gemini-x", "compat": "compat-x"}
UPSTREAM = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-20250514",
    "gemini": "gemini-2.5-flash",
    "compat": "deepseek-r1",
}
KEYS = {
    "openai": "sk-rich-1",
    "anthropic": "sk-ant-rich-2",
    "gemini": "AIza-rich-3",
    "compat": "c-4",
}
ENV = {v: f"RICH_{v.upper()}_KEY" for v in KEYS}
WEATHER = '{"city": "Paris", "unit": "celsius"}'
TIME = '{"timezone":"Europe/Paris","format":"24h"}'
PLAN = [("get_weather", WEATHER), ("get_time", TIME)]
TOOLS = [
    pb.Tool(
        name="get_weather",
        description="The weather in a city",
        parameters_json_schema=json.dumps(
            {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city"],
            }
        ),
    ),
    pb.Tool(
        name="get_time",
        description="The time in a timezone",
        parameters_json_schema=json.dumps(
            {"type": "object", "properties": {"timezone": {"type": "string"}}}
        ),
    ),
]
SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temp": {"type": ["integer", "null"]}},
    "required": ["city", "temp"],
    "additionalProperties": False,
}
JSON_ANSWER = '{"city": "Paris", "temp": 21}'


def png(width: int = 2, height: int = 3) -> bytes:
    """A valid PNG of ``width`` x ``height`` grey pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    raw = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


class Rig:
    def __init__(self, fakes: dict[str, FakeServer], server: RunningServer) -> None:
        self.fakes = fakes
        self.server = server
        self.stub = inference_pb2_grpc.InferenceServiceStub(server.channel)

    def fake(self, vendor: str) -> Any:
        return self.fakes[vendor]

    def reset(self) -> None:
        for fake in self.fakes.values():
            fake.faults.clear()
            fake.tool_calls = []
            fake.json_answer = None
            fake.thoughts = ""


def config(fakes: dict[str, FakeServer]) -> dict[str, Any]:
    providers: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for vendor, fake in fakes.items():
        kind = "openai" if vendor == "compat" else vendor
        providers[vendor] = {
            "kind": kind,
            "base_url": fake.base_url,
            "api_key_env": ENV[vendor],
            "first_byte_timeout_s": 5,
            "idle_timeout_s": 5,
            "total_timeout_s": 20,
        }
        models[MODEL[vendor]] = {"provider": vendor, "upstream": UPSTREAM[vendor]}
    # Reasoning must be listed; the Anthropic model also accepts a prefill (so the failover
    # test shows an answer with tool calls is restarted even where it could be continued).
    models["claude-x"] |= {
        "capabilities": ["tools", "json_schema", "images", "reasoning"],
        "accepts_prefill": True,
    }
    models["gemini-x"]["capabilities"] = ["tools", "json_schema", "images", "reasoning"]
    models["compat-x"]["capabilities"] = ["tools", "reasoning"]
    # Text only: no capability at all.
    models["plain-x"] = {"provider": "openai", "upstream": "gpt-3.5", "capabilities": []}
    return {
        "providers": providers,
        "models": models,
        "routing": {"default_model": "gpt-x"},
        "retry": {"max_retries": 0},
        "breaker": {"failure_threshold": 1_000_000},
        "limits": {"upstream_hold_max_s": 0},
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig() -> AsyncIterator[Rig]:
    compat = FakeOpenAI(api_key=KEYS["compat"])
    compat.ignore_include_usage = True  # usage is estimated: the tool definitions count
    fakes: dict[str, FakeServer] = {
        "openai": FakeOpenAI(api_key=KEYS["openai"]),
        "anthropic": FakeAnthropic(api_key=KEYS["anthropic"]),
        "gemini": FakeGemini(api_key=KEYS["gemini"]),
        "compat": compat,
    }
    with pytest.MonkeyPatch.context() as mp:
        for vendor, key in KEYS.items():
            mp.setenv(ENV[vendor], key)
        for fake in fakes.values():
            await fake.start()
        try:
            async with running_server(testing.test_settings(config(fakes))) as server:
                yield Rig(fakes, server)
        finally:
            for fake in fakes.values():
                await fake.stop()


@pytest.fixture
def r(rig: Rig) -> Rig:
    rig.reset()
    return rig


def stream_request(**fields: Any) -> pb.GenerateStreamRequest:
    failover = fields.pop("mid_stream_failover", pb.MID_STREAM_FAILOVER_UNSPECIFIED)
    return pb.GenerateStreamRequest(
        request=pb.GenerateRequest(**fields), mid_stream_failover=failover
    )


def assembled(run: StreamRun) -> dict[int, dict[str, str]]:
    """The tool calls a client rebuilds from the ``tool_call`` events (since the last restart)."""
    calls: dict[int, dict[str, str]] = {}
    for event in run.events:
        kind = event.WhichOneof("event")
        if kind == "fallback" and event.fallback.restart:
            calls.clear()
        elif kind == "tool_call":
            d = event.tool_call
            call = calls.setdefault(d.index, {"id": "", "name": "", "arguments": ""})
            if d.id:
                assert not call["id"], "a call's id comes once"
                call["id"] = d.id
            if d.name:
                call["name"] = d.name
            call["arguments"] += d.arguments
    return calls


def same_json(vendor: str, mode: str, got: str, sent: str) -> None:
    """OpenAI sends the arguments' text as the model wrote it, and Anthropic streams it so;
    Gemini (and Anthropic's whole reply) send an object, which Aurea writes as JSON (equal as
    JSON, not as text)."""
    if vendor == "gemini" or (vendor == "anthropic" and mode == "unary"):
        assert json.loads(got) == json.loads(sent)
    else:
        assert got == sent


async def first_turn(r: Rig, vendor: str, mode: str) -> tuple[list[pb.ToolCall], Any]:
    request = dict(prompt="What is the weather and the time in Paris?", model=MODEL[vendor])
    if mode == "unary":
        reply = await r.stub.Generate(pb.GenerateRequest(**request, tools=TOOLS), timeout=20)
        assert reply.finish_reason == pb.FINISH_REASON_TOOL_CALLS
        assert reply.text == ""
        return list(reply.tool_calls), reply
    run = await run_stream(r.server, stream_request(**request, tools=TOOLS))
    assert run.failure is None, run.failure
    run.check_order()
    final = run.final
    assert final.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    calls = assembled(run)
    assert sorted(calls) == [0, 1]
    for i, call in enumerate(final.tool_calls):
        assert calls[i] == {"id": call.id, "name": call.name, "arguments": call.arguments}
    # Pieces arrive in order: no piece of call 1 before call 0 is whole.
    indexes = [e.tool_call.index for e in run.events if e.HasField("tool_call")]
    assert indexes == sorted(indexes)
    return list(final.tool_calls), final


@pytest.mark.parametrize("mode", ["unary", "stream"])
@pytest.mark.parametrize("vendor", VENDORS)
async def test_two_turn_tool_round_trip(r: Rig, vendor: str, mode: str) -> None:
    fake = r.fake(vendor)
    fake.tool_calls = list(PLAN)
    calls, _ = await first_turn(r, vendor, mode)
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    same_json(vendor, mode, calls[0].arguments, WEATHER)
    same_json(vendor, mode, calls[1].arguments, TIME)
    assert calls[0].id and calls[1].id and calls[0].id != calls[1].id
    sent = fake.last_request_body
    if vendor == "openai":
        assert [t["function"]["name"] for t in sent["tools"]] == ["get_weather", "get_time"]
        assert sent["tools"][0]["function"]["parameters"]["required"] == ["city"]
        assert [c.id for c in calls] == [
            f"call_fake{fake.request_count}_0",
            f"call_fake{fake.request_count}_1",
        ]
    elif vendor == "anthropic":
        assert [t["name"] for t in sent["tools"]] == ["get_weather", "get_time"]
        assert sent["tools"][0]["input_schema"]["required"] == ["city"]
        assert [c.id for c in calls] == [
            f"toolu_fake{fake.request_count}_0",
            f"toolu_fake{fake.request_count}_1",
        ]
    else:
        declared = sent["tools"][0]["functionDeclarations"]
        assert [d["name"] for d in declared] == ["get_weather", "get_time"]
        assert declared[0]["parameters"]["properties"]["city"] == {"type": "STRING"}

    # Turn two: the client sends the calls back with their results.
    messages = [
        pb.ChatMessage(role=pb.ROLE_USER, content="What is the weather and the time in Paris?"),
        pb.ChatMessage(role=pb.ROLE_ASSISTANT, tool_calls=calls),
        pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id=calls[0].id, content='{"temp": 21}'),
        pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id=calls[1].id, content="14:05"),
    ]
    if mode == "unary":
        reply = await r.stub.Generate(
            pb.GenerateRequest(messages=messages, model=MODEL[vendor], tools=TOOLS), timeout=20
        )
        text, finish = reply.text, reply.finish_reason
        assert not reply.tool_calls
    else:
        run = await run_stream(
            r.server, stream_request(messages=messages, model=MODEL[vendor], tools=TOOLS)
        )
        assert run.failure is None, run.failure
        text, finish = run.text, run.final.finish_reason
        assert not run.final.tool_calls
    assert finish == pb.FINISH_REASON_STOP
    sent = fake.last_request_body
    if vendor == "openai":
        assert text == 'Tool results: {"temp": 21} | 14:05'
        assistant = sent["messages"][1]
        assert assistant["content"] is None
        assert [c["id"] for c in assistant["tool_calls"]] == [c.id for c in calls]
        assert assistant["tool_calls"][1]["function"] == {
            "name": "get_time",
            "arguments": calls[1].arguments,
        }
        assert sent["messages"][2] == {
            "role": "tool",
            "content": '{"temp": 21}',
            "tool_call_id": calls[0].id,
        }
    elif vendor == "anthropic":
        assert text == 'Tool results: {"temp": 21} | 14:05'
        uses = sent["messages"][1]["content"]
        assert [b["type"] for b in uses] == ["tool_use", "tool_use"]
        assert uses[0]["input"] == json.loads(WEATHER)
        results = sent["messages"][2]
        assert results["role"] == "user" and len(sent["messages"]) == 3
        assert [(b["type"], b["tool_use_id"], b["content"]) for b in results["content"]] == [
            ("tool_result", calls[0].id, '{"temp": 21}'),
            ("tool_result", calls[1].id, "14:05"),
        ]
    else:
        assert text == 'Tool results: {"temp": 21} | {"result": "14:05"}'
        model_turn, answers = sent["contents"][1], sent["contents"][2]
        assert [p["functionCall"]["name"] for p in model_turn["parts"]] == PLAN_NAMES
        assert [p["functionResponse"] for p in answers["parts"]] == [
            {"name": "get_weather", "response": {"temp": 21}},
            {"name": "get_time", "response": {"result": "14:05"}},
        ]


PLAN_NAMES = [name for name, _ in PLAN]


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
async def test_one_tool_call_per_answer_when_asked(r: Rig, vendor: str) -> None:
    fake = r.fake(vendor)
    fake.tool_calls = list(PLAN)
    reply = await r.stub.Generate(
        pb.GenerateRequest(
            prompt="weather?", model=MODEL[vendor], tools=TOOLS, parallel_tool_calls=False
        ),
        timeout=20,
    )
    assert [c.name for c in reply.tool_calls] == ["get_weather"]
    sent = fake.last_request_body
    if vendor == "openai":
        assert sent["parallel_tool_calls"] is False
    else:
        assert sent["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


async def test_gemini_cannot_be_kept_to_one_call(r: Rig) -> None:
    before = r.fake("gemini").request_count
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await r.stub.Generate(
            pb.GenerateRequest(
                prompt="weather?", model="gemini-x", tools=TOOLS, parallel_tool_calls=False
            ),
            timeout=20,
        )
    failure = failure_of(info.value)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert failure.reason == "UNSUPPORTED_FEATURE"
    assert "gemini-2.5-flash" in failure.message and "one tool call" in failure.message
    assert r.fake("gemini").request_count == before


@pytest.mark.parametrize("vendor", VENDORS)
async def test_tool_choice_in_each_vendors_words(r: Rig, vendor: str) -> None:
    fake = r.fake(vendor)
    fake.tool_calls = list(PLAN)
    expected = {
        "openai": ("tool_choice", {"type": "function", "function": {"name": "get_time"}}),
        "anthropic": ("tool_choice", {"type": "tool", "name": "get_time"}),
        "gemini": (
            "toolConfig",
            {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}},
        ),
    }[vendor]
    reply = await r.stub.Generate(
        pb.GenerateRequest(
            prompt="time?",
            model=MODEL[vendor],
            tools=TOOLS,
            tool_choice=pb.ToolChoice(tool="get_time"),
        ),
        timeout=20,
    )
    assert fake.last_request_body[expected[0]] == expected[1]
    if vendor != "openai":  # (the OpenAI fake calls its whole plan, as told)
        assert [c.name for c in reply.tool_calls] == ["get_time"]
    await r.stub.Generate(
        pb.GenerateRequest(
            prompt="no tools now",
            model=MODEL[vendor],
            tools=TOOLS,
            tool_choice=pb.ToolChoice(mode=pb.TOOL_CHOICE_MODE_NONE),
        ),
        timeout=20,
    )
    none = {
        "openai": ("tool_choice", "none"),
        "anthropic": ("tool_choice", {"type": "none"}),
        "gemini": ("toolConfig", {"functionCallingConfig": {"mode": "NONE"}}),
    }[vendor]
    assert fake.last_request_body[none[0]] == none[1]


@pytest.mark.parametrize("mode", ["unary", "stream"])
@pytest.mark.parametrize("vendor", VENDORS)
async def test_schema_reaches_each_vendor_and_the_answer_comes_back(
    r: Rig, vendor: str, mode: str
) -> None:
    fake = r.fake(vendor)
    fake.json_answer = JSON_ANSWER
    fmt = pb.ResponseFormat(
        type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
        name="weather",
        json_schema=json.dumps(SCHEMA),
        strict=vendor == "openai",
        description="Today's weather",
    )
    request = dict(prompt="Weather in Paris as JSON", model=MODEL[vendor], response_format=fmt)
    if mode == "unary":
        reply = await r.stub.Generate(pb.GenerateRequest(**request), timeout=20)
        text, finish = reply.text, reply.finish_reason
    else:
        run = await run_stream(r.server, stream_request(**request))
        assert run.failure is None, run.failure
        text, finish = run.text, run.final.finish_reason
    assert finish == pb.FINISH_REASON_STOP
    if vendor == "anthropic" and mode == "unary":
        assert json.loads(text) == json.loads(JSON_ANSWER)  # the tool's input, re-written
    else:
        assert text == JSON_ANSWER  # as the model sent it, byte for byte
    sent = fake.last_request_body
    if vendor == "openai":
        assert sent["response_format"] == {
            "type": "json_schema",
            "json_schema": {
                "name": "weather",
                "schema": SCHEMA,
                "description": "Today's weather",
                "strict": True,
            },
        }
    elif vendor == "anthropic":
        assert sent["tools"] == [
            {"name": "weather", "description": "Today's weather", "input_schema": SCHEMA}
        ]
        assert sent["tool_choice"] == {"type": "tool", "name": "weather"}
    else:
        config = sent["generationConfig"]
        assert config["responseMimeType"] == "application/json"
        assert config["responseSchema"] == {
            "type": "OBJECT",
            "properties": {
                "city": {"type": "STRING"},
                "temp": {"type": "INTEGER", "nullable": True},
            },
            "required": ["city", "temp"],
        }


async def test_json_object_format(r: Rig) -> None:
    fake = r.fake("openai")
    fake.json_answer = '{"ok": true}'
    reply = await r.stub.Generate(
        pb.GenerateRequest(
            prompt="json",
            model="gpt-x",
            response_format=pb.ResponseFormat(type=pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT),
        ),
        timeout=20,
    )
    assert reply.text == '{"ok": true}'
    assert fake.last_request_body["response_format"] == {"type": "json_object"}


async def test_strict_schema_the_catalog_cannot_honour_is_refused_up_front(r: Rig) -> None:
    counts = {v: r.fake(v).request_count for v in VENDORS}
    fmt = pb.ResponseFormat(
        type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA, json_schema=json.dumps(SCHEMA), strict=True
    )
    for model in ("claude-x", "gemini-x"):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await r.stub.Generate(
                pb.GenerateRequest(prompt="json", model=model, response_format=fmt), timeout=20
            )
        failure = failure_of(info.value)
        assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
        assert failure.reason == "UNSUPPORTED_FEATURE"
        assert f"model {model!r} cannot serve this request" in failure.message
        assert "strict schemas" in failure.message
        bad = [v.field for v in failure.detail(_bad_request()).field_violations]
        assert bad == ["response_format.strict"]
    # A stream is refused the same way, before any event.
    run = await run_stream(
        r.server, stream_request(prompt="json", model="claude-x", response_format=fmt)
    )
    assert run.failure is not None and run.events == []
    assert run.failure.reason == "UNSUPPORTED_FEATURE"
    assert {v: r.fake(v).request_count for v in VENDORS} == counts  # no upstream saw it

    # With a capable fallback, the call skips the incapable model and is served there.
    r.fake("openai").json_answer = JSON_ANSWER
    reply = await r.stub.Generate(
        pb.GenerateRequest(
            prompt="json", model="claude-x", fallback_models=["gpt-x"], response_format=fmt
        ),
        timeout=20,
    )
    assert reply.model == "gpt-x" and reply.text == JSON_ANSWER
    assert r.fake("anthropic").request_count == counts["anthropic"]


def _bad_request() -> type[Any]:
    from google.rpc import error_details_pb2

    return error_details_pb2.BadRequest


async def test_a_text_only_model_is_never_sent_tools(r: Rig) -> None:
    before = r.fake("openai").request_count
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await r.stub.Generate(
            pb.GenerateRequest(prompt="weather?", model="plain-x", tools=TOOLS), timeout=20
        )
    failure = failure_of(info.value)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    assert failure.reason == "UNSUPPORTED_FEATURE"
    assert "plain-x lacks tool calls" in failure.message
    assert r.fake("openai").request_count == before


@pytest.mark.parametrize("vendor", VENDORS)
async def test_images_reach_each_vendor_in_its_format(r: Rig, vendor: str) -> None:
    image = png()
    parts = [
        pb.ContentPart(text="What is in these pictures?"),
        pb.ContentPart(image=pb.Image(url="https://example.com/cat.png")),
        pb.ContentPart(image=pb.Image(data=image)),  # media type recognized from the bytes
        pb.ContentPart(
            image=pb.Image(url="data:image/png;base64," + base64.b64encode(image).decode())
        ),
    ]
    request = pb.GenerateRequest(
        messages=[pb.ChatMessage(role=pb.ROLE_USER, parts=parts)], model=MODEL[vendor]
    )
    reply = await r.stub.Generate(request, timeout=20)
    assert reply.text == "Echo: What is in these pictures?"  # the fakes echo the text parts
    b64 = base64.b64encode(image).decode()
    content = r.fake(vendor).last_request_body
    if vendor == "openai":
        assert content["messages"][0]["content"] == [
            {"type": "text", "text": "What is in these pictures?"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{b64}"}},
        ]
    elif vendor == "anthropic":
        inline = {"type": "base64", "media_type": "image/png", "data": b64}
        assert content["messages"][0]["content"] == [
            {"type": "text", "text": "What is in these pictures?"},
            {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
            {"type": "image", "source": inline},
            {"type": "image", "source": inline},
        ]
    else:
        inline = {"inlineData": {"mimeType": "image/png", "data": b64}}
        assert content["contents"][0]["parts"] == [
            {"text": "What is in these pictures?"},
            {"fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}},
            inline,
            inline,
        ]


@pytest.mark.parametrize("stream", [False, True])
async def test_an_image_over_the_limit_is_invalid_argument(r: Rig, stream: bool) -> None:
    before = r.fake("openai").request_count
    big = png() + b"\x00" * (3 * 1024 * 1024)
    message = pb.ChatMessage(
        role=pb.ROLE_USER,
        parts=[pb.ContentPart(text="look"), pb.ContentPart(image=pb.Image(data=big))],
    )
    request = pb.GenerateRequest(messages=[message], model="gpt-x")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        if stream:
            call = r.stub.GenerateStream(pb.GenerateStreamRequest(request=request), timeout=20)
            async for _ in call:
                pass
        else:
            await r.stub.Generate(request, timeout=20)
    failure = failure_of(info.value)
    assert failure.code is grpc.StatusCode.INVALID_ARGUMENT
    violations = failure.detail(_bad_request()).field_violations
    assert [v.field for v in violations] == ["messages[0].parts[1].image.data"]
    assert "at most 3145728" in violations[0].description
    assert r.fake("openai").request_count == before


async def test_failover_with_tool_calls_in_flight_restarts_and_neither_duplicates_nor_loses(
    r: Rig,
) -> None:
    primary, fallback = r.fake("openai"), r.fake("anthropic")
    primary.tool_calls = list(PLAN)
    fallback.tool_calls = [("get_weather", '{"city": "Lyon"}'), ("get_time", '{"tz": "CET"}')]
    # The primary streams the first call's head and three argument pieces, then is cut.
    primary.inject(Fault(FaultKind.CUT_STREAM, after_tokens=4))
    run = await run_stream(
        r.server,
        stream_request(
            prompt="weather and time?",
            model="gpt-x",
            fallback_models=["claude-x"],
            tools=TOOLS,
            mid_stream_failover=pb.MID_STREAM_FAILOVER_CONTINUE_OR_RESTART,
        ),
    )
    assert run.failure is None, run.failure
    kinds = run.kinds
    fallbacks = [e.fallback for e in run.events if e.HasField("fallback")]
    assert len(fallbacks) == 1 and fallbacks[0].restart  # never continued by a prefill
    cut = kinds.index("fallback")
    assert "tool_call" in kinds[:cut]  # pieces of the primary's call had reached the client
    final = run.final
    assert final.model == "claude-x"
    assert final.finish_reason == pb.FINISH_REASON_TOOL_CALLS
    calls = assembled(run)
    assert [(c["name"], c["arguments"]) for _, c in sorted(calls.items())] == [
        ("get_weather", '{"city": "Lyon"}'),
        ("get_time", '{"tz": "CET"}'),
    ]
    assert [(c.id, c.name, c.arguments) for c in final.tool_calls] == [
        (c["id"], c["name"], c["arguments"]) for _, c in sorted(calls.items())
    ]
    # The fallback was asked afresh: no partial answer (or tool call) as a prefill.
    assert fallback.last_request_body["messages"] == [
        {"role": "user", "content": "weather and time?"}
    ]


async def test_failover_with_tool_calls_in_flight_without_restarts_ends_with_the_cut(
    r: Rig,
) -> None:
    primary, fallback = r.fake("openai"), r.fake("anthropic")
    primary.tool_calls = list(PLAN)
    primary.inject(Fault(FaultKind.CUT_STREAM, after_tokens=4))
    before = fallback.request_count
    run = await run_stream(
        r.server,
        stream_request(
            prompt="weather?", model="gpt-x", fallback_models=["claude-x"], tools=TOOLS
        ),  # MID_STREAM_FAILOVER_CONTINUE, the default
    )
    assert run.failure is not None
    assert run.failure.code is grpc.StatusCode.UNAVAILABLE
    assert run.failure.reason == "UPSTREAM_STREAM_BROKEN"
    assert "final" not in run.kinds and "fallback" not in run.kinds
    assert fallback.request_count == before  # a prefill-capable fallback was not used


@pytest.mark.parametrize("vendor", ["compat", "anthropic", "gemini"])
async def test_reasoning_deltas_marked_by_kind(r: Rig, vendor: str) -> None:
    fake = r.fake(vendor)
    fake.thoughts = "First the city, then the sky."
    run = await run_stream(
        r.server,
        stream_request(
            prompt="think", model=MODEL[vendor], reasoning_effort=pb.REASONING_EFFORT_MEDIUM
        ),
    )
    assert run.failure is None, run.failure
    pieces = [e.reasoning for e in run.events if e.HasField("reasoning")]
    assert "".join(p.text for p in pieces) == "First the city, then the sky."
    expected = pb.REASONING_KIND_TEXT if vendor == "compat" else pb.REASONING_KIND_SUMMARY
    assert {p.kind for p in pieces} == {expected}
    assert run.text == "Echo: think"  # the reasoning is never part of the text
    sent = fake.last_request_body
    if vendor == "compat":
        assert sent["reasoning_effort"] == "medium"
    elif vendor == "anthropic":
        assert sent["thinking"] == {"type": "enabled", "budget_tokens": 4096}
        assert sent["max_tokens"] > 4096
    else:
        assert sent["generationConfig"]["thinkingConfig"] == {
            "includeThoughts": True,
            "thinkingBudget": 4096,
        }
    reply = await r.stub.Generate(
        pb.GenerateRequest(
            prompt="think", model=MODEL[vendor], reasoning_effort=pb.REASONING_EFFORT_MEDIUM
        ),
        timeout=20,
    )
    assert reply.reasoning == "First the city, then the sky." and reply.reasoning_kind == expected
    assert reply.text == "Echo: think"


async def test_tool_definitions_count_in_estimated_usage(r: Rig) -> None:
    # The compat server reports no usage in streams: Aurea estimates it.
    plain = await run_stream(r.server, stream_request(prompt="hello", model="compat-x"))
    with_tools = await run_stream(
        r.server, stream_request(prompt="hello", model="compat-x", tools=TOOLS)
    )
    a, b = plain.final.usage, with_tools.final.usage
    assert a.source == b.source == pb.USAGE_SOURCE_ESTIMATED
    # 12 once, 8 per tool, and the tokens of each tool's name, description and schema.
    assert b.input_tokens - a.input_tokens > 12 + 2 * 8 + 20
