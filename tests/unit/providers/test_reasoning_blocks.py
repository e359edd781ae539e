"""Reasoning blocks and thought signatures in the Anthropic and Gemini adapters, read from the
wire shapes the real APIs send (scripted verbatim, so they need no fake logic) and written back
in each provider's own shape: Anthropic's blocks first in the assistant turn, Gemini's signatures
on the parts they came on, another provider's blocks left out."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from provider_helpers import chat, collect, make_spec

from aurea.providers._anthropic_shapes import messages_json
from aurea.providers._base import (
    ChatMessage,
    ProviderRequest,
    ReasoningBlock,
    ReasoningFormat,
    Role,
    ToolCall,
    ToolCallDelta,
)
from aurea.providers._gemini_shapes import contents_json
from aurea.providers.anthropic import AnthropicProvider
from aurea.providers.gemini import GeminiProvider
from aurea.testing.fakes import FakeAnthropic, FakeGemini, Scripted

THINK = ReasoningBlock(format=ReasoningFormat.ANTHROPIC_THINKING, text="hmm", signature="EqA1")
REDACTED = ReasoningBlock(format=ReasoningFormat.ANTHROPIC_REDACTED, data="ZW5j")
THOUGHT = ReasoningBlock(format=ReasoningFormat.GEMINI_THOUGHT, text="plan", signature="Z1")
TEXT_SIG = ReasoningBlock(format=ReasoningFormat.GEMINI_TEXT_SIGNATURE, signature="Z2")
CALL = ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}', signature="Z3")
ASSISTANT = ChatMessage(
    Role.ASSISTANT,
    "Let me look.",
    tool_calls=(CALL,),
    reasoning_blocks=(REDACTED, THINK, THOUGHT, TEXT_SIG),
)
CONVERSATION = (
    ChatMessage(Role.USER, "Weather?"),
    ASSISTANT,
    ChatMessage(Role.TOOL, '{"temp": 21}', tool_call_id="call_1"),
)


def test_anthropic_sends_its_blocks_first_and_leaves_geminis_out() -> None:
    turn = messages_json(CONVERSATION)[1]
    assert turn == {
        "role": "assistant",
        "content": [
            {"type": "redacted_thinking", "data": "ZW5j"},
            {"type": "thinking", "thinking": "hmm", "signature": "EqA1"},
            {"type": "text", "text": "Let me look."},
            {
                "type": "tool_use",
                "id": "call_1",
                "name": "get_weather",
                "input": {"city": "Paris"},
            },
        ],
    }
    # A text answer with only another provider's blocks stays a plain string.
    only_gemini = ChatMessage(Role.ASSISTANT, "Hi", reasoning_blocks=(TEXT_SIG,))
    assert messages_json((only_gemini,)) == [{"role": "assistant", "content": "Hi"}]


def test_gemini_puts_each_signature_back_on_its_part() -> None:
    request = ProviderRequest(model="gemini-3-pro-preview", messages=CONVERSATION)
    turn = contents_json(request, "gemini-test")[1]
    assert turn == {
        "role": "model",
        "parts": [
            {"text": "plan", "thought": True, "thoughtSignature": "Z1"},
            {"text": "Let me look.", "thoughtSignature": "Z2"},
            {
                "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
                "thoughtSignature": "Z3",
            },
        ],
    }


@pytest_asyncio.fixture
async def anthropic(api_key: str) -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(api_key=api_key) as fake:
        yield fake


@pytest_asyncio.fixture
async def gemini(api_key: str) -> AsyncIterator[FakeGemini]:
    async with FakeGemini(api_key=api_key) as fake:
        yield fake


def _anthropic_events(*blocks: list[tuple[str, dict[str, object]]]) -> Scripted:
    events: list[object] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {"usage": {"input_tokens": 3, "output_tokens": 1}},
            },
        )
    ]
    for block in blocks:
        events += block
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": 9},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return Scripted.sse(*events)


async def test_anthropic_stream_keeps_signed_and_redacted_blocks(
    anthropic: FakeAnthropic,
) -> None:
    def delta(i: int, payload: dict[str, object]) -> tuple[str, dict[str, object]]:
        return (
            "content_block_delta",
            {"type": "content_block_delta", "index": i, "delta": payload},
        )

    def start(i: int, payload: dict[str, object]) -> tuple[str, dict[str, object]]:
        block = {"type": "content_block_start", "index": i, "content_block": payload}
        return ("content_block_start", block)

    def stop(i: int) -> tuple[str, dict[str, object]]:
        return ("content_block_stop", {"type": "content_block_stop", "index": i})

    anthropic.script(
        _anthropic_events(
            [start(0, {"type": "redacted_thinking", "data": "ZW5j"}), stop(0)],
            [
                start(1, {"type": "thinking", "thinking": "", "signature": ""}),
                delta(1, {"type": "thinking_delta", "thinking": "hm"}),
                delta(1, {"type": "thinking_delta", "thinking": "m"}),
                delta(1, {"type": "signature_delta", "signature": "EqA"}),
                delta(1, {"type": "signature_delta", "signature": "1"}),
                stop(1),
            ],
            # Unsigned thinking cannot go back: it is relayed, not kept.
            [start(2, {"type": "thinking", "thinking": "x"}), stop(2)],
            [
                start(3, {"type": "text", "text": ""}),
                delta(3, {"type": "text_delta", "text": "Hi"}),
                stop(3),
            ],
        )
    )
    adapter = AnthropicProvider(make_spec("anthropic", anthropic.base_url))
    try:
        got = await collect(adapter.stream(chat("hi", model="claude-sonnet-4-20250514")))
    finally:
        await adapter.aclose()
    assert [e for e in got.events if type(e) is ReasoningBlock] == [REDACTED, THINK]
    assert got.text == "Hi"


async def test_gemini_reads_signatures_from_every_kind_of_part(gemini: FakeGemini) -> None:
    def chunk(*parts: dict[str, object], finish: str = "") -> dict[str, object]:
        candidate: dict[str, object] = {"content": {"role": "model", "parts": list(parts)}}
        if finish:
            candidate["finishReason"] = finish
        return {"candidates": [candidate], "usageMetadata": {"promptTokenCount": 2}}

    parts: list[dict[str, object]] = [
        {"text": "plan", "thought": True, "thoughtSignature": "Z1"},
        {"text": "Let me look."},
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}},
            "thoughtSignature": "Z3",
        },
        {"functionCall": {"name": "get_time", "args": {}}},
        {"text": "", "thoughtSignature": "Z2"},  # a stream's last chunk signs so
    ]
    adapter = GeminiProvider(make_spec("gemini", gemini.base_url))
    try:
        gemini.script(Scripted.json(chunk(*parts, finish="STOP")))
        whole = await adapter.complete(chat("hi", model="gemini-3-pro-preview"))
        gemini.script(Scripted.sse(*[chunk(p) for p in parts], chunk(finish="STOP")))
        streamed = await collect(adapter.stream(chat("hi", model="gemini-3-pro-preview")))
    finally:
        await adapter.aclose()
    assert whole.reasoning_blocks == (THOUGHT, TEXT_SIG)
    assert [c.signature for c in whole.tool_calls] == ["Z3", ""]
    assert [e for e in streamed.events if type(e) is ReasoningBlock] == [THOUGHT, TEXT_SIG]
    calls = [e for e in streamed.events if type(e) is ToolCallDelta]
    assert [c.signature for c in calls] == ["Z3", ""]


def test_a_block_never_shows_its_bytes_in_a_log_line() -> None:
    block = ReasoningBlock(
        format=ReasoningFormat.ANTHROPIC_THINKING, text="secret plan", signature="S" * 500
    )
    assert "secret" not in repr(block) and "SSS" not in repr(block)
