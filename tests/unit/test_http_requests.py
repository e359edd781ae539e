"""The HTTP door's request parsing and response shapes, without a server: OpenAI's fields to
domain calls (tools, tool choice, response formats, images and tool turns included; every bad
field collected, unsupported features refused naming the field),
Aurea's inputs from the body and headers, and the frames and headers the door writes."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from aurea.api import convert
from aurea.edge._scopes import HTTP_USER_OPERATIONS
from aurea.errors import BudgetExceeded, InvalidRequest, ShuttingDown
from aurea.http import ROUTES
from aurea.http import _inputs as limits
from aurea.http._chat import parse_chat
from aurea.http._embed import decode_vector, encode_vector, parse_embed
from aurea.http._render import ChunkFormat, completion, error_frame, error_headers
from aurea.inference import Final
from aurea.providers._base import (
    FinishReason,
    ImagePart,
    ResponseFormat,
    ResponseFormatType,
    Role,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
    Usage,
)
from aurea.providers._images import MAX_IMAGE_BYTES
from aurea.types import Policy


def chat(**body: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **body}


def violations(body: Any, headers: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(InvalidRequest) as info:
        parse_chat(body, headers or {}, "rid", 0.0)
    return [v.field for v in info.value.violations]


def test_limits_are_the_grpc_edges() -> None:
    for name in (
        "MAX_MESSAGES",
        "MAX_TOKENS",
        "MAX_STOP",
        "MAX_FALLBACKS",
        "MAX_LABELS",
        "MAX_JOB_ID",
        "MAX_EMBED_INPUTS",
        "MAX_MODEL_NAME",
    ):
        assert getattr(limits, name) == getattr(convert, name), name


def test_every_route_is_a_user_operation() -> None:
    assert {f"{m} {p}" for m, p in ROUTES} == HTTP_USER_OPERATIONS


def test_a_chat_body_becomes_a_call() -> None:
    req = parse_chat(
        {
            "model": "sim-small",
            "messages": [
                {"role": "developer", "content": "rules"},
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                },
                {"role": "assistant", "content": "c", "name": "bot"},
            ],
            "max_tokens": 10,
            "max_completion_tokens": 20,
            "temperature": 0.5,
            "top_p": 1,
            "stop": "END",
            "seed": 7,
            "n": 1,
            "stream": True,
            "stream_options": {"include_usage": True},
            "response_format": {"type": "text"},
            "user": "someone",
            "metadata": {"a": "b"},
            "presence_penalty": 0,
        },
        {},
        "rid-1",
        100.0,
    )
    call = req.call
    assert [(m.role, m.content) for m in call.messages] == [
        (Role.SYSTEM, "rules"),
        (Role.USER, "ab"),
        (Role.ASSISTANT, "c"),
    ]
    assert call.max_tokens == 20  # max_completion_tokens wins, as in OpenAI's API
    assert (call.temperature, call.top_p, call.stop, call.seed) == (0.5, 1.0, ("END",), 7)
    assert call.request_id == "rid-1" and call.deadline is None
    assert req.stream and req.include_usage
    assert call.usage_interval == 0


def test_every_bad_field_is_named_at_once() -> None:
    fields = violations(
        {
            "model": 5,
            "messages": [{"role": "robot", "content": "x"}, {"role": "user", "content": ""}],
            "temperature": 2.5,
            "top_p": 0,
            "max_tokens": -1,
            "stop": ["", "a", "b", "c", "d"],
            "seed": 1.5,
            "stream": "yes",
            "frobnicate": 1,
        }
    )
    assert set(fields) >= {
        "model",
        "messages[0].role",
        "messages[1].content",
        "temperature",
        "top_p",
        "max_tokens",
        "stop",
        "seed",
        "stream",
        "frobnicate",
    }


TOOL = {
    "type": "function",
    "function": {
        "name": "forecast",
        "description": "the forecast",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 32).decode()


def test_tools_tool_choice_and_parallel_calls_map_onto_the_call() -> None:
    call = parse_chat(
        chat(
            tools=[TOOL],
            tool_choice={"type": "function", "function": {"name": "forecast"}},
            parallel_tool_calls=False,
        ),
        {},
        "rid",
        0.0,
    ).call
    assert call.options is not None
    [tool] = call.tools
    assert (tool.name, tool.description, tool.strict) == ("forecast", "the forecast", True)
    assert tool.parameters["properties"] == {"city": {"type": "string"}}
    assert call.options.tool_choice == ToolChoice(mode=ToolChoiceMode.TOOL, name="forecast")
    assert call.options.parallel_tool_calls is False
    for word, mode in (("auto", ToolChoiceMode.AUTO), ("required", ToolChoiceMode.REQUIRED)):
        req = parse_chat(chat(tools=[TOOL], tool_choice=word), {}, "rid", 0.0)
        assert req.call.options is not None
        assert req.call.options.tool_choice == ToolChoice(mode=mode)
    assert parse_chat(chat(), {}, "rid", 0.0).call.options is None  # plain text pays nothing


def test_response_formats_map_onto_the_call() -> None:
    assert parse_chat(chat(response_format={"type": "text"}), {}, "r", 0.0).call.options is None
    obj = parse_chat(chat(response_format={"type": "json_object"}), {}, "r", 0.0).call
    assert obj.response_format == ResponseFormat(type=ResponseFormatType.JSON_OBJECT)
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    spec = {"name": "answer", "schema": schema, "strict": True, "description": "d"}
    fmt = parse_chat(
        chat(response_format={"type": "json_schema", "json_schema": spec}), {}, "r", 0.0
    ).call.response_format
    assert fmt is not None
    assert (fmt.type, fmt.name, fmt.strict, fmt.description) == (
        ResponseFormatType.JSON_SCHEMA,
        "answer",
        True,
        "d",
    )
    assert fmt.schema == schema


def test_a_tool_round_trip_conversation_maps_onto_messages() -> None:
    messages = [
        {"role": "user", "content": "Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "forecast", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"sky": "clear"}'},
    ]
    call = parse_chat(chat(messages=messages, tools=[TOOL]), {}, "rid", 0.0).call
    _, assistant, result = call.messages
    assert assistant.role is Role.ASSISTANT and assistant.content == ""
    assert assistant.tool_calls == (
        ToolCall(id="call_1", name="forecast", arguments='{"city":"Paris"}'),
    )
    assert result.role is Role.TOOL and result.tool_call_id == "call_1"
    assert result.content == '{"sky": "clear"}'


def test_image_parts_map_onto_message_parts() -> None:
    content = [
        {"type": "text", "text": "what is this? "},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
        {"type": "image_url", "image_url": {"url": PNG}},
    ]
    [m] = parse_chat(
        chat(messages=[{"role": "user", "content": content}]), {}, "r", 0.0
    ).call.messages
    assert m.content == "what is this? "
    text, by_url, inline = m.parts
    assert text == TextPart("what is this? ")
    assert by_url == ImagePart(
        url="https://example.com/a.png", media_type="image/png", detail="low"
    )
    assert isinstance(inline, ImagePart) and inline.media_type == "image/png" and inline.data
    # Text parts only are plain text, as before.
    only_text = [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]
    [m] = parse_chat(
        chat(messages=[{"role": "user", "content": only_text}]), {}, "r", 0.0
    ).call.messages
    assert (m.content, m.parts) == ("ab", ())


def test_an_over_size_inline_image_is_refused_naming_its_url() -> None:
    big = "data:image/png;base64," + base64.b64encode(b"\0" * (MAX_IMAGE_BYTES + 1)).decode()
    part = {"type": "image_url", "image_url": {"url": big}}
    assert violations(chat(messages=[{"role": "user", "content": [part]}])) == [
        "messages[0].content[0].image_url.url"
    ]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "function": {"name": "a b"}}]}, "tools[0].function.name"),
        ({"tools": [TOOL, TOOL]}, "tools"),
        ({"tools": [TOOL], "tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "x"}}},
         "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"parallel_tool_calls": "yes"}, "parallel_tool_calls"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"function_call": "auto"}, "function_call"),
        ({"response_format": {"type": "xml"}}, "response_format.type"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        ({"response_format": {"type": "json_schema", "json_schema": {"name": "a"}}},
         "response_format.json_schema.schema"),
        ({"n": 2}, "n"),
        ({"audio": {"voice": "alloy"}}, "audio"),
    ],
)  # fmt: skip
def test_bad_or_unsupported_rich_fields_are_refused_naming_the_field(
    extra: dict[str, Any], field: str
) -> None:
    assert violations(chat(**extra))[0] == field


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x"}}]}],
         "messages[0].content[0].image_url.url"),
        ([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}],
         "messages[0].content[0]"),
        ([{"role": "user", "content": "x"}, {"role": "tool", "content": "42", "tool_call_id": "c"}],
         "messages[1].tool_call_id"),
        ([{"role": "user", "content": "x"}, {"role": "tool", "content": "42"}],
         "messages[1].tool_call_id"),
        ([{"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}],
         "messages[0].tool_calls[0].function.name"),
        ([{"role": "user", "content": "x", "tool_calls": []}], "messages[0].tool_calls"),
        ([{"role": "function", "content": "x", "name": "f"}], "messages[0].role"),
        ([{"role": "assistant", "content": [{"type": "image_url", "image_url": {"url": PNG}}]}],
         "messages[0].content[0].image_url"),
    ],
)  # fmt: skip
def test_bad_images_and_tool_turns_are_refused_naming_the_field(
    messages: list[Any], field: str
) -> None:
    assert violations(chat(messages=messages))[0] == field


def test_a_unary_answer_of_tool_calls_has_openai_s_message_shape() -> None:
    final = Final(
        finish_reason=FinishReason.TOOL_CALLS,
        usage=Usage(input_tokens=1, output_tokens=2),
        cost_nanos=0,
        latency_s=0.0,
        ttft_s=0.0,
        model="m",
        provider="p",
        attempts=1,
        tool_calls=(ToolCall(id="call_1", name="f", arguments='{"a":1}'),),
    )
    [choice] = completion(final, "rid", 0)["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"] == {
        "role": "assistant",
        "content": None,
        "refusal": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
        ],
    }


def test_streamed_tool_call_pieces_have_openai_s_chunk_shape() -> None:
    fmt = ChunkFormat("rid", 0, "m", include_usage=False)
    first = json.loads(fmt.tool_call(ToolCallDelta(index=0, id="call_1", name="f"), True)[6:])
    assert first["choices"][0]["delta"] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "f", "arguments": ""},
            }
        ],
    }
    more = json.loads(fmt.tool_call(ToolCallDelta(index=0, arguments='{"a"'), False)[6:])
    assert more["choices"][0]["delta"] == {
        "tool_calls": [{"index": 0, "function": {"arguments": '{"a"'}}]
    }


@pytest.mark.parametrize(
    "extra",
    [{"n": 2}, {"logprobs": True}, {"logit_bias": {"1": 2}}, {"frequency_penalty": 0.5},
     {"modalities": ["text", "audio"]}, {"audio": {"voice": "x"}}],
)  # fmt: skip
def test_what_aurea_cannot_honour_is_refused_not_ignored(extra: dict[str, Any]) -> None:
    assert violations(chat(**extra)) == list(extra)


def test_only_system_messages_is_refused() -> None:
    assert violations(chat(messages=[{"role": "system", "content": "x"}])) == ["messages"]


def test_stream_options_need_stream() -> None:
    assert violations(chat(stream_options={"include_usage": True})) == ["stream_options"]


def test_aurea_inputs_from_body_and_headers_body_wins() -> None:
    headers = {
        "x-aurea-job-id": "from-header",
        "x-aurea-fallbacks": "a, b",
        "x-aurea-policy": "COST",
        "x-aurea-cache-bypass": "true",
        "x-aurea-labels": "k=v, team = x",
        "x-aurea-timeout-ms": "2500",
    }
    req = parse_chat(chat(aurea={"job_id": "from-body"}), headers, "rid", 10.0)
    call = req.call
    assert call.job_id == "from-body"
    assert call.fallbacks == ("a", "b")
    assert call.policy is Policy.COST
    assert call.cache_bypass is True
    assert dict(call.labels) == {"k": "v", "team": "x"}
    assert call.deadline == pytest.approx(12.5)


def test_bad_aurea_inputs_are_named() -> None:
    fields = violations(
        chat(aurea={"job_id": "j" * 129, "fallbacks": [""], "policy": "cheap", "x": 1,
                    "cache_bypass": "yes", "labels": {"k": 1}, "timeout_ms": 0}),
        {"x-aurea-cache-bypass": "maybe"},
    )  # fmt: skip
    assert set(fields) == {
        "x-aurea-cache-bypass",
        "aurea.x",
        "aurea.job_id",
        "aurea.fallbacks[0]",
        "aurea.policy",
        "aurea.cache_bypass",
        "aurea.labels.k",
        "aurea.timeout_ms",
    }
    assert violations(chat(aurea=[1])) == ["aurea"]


def test_not_an_object() -> None:
    with pytest.raises(InvalidRequest):
        parse_chat([1], {}, "rid", 0.0)
    with pytest.raises(InvalidRequest):
        parse_embed("x", {}, "rid", 0.0)


def test_embedding_bodies() -> None:
    one = parse_embed({"model": "e", "input": "text"}, {}, "rid", 0.0)
    assert one.call.inputs == ("text",) and not one.base64
    many = parse_embed({"input": ["a", "b"], "encoding_format": "base64"}, {}, "rid", 0.0)
    assert many.call.inputs == ("a", "b") and many.base64 and many.call.model == ""
    with pytest.raises(InvalidRequest) as info:
        parse_embed(
            {"input": [[1, 2], "", 3], "dimensions": 8, "encoding_format": "hex",
             "aurea": {"policy": "cost"}},
            {}, "rid", 0.0,
        )  # fmt: skip
    fields = [v.field for v in info.value.violations]
    assert fields == [
        "input[0]",
        "input[1]",
        "input[2]",
        "encoding_format",
        "dimensions",
        "aurea.policy",
    ]


def test_base64_vectors_round_trip_as_little_endian_float32() -> None:
    values = [0.25, -1.5, 3.0]
    assert encode_vector(values, False) == values
    text = encode_vector(values, True)
    assert isinstance(text, str)
    assert decode_vector(text) == values


def final(reason: FinishReason = FinishReason.STOP) -> Final:
    return Final(
        finish_reason=reason,
        usage=Usage(input_tokens=3, output_tokens=4, cached_input_tokens=1),
        cost_nanos=99,
        latency_s=0.5,
        ttft_s=0.1,
        model="m",
        provider="p",
        attempts=1,
    )


@pytest.mark.parametrize("include_usage", [False, True])
def test_stream_frames_are_openai_chunks(include_usage: bool) -> None:
    fmt = ChunkFormat("rid", 123, "m", include_usage)
    frames = [fmt.first("He"), fmt.delta('llo "world"\n'), fmt.end(final())]
    text = b"".join(frames).decode()
    events = [f.removeprefix("data: ") for f in text.split("\n\n") if f]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "He"}
    assert chunks[1]["choices"][0]["delta"] == {"content": 'llo "world"\n'}
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "chatcmpl-rid" for c in chunks)
    assert chunks[2]["choices"][0]["finish_reason"] == "stop"
    if include_usage:
        assert all("usage" in c for c in chunks)
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 7
        assert chunks[-1]["usage"]["prompt_tokens_details"] == {"cached_tokens": 1}
        assert chunks[-1]["usage"]["aurea"]["cost_nanos"] == 99
    else:
        assert len(chunks) == 3 and all("usage" not in c for c in chunks)


def test_a_budget_stop_is_length_with_aureas_reason_beside_it() -> None:
    text = ChunkFormat("rid", 1, "m", False).end(final(FinishReason.BUDGET_EXCEEDED)).decode()
    chunk = json.loads(text.split("\n\n")[0].removeprefix("data: "))
    assert chunk["choices"][0]["finish_reason"] == "length"
    assert chunk["aurea"]["finish_reason"] == "budget_exceeded"


def test_error_frames_and_headers() -> None:
    frame = error_frame(ShuttingDown("draining", retry_after_s=2.5), "rid")
    payload = json.loads(frame.decode().removeprefix("data: "))
    assert payload["error"]["type"] == "api_error"
    assert error_headers(ShuttingDown("x", retry_after_s=2.5)) == {
        "retry-after": "3",
        "retry-after-ms": "2500",
        "x-should-retry": "true",
    }
    budget = BudgetExceeded("out", job_id="j", spent_nanos=2, budget_nanos=1)
    assert error_headers(budget)["x-should-retry"] == "false"
    assert error_headers(InvalidRequest("bad")) == {}
    assert error_headers(RuntimeError("bug")) == {"x-should-retry": "false"}
