"""Multi-turn tool use with thinking models, end to end through gRPC against the Anthropic and
Gemini wire-format fakes (which sign what they hand out and refuse what a real API refuses):
the reasoning blocks and call signatures a first turn returns, echoed on the assistant message,
carry a two-turn tool conversation (unary and streamed); the same conversation without them gets
the provider's 400 as INVALID_ARGUMENT; a cached answer replays them; bad blocks are refused
before any upstream call."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest
import pytest_asyncio
from providers_conftest import run_stream

from aurea import testing
from aurea.testing import RunningServer, running_server
from aurea.testing.fakes import FakeAnthropic, FakeGemini
from aurea.testing.fakes._thinking import REDACTED_TRIGGER
from aurea.v1 import inference_pb2 as pb
from aurea.v1 import inference_pb2_grpc

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="module")]

VENDORS = ("anthropic", "gemini")
MODEL = {"anthropic": "claude-think", "gemini": "gemini-think"}
UPSTREAM = {"anthropic": "claude-sonnet-4-20250514", "gemini": "gemini-3-pro-preview"}
KEYS = {"anthropic": "sk-ant-sig-1", "gemini": "AIza-sig-2"}
ENV = {v: f"SIG_{v.upper()}_KEY" for v in KEYS}
THOUGHTS = "The user wants the weather; I should call get_weather for Paris."
PLAN = [("get_weather", '{"city": "Paris"}'), ("get_time", '{"timezone": "Europe/Paris"}')]
TOOLS = [
    pb.Tool(
        name="get_weather",
        parameters_json_schema=json.dumps(
            {"type": "object", "properties": {"city": {"type": "string"}}}
        ),
    ),
    pb.Tool(
        name="get_time",
        parameters_json_schema=json.dumps(
            {"type": "object", "properties": {"timezone": {"type": "string"}}}
        ),
    ),
]
QUESTION = "What is the weather and the time in Paris?"
RESULTS = ['{"temp": 21}', '{"time": "14:00"}']


class Rig:
    def __init__(self, anthropic: FakeAnthropic, gemini: FakeGemini, server: RunningServer):
        self.fakes: dict[str, Any] = {"anthropic": anthropic, "gemini": gemini}
        self.server = server
        self.stub = inference_pb2_grpc.InferenceServiceStub(server.channel)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig() -> AsyncIterator[Rig]:
    anthropic = FakeAnthropic(api_key=KEYS["anthropic"])
    gemini = FakeGemini(api_key=KEYS["gemini"])
    with pytest.MonkeyPatch.context() as mp:
        for vendor, key in KEYS.items():
            mp.setenv(ENV[vendor], key)
        await anthropic.start()
        await gemini.start()
        try:
            providers = {
                v: {"kind": v, "base_url": f.base_url, "api_key_env": ENV[v]}
                for v, f in (("anthropic", anthropic), ("gemini", gemini))
            }
            models = {
                MODEL[v]: {
                    "provider": v,
                    "upstream": UPSTREAM[v],
                    "capabilities": ["tools", "reasoning"],
                }
                for v in VENDORS
            }
            settings = testing.test_settings(
                {
                    "providers": providers,
                    "models": models,
                    "routing": {"default_model": MODEL["anthropic"]},
                    "retry": {"max_retries": 0},
                    "breaker": {"failure_threshold": 1_000_000},
                }
            )
            async with running_server(settings) as server:
                yield Rig(anthropic, gemini, server)
        finally:
            await anthropic.stop()
            await gemini.stop()


@pytest.fixture
def r(rig: Rig) -> Rig:
    for fake in rig.fakes.values():
        fake.faults.clear()
        fake.tool_calls = list(PLAN)
        fake.thoughts = THOUGHTS
    return rig


def request(vendor: str, messages: list[pb.ChatMessage], **more: Any) -> pb.GenerateRequest:
    return pb.GenerateRequest(
        messages=messages,
        model=MODEL[vendor],
        tools=TOOLS,
        reasoning_effort=pb.REASONING_EFFORT_LOW,
        **more,
    )


async def turn(
    r: Rig, mode: str, req: pb.GenerateRequest
) -> tuple[list[pb.ToolCall], list[pb.ReasoningBlock], str]:
    """One call: its tool calls, reasoning blocks and text (a failure raises grpc.RpcError)."""
    if mode == "unary":
        reply = await r.stub.Generate(req, timeout=20)
        return list(reply.tool_calls), list(reply.reasoning_blocks), reply.text
    run = await run_stream(r.server, pb.GenerateStreamRequest(request=req))
    if run.failure is not None:
        raise _StreamFailed(run.failure.code, run.failure.message)
    run.check_order()
    return list(run.final.tool_calls), list(run.final.reasoning_blocks), run.text


class _StreamFailed(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def second_turn(
    calls: list[pb.ToolCall], blocks: list[pb.ReasoningBlock], question: str = QUESTION
) -> list[pb.ChatMessage]:
    """The conversation a client sends next: the answer echoed, then the tools' results."""
    return [
        pb.ChatMessage(role=pb.ROLE_USER, content=question),
        pb.ChatMessage(role=pb.ROLE_ASSISTANT, tool_calls=calls, reasoning_blocks=blocks),
        *[
            pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id=c.id, content=result)
            for c, result in zip(calls, RESULTS, strict=True)
        ],
    ]


