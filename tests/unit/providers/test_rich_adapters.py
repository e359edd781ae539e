"""Rich generation in the adapters and their helpers: schema values for the simulated provider
(validated by pydantic), JSON Schema to Gemini's Schema, image headers and data: URLs, token
estimates for images and tools, generic HTTP templates, text-only adapters refusing, Anthropic's
native structured output and thinking budget, llama.cpp's schema style, reasoning deltas from an
OpenAI-compatible server."""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import AsyncIterator
from typing import Any, Literal

import pytest
from provider_helpers import chat, collect, make_spec
from pydantic import BaseModel, ConfigDict, Field

from aurea.errors import UnsupportedFeature
from aurea.providers._base import (
    ChatMessage,
    GenerationOptions,
    ImagePart,
    ProviderRequest,
    ReasoningDelta,
    ReasoningEffort,
    ResponseFormat,
    ResponseFormatType,
    Role,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
)
from aurea.providers._gemini_shapes import to_gemini_schema
from aurea.providers._images import image_size, parse_data_url, sniff_media_type
from aurea.providers._schema import instance
from aurea.providers._tokens import image_tokens, prompt_extra_tokens
from aurea.providers.anthropic import AnthropicProvider
from aurea.providers.aws_lambda import LambdaProvider
from aurea.providers.http_generic import GenericHTTPProvider
from aurea.providers.openai import OpenAIProvider
from aurea.testing.fakes import FakeAnthropic, FakeHTTPModel, FakeOpenAI, Scripted

TOOL = Tool(name="f", parameters={"type": "object", "properties": {"a": {"type": "string"}}})
_OPTIONS = ("tools", "tool_choice", "parallel_tool_calls", "response_format", "reasoning")


def rich(*texts: str, **kw: Any) -> ProviderRequest:
    """``chat`` with the generation options among ``kw`` grouped as they travel."""
    options = GenerationOptions(**{k: kw.pop(k) for k in _OPTIONS if k in kw})
    return chat(*texts, options=options, **kw)


# -- schema values ----------------------------------------------------------------------------


class Address(BaseModel):
    model_config = ConfigDict(extra="forbid")
    street: str = Field(min_length=5, max_length=12)
    zip: str


