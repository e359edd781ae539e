"""The Provider protocol and the normalized domain types every adapter speaks.

An adapter turns one ``ProviderRequest`` into an async stream of ``ProviderEvent`` s
(text, tool-call and reasoning deltas, usage reports, one terminal ``Finish``) and maps its
vendor's failures onto ``aurea.errors.ProviderError`` subclasses. Adapters know nothing of gRPC
or actors. The rich parts of a generation (images, tools, structured output, reasoning) are
defined here once, for every edge and adapter; ``aurea.types`` re-exports them.
"""

from __future__ import annotations

import base64
import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

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


class FinishReason(enum.StrEnum):
    """Why a generation ended. Anything but STOP/LENGTH/CONTENT_FILTER/TOOL_CALLS is abnormal."""

    STOP = "stop"  # natural end or a stop sequence
    LENGTH = "length"  # max_tokens reached
    CONTENT_FILTER = "content_filter"  # the provider withheld or cut the output
    TOOL_CALLS = "tool_calls"
    CANCELLED = "cancelled"  # the caller went away
    BUDGET_EXCEEDED = "budget_exceeded"  # Aurea cut the stream at the job's budget
    ERROR = "error"  # the upstream failed after output began


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token counts, normalized across providers.

    ``input_tokens`` counts every prompt token *including* cached ones (OpenAI's convention;
    adapters for providers that report cached tokens separately, like Anthropic, add them in).
    ``output_tokens`` includes ``reasoning_tokens``. ``estimated`` is True when Aurea counted
    instead of the provider reporting.
    """

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderRequest:
    """One chat generation, already routed: ``model`` is the provider's own model id."""

    model: str
    messages: tuple[ChatMessage, ...]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    request_id: str = ""
    # This attempt's limits (the model's, resolved against its provider's); None: the
    # provider's own. HTTP adapters bound connect, first byte, gaps and the whole call by them.
    timeouts: Timeouts | None = None
    options: GenerationOptions | None = None  # tools, response format, reasoning

    @property
    def rich(self) -> bool:
        """Whether anything beyond plain text messages and sampling settings is asked for."""
        return self.options is not None or any(
            m.parts or m.tool_calls or m.tool_call_id or m.reasoning_blocks for m in self.messages
        )

    # The options, read as if they were the request's own fields (their defaults without).
    @property
    def tools(self) -> tuple[Tool, ...]:
        return self.options.tools if self.options is not None else ()

    @property
    def tool_choice(self) -> ToolChoice | None:
        return self.options.tool_choice if self.options is not None else None

    @property
    def parallel_tool_calls(self) -> bool | None:
        return self.options.parallel_tool_calls if self.options is not None else None

    @property
    def response_format(self) -> ResponseFormat | None:
        return self.options.response_format if self.options is not None else None

    @property
    def reasoning(self) -> ReasoningEffort | None:
        return self.options.reasoning if self.options is not None else None


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallDelta:
    """A piece of tool call number ``index`` (0, 1, ... in the order the model made them):
    the first piece of a call carries its ``id`` and ``name``, every piece may carry the next
    fragment of its ``arguments`` JSON text. The fragments of one call, joined, are its
    arguments exactly."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""
    signature: str = ""  # Gemini's thoughtSignature of the call (on the piece that has it)


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """A piece of the model's reasoning, where the provider exposes it (never answer text)."""

    text: str
    kind: ReasoningKind = ReasoningKind.TEXT


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Cumulative usage so far (a later report replaces an earlier one)."""

    usage: Usage


@dataclass(frozen=True, slots=True)
class Finish:
    """The terminal event of a successful stream. ``raw_reason`` is the vendor's own word."""

    reason: FinishReason
    raw_reason: str = ""


ProviderEvent = TextDelta | ToolCallDelta | ReasoningDelta | ReasoningBlock | UsageReport | Finish


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """A whole (unary) generation."""

    text: str
    finish: Finish
    usage: Usage | None  # None when the provider did not report it
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str = ""
    reasoning_kind: ReasoningKind = ReasoningKind.TEXT
    reasoning_blocks: tuple[ReasoningBlock, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedRequest:
    model: str
    inputs: tuple[str, ...]
    request_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Embeddings:
    vectors: tuple[tuple[float, ...], ...]
    usage: Usage | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeouts:
    """Seconds, each honoured as given (none is added to another). ``connect_s`` bounds opening
    the connection; ``first_byte_s`` the time from the request's start to the first byte of a
    stream's body; ``idle_s`` the gap between two chunks of a stream; ``total_s`` the whole
    call."""

    connect_s: float = 10.0
    first_byte_s: float = 60.0
    idle_s: float = 30.0
    total_s: float = 600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderSpec:
    """A configured provider block (from ``[providers.NAME]`` in config)."""

    name: str
    kind: str  # simulated | openai | anthropic | gemini | http | lambda | runpod | local
    base_url: str = ""
    api_key_env: str = ""  # the *name* of the env var holding the key; never the key itself
    timeouts: Timeouts = field(default_factory=Timeouts)
    max_concurrency: int = 64
    options: Mapping[str, Any] = field(default_factory=dict)  # kind-specific settings

    def __repr__(self) -> str:
        # A spec may end up in a log line or a traceback: its URLs are shown without secrets.
        options = {k: safe_url(v) if _is_url(v) else v for k, v in self.options.items()}
        return (
            f"ProviderSpec(name={self.name!r}, kind={self.kind!r}, "
            f"base_url={safe_url(self.base_url)!r}, api_key_env={self.api_key_env!r}, "
            f"timeouts={self.timeouts!r}, max_concurrency={self.max_concurrency!r}, "
            f"options={options!r})"
        )


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and "://" in value


@runtime_checkable
class Provider(Protocol):
    """What every adapter implements. Instances own their HTTP session; ``aclose`` frees it."""

    name: str

    def stream(self, request: ProviderRequest) -> AsyncIterator[ProviderEvent]:
        """Yield deltas and usage reports, then one ``Finish``; raise ProviderError on failure.

        Closing the iterator (``aclose``) or cancelling the consuming task must abort the upstream
        request at once.
        """
        ...

    async def complete(self, request: ProviderRequest) -> Completion: ...

    async def embed(self, request: EmbedRequest) -> Embeddings: ...

    async def list_models(self) -> list[str]: ...

    async def aclose(self) -> None: ...