async def refused(r: Rig, mode: str, req: pb.GenerateRequest) -> tuple[grpc.StatusCode, str]:
    try:
        await turn(r, mode, req)
    except grpc.RpcError as err:
        return err.code(), err.details() or ""  # type: ignore[attr-defined]
    except _StreamFailed as failed:
        return failed.code, failed.message
    raise AssertionError("the call succeeded")


@pytest.mark.parametrize("mode", ["unary", "stream"])
@pytest.mark.parametrize("vendor", VENDORS)
async def test_tool_use_with_thinking_needs_the_echoed_blocks(
    r: Rig, vendor: str, mode: str
) -> None:
    fake = r.fakes[vendor]
    first = [pb.ChatMessage(role=pb.ROLE_USER, content=QUESTION)]
    calls, blocks, _ = await turn(r, mode, request(vendor, first))
    assert [c.name for c in calls] == ["get_weather", "get_time"]
    if vendor == "anthropic":
        assert [b.format for b in blocks] == [pb.REASONING_BLOCK_FORMAT_ANTHROPIC_THINKING]
        assert blocks[0].text == THOUGHTS and blocks[0].signature and not blocks[0].data
        assert not any(c.signature for c in calls)
    else:
        # Gemini signs the first call of a turn (parallel calls after it carry none).
        assert calls[0].signature and not calls[1].signature
        assert blocks == []

    # Echoed as returned: the provider takes the conversation on.
    _, _, text = await turn(r, mode, request(vendor, second_turn(calls, blocks)))
    assert text == "Tool results: " + " | ".join(
        RESULTS if vendor == "anthropic" else [json.dumps(json.loads(x)) for x in RESULTS]
    )
    sent = fake.last_request_body
    if vendor == "anthropic":
        assistant = sent["messages"][1]["content"]
        assert assistant[0] == {
            "type": "thinking",
            "thinking": THOUGHTS,
            "signature": blocks[0].signature,
        }
        assert [b["type"] for b in assistant[1:]] == ["tool_use", "tool_use"]
    else:
        parts = sent["contents"][1]["parts"]
        assert parts[0]["thoughtSignature"] == calls[0].signature
        assert "thoughtSignature" not in parts[1]

    # The same conversation without them: the provider's 400, as INVALID_ARGUMENT.
    bare = [pb.ToolCall(id=c.id, name=c.name, arguments=c.arguments) for c in calls]
    code, message = await refused(r, mode, request(vendor, second_turn(bare, [])))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    if vendor == "anthropic":
        assert "Expected `thinking` or `redacted_thinking`, but found `tool_use`" in message
    else:
        assert "Function call is missing a thought_signature" in message