class Order(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: int = Field(ge=10, lt=20)
    price: float = Field(gt=0, le=0.5)
    kind: Literal["a", "b"]
    tags: list[str] = Field(min_length=2, max_length=2)
    ship_to: Address
    note: str | None
    gift: bool
    count: int  # no bounds at all


@pytest.mark.parametrize("seed", [bytes([i]) for i in range(12)])
def test_schema_values_validate(seed: bytes) -> None:
    schema = Order.model_json_schema()  # $defs/$ref, anyOf with null, enums, bounds
    value = instance(schema, seed)
    Order.model_validate(value)
    assert instance(schema, seed) == value  # deterministic


def test_schema_values_for_formats_const_and_all_of() -> None:
    schema = {
        "allOf": [
            {"type": "object", "properties": {"when": {"type": "string", "format": "date-time"}}},
            {"properties": {"v": {"const": 3}, "mail": {"type": "string", "format": "email"}}},
        ]
    }
    assert instance(schema, b"x") == {
        "when": "2026-01-01T00:00:00Z",
        "v": 3,
        "mail": "user@example.com",
    }


# -- Gemini's schema ----------------------------------------------------------------------------


def test_json_schema_to_gemini_schema() -> None:
    converted = to_gemini_schema(Order.model_json_schema())
    assert converted["type"] == "OBJECT"
    props = converted["properties"]
    assert props["id"] == {"title": "Id", "type": "INTEGER", "minimum": 10}  # (exclusive: dropped)
    assert props["kind"] == {"title": "Kind", "enum": ["a", "b"], "type": "STRING"}
    assert props["ship_to"]["properties"]["street"]["maxLength"] == 12  # the $ref inlined
    assert "additionalProperties" not in converted and "$defs" not in converted
    assert props["note"]["anyOf"] == [{"type": "STRING"}, {"type": "NULL"}]
    assert to_gemini_schema({"type": ["string", "null"]}) == {"type": "STRING", "nullable": True}
    assert to_gemini_schema({"const": "x"}) == {"enum": ["x"], "type": "STRING"}


# -- images and token estimates ------------------------------------------------------------------


def png(width: int, height: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", 13)
        + b"IHDR"
        + ihdr
        + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    )


def test_image_headers() -> None:
    assert image_size(png(640, 480)) == (640, 480)
    assert image_size(b"GIF89a" + struct.pack("<HH", 7, 9) + b"\x00" * 8) == (7, 9)
    jpeg = b"\xff\xd8\xff\xe0" + struct.pack(">H", 4) + b"JF" + b"\xff\xc0"
    jpeg += struct.pack(">HBHH", 17, 8, 300, 200) + b"\x00" * 12
    assert sniff_media_type(jpeg) == "image/jpeg" and image_size(jpeg) == (200, 300)
    webp = b"RIFF\x00\x00\x00\x00WEBPVP8X" + b"\x00" * 8
    webp += (99).to_bytes(3, "little") + (49).to_bytes(3, "little")
    assert sniff_media_type(webp) == "image/webp" and image_size(webp) == (100, 50)
    assert image_size(b"not an image") is None and sniff_media_type(b"<svg/>") == ""


def test_data_urls_and_their_limit() -> None:
    data = png(1, 1)
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    assert parse_data_url(url) == ("image/png", data)
    with pytest.raises(ValueError, match="larger than 10 bytes"):
        parse_data_url(url, limit=10)
    with pytest.raises(ValueError, match="base64"):
        parse_data_url("data:image/png;base64,@@@")
    with pytest.raises(ValueError, match="data:<media type>;base64"):
        parse_data_url("data:image/png,raw")


def test_image_and_tool_token_rules() -> None:
    assert image_tokens(ImagePart(data=png(1024, 1024), media_type="image/png")) == 765
    assert image_tokens(ImagePart(data=png(2, 3), media_type="image/png")) == 85 + 170
    assert image_tokens(ImagePart(data=png(4000, 1000), media_type="image/png")) == 85 + 170 * 4
    assert image_tokens(ImagePart(url="https://x/y.png")) == 765  # size unknown
    assert image_tokens(ImagePart(url="https://x/y.png", detail="low")) == 85
    plain = chat("hi")
    assert prompt_extra_tokens(plain) == 0
    with_tool = rich("hi", tools=(TOOL,))
    assert prompt_extra_tokens(with_tool) > 12 + 8


# -- text-only adapters refuse -------------------------------------------------------------------


async def test_a_text_only_adapter_refuses_what_it_cannot_carry() -> None:
    spec = make_spec("lambda", "", key_env="", function="f", region="eu-west-1")
    adapter = LambdaProvider(spec)
    image = ImagePart(url="https://x/y.png")
    request = ProviderRequest(
        model="m", messages=(ChatMessage(Role.USER, "hi", parts=(TextPart("hi"), image)),)
    )
    with pytest.raises(UnsupportedFeature, match="takes text only, and this request needs images"):
        await adapter.complete(request)
    await adapter.aclose()


# -- generic HTTP templates ----------------------------------------------------------------------


@pytest.fixture
async def http_fake(api_key: str) -> AsyncIterator[FakeHTTPModel]:
    async with FakeHTTPModel(api_key=api_key) as server:
        yield server


async def test_generic_templates_carry_tools_and_read_tool_calls(
    http_fake: FakeHTTPModel,
) -> None:
    template = {"messages": "{messages}", "tools": "{tools}", "format": "{response_format}"}
    adapter = GenericHTTPProvider(
        make_spec(
            "http",
            http_fake.origin,
            url=f"{http_fake.origin}/generate",
            body_template=template,
            headers={"X-Api-Key": "{api_key}"},
            text_pointer="/output/text",
            tool_calls_pointer="/output/tool_calls",
        )
    )
    http_fake.script(
        Scripted.json(
            {
                "output": {
                    "text": "",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{}"},
                        }
                    ],
                }
            }
        )
    )
    fmt = ResponseFormat(type=ResponseFormatType.JSON_OBJECT)
    done = await adapter.complete(rich("hi", tools=(TOOL,), response_format=fmt))
    assert done.tool_calls == (ToolCall(id="c1", name="f", arguments="{}"),)
    assert done.finish.reason.value == "tool_calls"
    body = http_fake.last_request_body
    assert body["tools"][0]["function"]["name"] == "f"
    assert body["format"] == {"type": "json_object"}
    # Reasoning is not referenced by this template: refused, not dropped.
    with pytest.raises(UnsupportedFeature, match=r"a reasoning effort \(\{reasoning_effort\}\)"):
        await adapter.complete(rich("hi", reasoning=ReasoningEffort.LOW))
    await adapter.aclose()


