"""The parts of a generation request every edge and adapter shares: messages and their content
(text, images), tool definitions and calls, reasoning blocks, structured-output and reasoning
options, and the capabilities a request needs. ``aurea.providers._base`` re-exports them with
the rest of the provider protocol; ``aurea.types`` re-exports them for users."""

from __future__ import annotations

import base64
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aurea.providers._urls import safe_url


class Role(enum.StrEnum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"  # a tool's result, answering the assistant's call ``tool_call_id``


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ImagePart:
    """An image in a message: by ``url`` (the provider fetches it) or inline ``data`` (the
    bytes, with their ``media_type``). ``detail`` is OpenAI's "low" | "high" | "auto" ("" for
    the provider's default; other providers have no such knob)."""

    url: str = ""
    data: bytes = b""
    media_type: str = ""
    detail: str = ""

    def base64(self) -> str:
        return base64.b64encode(self.data).decode("ascii")

    def data_url(self) -> str:
        """``url``, or the inline bytes as a ``data:`` URL."""
        return self.url or f"data:{self.media_type};base64,{self.base64()}"

    def __repr__(self) -> str:  # never megabytes of bytes in a log line
        source = f"url={safe_url(self.url)!r}" if self.url else f"data=<{len(self.data)} bytes>"
        return f"ImagePart({source}, media_type={self.media_type!r})"


ContentPart = TextPart | ImagePart


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCall:
    """One call of a tool the model asked for. ``arguments`` is JSON text exactly as the model
    wrote it (normally an object); ``id`` pairs the call with its result (a ``Role.TOOL``
    message's ``tool_call_id``)."""

    id: str
    name: str
    arguments: str
    # Gemini's ``thoughtSignature`` on the call ("" without): it goes back on the call's
    # ``functionCall`` part in the next request (Gemini 3 refuses the turn without it).
    signature: str = ""


class ReasoningFormat(enum.StrEnum):
    """Which provider's wire format a ``ReasoningBlock`` is in (each adapter sends back the
    blocks of its own format and leaves the others out)."""

    ANTHROPIC_THINKING = "anthropic_thinking"  # text + signature
    ANTHROPIC_REDACTED = "anthropic_redacted"  # data
    GEMINI_THOUGHT = "gemini_thought"  # a thought part: text + signature
    GEMINI_TEXT_SIGNATURE = "gemini_text_signature"  # the signature of the answer's text part


@dataclass(frozen=True, slots=True, kw_only=True)
class ReasoningBlock:
    """One opaque piece of a model's reasoning, kept as the provider returned it so that it can
    go back verbatim in the next turn (Anthropic's signed ``thinking`` and ``redacted_thinking``
    blocks, Gemini's thought signatures). Adapters yield it as a stream event once the block is
    whole; the final answer carries them in order."""

    format: ReasoningFormat
    text: str = ""
    signature: str = ""
    data: str = ""

    def __repr__(self) -> str:  # opaque kilobytes are no use in a log line
        return (
            f"ReasoningBlock(format={self.format.value}, text=<{len(self.text)} chars>, "
            f"signature=<{len(self.signature)} chars>, data=<{len(self.data)} chars>)"
        )


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One turn. ``content`` is the message's text: for a message with ``parts`` (text and
    images, in order) it is the parts' texts joined, for a ``Role.TOOL`` message the tool's
    result. An assistant message may carry ``tool_calls`` (and no text) and the
    ``reasoning_blocks`` its answer came with; a tool message names the call it answers in
    ``tool_call_id``. A plain text message sets ``role`` and ``content``
    only, so the common case costs nothing extra."""

    role: Role
    content: str
    parts: tuple[ContentPart, ...] = ()
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""
    # On an assistant message: the reasoning blocks its answer came with, sent back unchanged.
    reasoning_blocks: tuple[ReasoningBlock, ...] = ()

    @property
    def images(self) -> tuple[ImagePart, ...]:
        return tuple(p for p in self.parts if type(p) is ImagePart)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tool:
    """A function the model may call: ``parameters`` is the JSON Schema of its arguments (an
    object schema); ``strict`` asks the provider to hold the arguments to it exactly."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)
    strict: bool = False


class ToolChoiceMode(enum.StrEnum):
    AUTO = "auto"  # the model decides (the default when tools are given)
    NONE = "none"  # no tool call; the model answers in text
    REQUIRED = "required"  # at least one tool call
    TOOL = "tool"  # a call of the tool named in ``ToolChoice.name``


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolChoice:
    mode: ToolChoiceMode = ToolChoiceMode.AUTO
    name: str = ""  # for ``ToolChoiceMode.TOOL``


class ResponseFormatType(enum.StrEnum):
    TEXT = "text"
    JSON_OBJECT = "json_object"  # any JSON object
    JSON_SCHEMA = "json_schema"  # JSON matching ``ResponseFormat.schema``


@dataclass(frozen=True, slots=True, kw_only=True)
class ResponseFormat:
    """The shape of the answer's text. For JSON_SCHEMA, ``schema`` is the JSON Schema,
    ``name`` its name (OpenAI requires one), ``strict`` asks the provider to enforce it
    exactly (constrained decoding), not merely to aim for it."""

    type: ResponseFormatType = ResponseFormatType.TEXT
    name: str = "response"
    schema: Mapping[str, Any] | None = None
    strict: bool = False
    description: str = ""


class ReasoningEffort(enum.StrEnum):
    """How much a reasoning model should think (None on a request: the provider's default)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class ReasoningKind(enum.StrEnum):
    TEXT = "text"  # the model's reasoning as it produced it
    SUMMARY = "summary"  # the provider's summary of it


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerationOptions:
    """What a generation may use beyond text: tools the model may call (and whether, which, and
    how many at once), the shape of its answer, how hard it should think. A plain call carries
    none (``None`` on the call and the request: one field, so plain text pays nothing for
    these)."""

    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None  # None: the provider's default (auto with tools)
    parallel_tool_calls: bool | None = None  # None: the provider's default
    response_format: ResponseFormat | None = None  # None: text
    reasoning: ReasoningEffort | None = None  # None: the provider's default


class Capability(enum.StrEnum):
    """What a catalog model can do beyond plain text; a request that needs one is routed only
    to models whose catalog entry lists it."""

    TOOLS = "tools"  # tool definitions, tool calls and tool results
    JSON_SCHEMA = "json_schema"  # JSON object and JSON Schema response formats
    STRICT_SCHEMA = "strict_schema"  # schemas enforced exactly (strict response format or tool)
    IMAGES = "images"  # images in messages
    REASONING = "reasoning"  # a reasoning effort on the request


def required_capabilities(
    messages: tuple[ChatMessage, ...], options: GenerationOptions | None = None
) -> frozenset[Capability]:
    """What a request needs of the model that serves it (empty for plain text)."""
    needs: set[Capability] = set()
    if options is not None:
        if options.tools:
            needs.add(Capability.TOOLS)
            if any(t.strict for t in options.tools):
                needs.add(Capability.STRICT_SCHEMA)
        fmt = options.response_format
        if fmt is not None and fmt.type is not ResponseFormatType.TEXT:
            needs.add(Capability.JSON_SCHEMA)
            if fmt.strict:
                needs.add(Capability.STRICT_SCHEMA)
        if options.reasoning is not None:
            needs.add(Capability.REASONING)
    for m in messages:
        if m.parts and any(type(p) is ImagePart for p in m.parts):
            needs.add(Capability.IMAGES)
        if m.tool_calls or m.role is Role.TOOL:
            needs.add(Capability.TOOLS)
    return frozenset(needs)