@pytest.mark.parametrize("mode", ["unary", "stream"])
@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_changed_signature_is_refused_by_the_provider(
    r: Rig, vendor: str, mode: str
) -> None:
    first = [pb.ChatMessage(role=pb.ROLE_USER, content=QUESTION)]
    calls, blocks, _ = await turn(r, mode, request(vendor, first))
    if vendor == "anthropic":
        blocks = [
            pb.ReasoningBlock(format=b.format, text=b.text + " (edited)", signature=b.signature)
            for b in blocks
        ]
    else:
        calls[0].signature = calls[0].signature[::-1]
    code, message = await refused(r, mode, request(vendor, second_turn(calls, blocks)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "signature" in message.lower()


@pytest.mark.parametrize("mode", ["unary", "stream"])
async def test_anthropic_redacted_thinking_goes_back_verbatim(r: Rig, mode: str) -> None:
    question = f"{QUESTION} {REDACTED_TRIGGER}"
    first = [pb.ChatMessage(role=pb.ROLE_USER, content=question)]
    calls, blocks, _ = await turn(r, mode, request("anthropic", first))
    assert [b.format for b in blocks] == [
        pb.REASONING_BLOCK_FORMAT_ANTHROPIC_REDACTED_THINKING,
        pb.REASONING_BLOCK_FORMAT_ANTHROPIC_THINKING,
    ]
    assert blocks[0].data and not blocks[0].text and not blocks[0].signature
    await turn(r, mode, request("anthropic", second_turn(calls, blocks, question)))
    assistant = r.fakes["anthropic"].last_request_body["messages"][1]["content"]
    assert assistant[0] == {"type": "redacted_thinking", "data": blocks[0].data}
    assert assistant[1]["type"] == "thinking"
    # Without them, refused.
    code, _ = await refused(r, mode, request("anthropic", second_turn(calls, [], question)))
    assert code == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("mode", ["unary", "stream"])
async def test_gemini_text_signature_goes_back_on_the_text_part(r: Rig, mode: str) -> None:
    fake = r.fakes["gemini"]
    req = pb.GenerateRequest(
        prompt="Say hello", model=MODEL["gemini"], reasoning_effort=pb.REASONING_EFFORT_LOW
    )
    _, blocks, text = await turn(r, mode, req)
    assert [b.format for b in blocks] == [pb.REASONING_BLOCK_FORMAT_GEMINI_TEXT_SIGNATURE]
    assert blocks[0].signature and not blocks[0].text
    follow = pb.GenerateRequest(
        messages=[
            pb.ChatMessage(role=pb.ROLE_USER, content="Say hello"),
            pb.ChatMessage(role=pb.ROLE_ASSISTANT, content=text, reasoning_blocks=blocks),
            pb.ChatMessage(role=pb.ROLE_USER, content="Again"),
        ],
        model=MODEL["gemini"],
        reasoning_effort=pb.REASONING_EFFORT_LOW,
    )
    await turn(r, mode, follow)
    model_turn = fake.last_request_body["contents"][1]
    assert model_turn == {
        "role": "model",
        "parts": [{"text": text, "thoughtSignature": blocks[0].signature}],
    }


@pytest.mark.parametrize("mode", ["unary", "stream"])
@pytest.mark.parametrize("vendor", VENDORS)
async def test_a_cached_answer_replays_its_blocks(r: Rig, vendor: str, mode: str) -> None:
    fake = r.fakes[vendor]
    # A question of its own per case, so no other test's entry answers it.
    question = f"{QUESTION} ({vendor}, {mode})"
    first = [pb.ChatMessage(role=pb.ROLE_USER, content=question)]
    req = request(vendor, first, cache_mode=pb.CACHE_MODE_READ_WRITE)
    calls, blocks, _ = await turn(r, mode, req)
    before = fake.request_count
    if mode == "unary":
        again = await r.stub.Generate(req, timeout=20)
        assert again.cache_hit
        replayed_calls, replayed = list(again.tool_calls), list(again.reasoning_blocks)
    else:
        run = await run_stream(r.server, pb.GenerateStreamRequest(request=req))
        assert run.failure is None and run.final.cache_hit
        replayed_calls, replayed = list(run.final.tool_calls), list(run.final.reasoning_blocks)
    assert fake.request_count == before  # answered from the cache
    assert replayed == blocks and replayed_calls == calls
    assert blocks or any(c.signature for c in calls)
    # What the cache gave back carries the conversation on.
    await turn(r, mode, request(vendor, second_turn(replayed_calls, replayed, question)))


def _block(**fields: Any) -> pb.ReasoningBlock:
    fields.setdefault("format", pb.REASONING_BLOCK_FORMAT_ANTHROPIC_THINKING)
    return pb.ReasoningBlock(**fields)


BAD = [
    # (the message, the field violation expected)
    (
        pb.ChatMessage(role=pb.ROLE_USER, content="hi", reasoning_blocks=[_block(signature="s")]),
        "messages[0].reasoning_blocks",
    ),
    (
        pb.ChatMessage(
            role=pb.ROLE_ASSISTANT,
            content="hi",
            reasoning_blocks=[_block(signature="s")] * 65,
        ),
        "messages[0].reasoning_blocks",
    ),
    (
        pb.ChatMessage(
            role=pb.ROLE_ASSISTANT,
            content="hi",
            reasoning_blocks=[_block(text="t", signature="s" * 65_537)],
        ),
        "messages[0].reasoning_blocks[0].signature",
    ),
    (
        pb.ChatMessage(
            role=pb.ROLE_ASSISTANT,
            content="hi",
            reasoning_blocks=[_block(format=pb.REASONING_BLOCK_FORMAT_UNSPECIFIED, signature="s")],
        ),
        "messages[0].reasoning_blocks[0].format",
    ),
    (
        pb.ChatMessage(role=pb.ROLE_ASSISTANT, content="hi", reasoning_blocks=[_block(text="t")]),
        "messages[0].reasoning_blocks[0].signature",
    ),
    (
        pb.ChatMessage(
            role=pb.ROLE_ASSISTANT,
            content="hi",
            reasoning_blocks=[
                _block(format=pb.REASONING_BLOCK_FORMAT_ANTHROPIC_REDACTED_THINKING, data="")
            ],
        ),
        "messages[0].reasoning_blocks[0].data",
    ),
    (
        pb.ChatMessage(
            role=pb.ROLE_ASSISTANT,
            tool_calls=[pb.ToolCall(id="c1", name="get_weather", signature="x" * 65_537)],
        ),
        "messages[0].tool_calls[0].signature",
    ),
]


@pytest.mark.parametrize(("message", "field"), BAD, ids=[f for _, f in BAD])
async def test_bad_blocks_are_invalid_arguments(
    r: Rig, details: Callable[[grpc.RpcError], Any], message: pb.ChatMessage, field: str
) -> None:
    before = {v: f.request_count for v, f in r.fakes.items()}
    messages = [message, pb.ChatMessage(role=pb.ROLE_USER, content="go on")]
    if message.tool_calls:
        messages[1] = pb.ChatMessage(role=pb.ROLE_TOOL, tool_call_id="c1", content="{}")
    with pytest.raises(grpc.RpcError) as caught:
        await r.stub.Generate(request("anthropic", messages), timeout=20)
    got = details(caught.value)
    assert got.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in got.fields, got.fields
    assert {v: f.request_count for v, f in r.fakes.items()} == before  # never sent upstream