async def test_generic_default_template_refuses_tools(http_fake: FakeHTTPModel) -> None:
    adapter = GenericHTTPProvider(make_spec("http", http_fake.origin, url=f"{http_fake.origin}/g"))
    before = http_fake.request_count
    with pytest.raises(UnsupportedFeature, match=r"tools \(\{tools\}\)"):
        await adapter.complete(rich("hi", tools=(TOOL,)))
    assert http_fake.request_count == before
    await adapter.aclose()


# -- Anthropic and OpenAI specifics ------------------------------------------------------------


@pytest.fixture
async def anthropic(api_key: str) -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic(api_key=api_key) as server:
        yield server


async def test_anthropic_native_structured_output_and_thinking_budget(
    anthropic: FakeAnthropic,
) -> None:
    adapter = AnthropicProvider(
        make_spec("anthropic", anthropic.base_url, structured_output="native", beta="x-1")
    )
    fmt = ResponseFormat(type=ResponseFormatType.JSON_SCHEMA, schema={"type": "object"})
    await adapter.complete(
        rich("hi", response_format=fmt, reasoning=ReasoningEffort.LOW, max_tokens=100)
    )
    sent = anthropic.last_request
    assert sent is not None
    assert sent.body["output_format"] == {"type": "json_schema", "schema": {"type": "object"}}
    assert sent.headers["anthropic-beta"] == "x-1,structured-outputs-2025-11-13"
    assert sent.body["thinking"] == {"type": "enabled", "budget_tokens": 1024}
    assert sent.body["max_tokens"] == 1124  # room beyond the thinking budget
    await adapter.aclose()


async def test_anthropic_forced_answer_tool_cannot_join_other_tools(
    anthropic: FakeAnthropic,
) -> None:
    adapter = AnthropicProvider(make_spec("anthropic", anthropic.base_url))
    fmt = ResponseFormat(type=ResponseFormatType.JSON_OBJECT)
    with pytest.raises(UnsupportedFeature, match="cannot combine tools with a JSON response"):
        await adapter.complete(rich("hi", tools=(TOOL,), response_format=fmt))
    # ... unless the model may not call them.
    none = ToolChoice(mode=ToolChoiceMode.NONE)
    anthropic.json_answer = '{"x": 1}'
    done = await adapter.complete(rich("hi", tools=(TOOL,), tool_choice=none, response_format=fmt))
    assert json.loads(done.text) == {"x": 1}
    await adapter.aclose()


@pytest.fixture
async def openai(api_key: str) -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI(api_key=api_key) as server:
        yield server


async def test_llama_cpp_schema_style_and_reasoning_content(openai: FakeOpenAI) -> None:
    adapter = OpenAIProvider(make_spec("openai", openai.base_url, schema_style="llama_cpp"))
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    openai.thoughts = "step by step"
    fmt = ResponseFormat(type=ResponseFormatType.JSON_SCHEMA, schema=schema, strict=True)
    got = await collect(adapter.stream(rich("hi", response_format=fmt)))
    sent: Any = openai.last_request_body
    assert sent["response_format"] == {"type": "json_object", "schema": schema}
    thoughts = [e for e in got.events if isinstance(e, ReasoningDelta)]
    assert "".join(t.text for t in thoughts) == "step by step"
    assert not any(isinstance(e, ToolCallDelta) for e in got.events)
    await adapter.aclose()
    with pytest.raises(ValueError, match="schema_style must be one of"):
        OpenAIProvider(make_spec("openai", openai.base_url, schema_style="xml"))
