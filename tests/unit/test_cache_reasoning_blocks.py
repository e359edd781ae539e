"""The cache keeps an answer's reasoning blocks and call signatures (through the Redis codec too)
and keys a conversation by the blocks its messages echo."""

from __future__ import annotations

import dataclasses

from aurea.cache import Answer
from aurea.cache._codec import decode, encode
from aurea.cache._keys import generate_key
from aurea.inference import Final, GenerateCall
from aurea.inference.calls import Delta
from aurea.providers._base import (
    ChatMessage,
    FinishReason,
    ReasoningBlock,
    ReasoningFormat,
    Role,
    ToolCall,
    ToolCallDelta,
    Usage,
)

BLOCKS = (
    ReasoningBlock(format=ReasoningFormat.ANTHROPIC_REDACTED, data="ZW5j"),
    ReasoningBlock(format=ReasoningFormat.ANTHROPIC_THINKING, text="hmm", signature="EqA1"),
)
CALL = ToolCall(id="c1", name="f", arguments="{}", signature="Z3")


def final(**kw: object) -> Final:
    base: dict[str, object] = {
        "finish_reason": FinishReason.TOOL_CALLS,
        "usage": Usage(input_tokens=3, output_tokens=2),
        "cost_nanos": 1234,
        "latency_s": 0.5,
        "ttft_s": 0.1,
        "model": "m",
        "provider": "p",
        "attempts": 1,
    }
    base.update(kw)
    return Final(**base)  # type: ignore[arg-type]


def test_blocks_and_signatures_round_trip_through_bytes() -> None:
    streamed = Answer(
        final=final(tool_calls=(CALL,), reasoning_blocks=BLOCKS),
        events=(ToolCallDelta(index=0, id="c1", name="f", arguments="{}", signature="Z3"),),
    )
    assert decode(encode(streamed)) == streamed
    unary = Answer(final=final(tool_calls=(CALL,), reasoning_blocks=BLOCKS))
    back = decode(encode(unary))
    assert back == unary and back.unary().reasoning_blocks == BLOCKS


def test_an_answer_with_blocks_serves_only_its_own_form() -> None:
    # A unary answer's blocks have no stream events, and a stream's final holds them: each
    # serves the form it was made in, never loses them in the other.
    signed_text = Answer(final=final(text="hi", reasoning_blocks=BLOCKS[1:]))
    assert signed_text.stream() is None
    assert signed_text.unary() == signed_text.final
    streamed = Answer(final=final(reasoning_blocks=BLOCKS[1:]), events=(Delta("hi"),))
    assert streamed.unary() is None
    assert streamed.stream() == (Delta("hi"),)


def test_echoed_blocks_and_signatures_are_part_of_the_key() -> None:
    answer = ChatMessage(Role.ASSISTANT, "", tool_calls=(CALL,), reasoning_blocks=BLOCKS)
    result = ChatMessage(Role.TOOL, "{}", tool_call_id="c1")
    call = GenerateCall(
        request_id="r", messages=(ChatMessage(Role.USER, "q"), answer, result), temperature=0.0
    )
    base = generate_key(call, "t", "m")
    others = [
        dataclasses.replace(answer, reasoning_blocks=BLOCKS[1:]),
        dataclasses.replace(answer, tool_calls=(dataclasses.replace(CALL, signature="Z4"),)),
    ]
    keys = {
        generate_key(dataclasses.replace(call, messages=(call.messages[0], o, result)), "t", "m")
        for o in others
    }
    assert base not in keys and len(keys) == 2
