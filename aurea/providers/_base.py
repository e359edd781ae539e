"""The Provider protocol and the normalized domain types every adapter speaks.

An adapter turns one ``ProviderRequest`` into an async stream of ``ProviderEvent`` s
(text, tool-call and reasoning deltas, usage reports, one terminal ``Finish``) and maps its
vendor's failures onto ``aurea.errors.ProviderError`` subclasses. Adapters know nothing of gRPC
or actors. The rich parts of a generation (images, tools, structured output, reasoning) are
defined here once, for every edge and adapter; ``aurea.types`` re-exports them.
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from aurea.providers._messages import (
    Capability as Capability,
)
from aurea.providers._messages import (
    ChatMessage as ChatMessage,
)
from aurea.providers._messages import (
    ContentPart as ContentPart,
)
from aurea.providers._messages import (
    GenerationOptions as GenerationOptions,
)
from aurea.providers._messages import (
    ImagePart as ImagePart,
)
from aurea.providers._messages import (
    ReasoningBlock as ReasoningBlock,
)
from aurea.providers._messages import (
    ReasoningEffort as ReasoningEffort,
)
from aurea.providers._messages import (
    ReasoningFormat as ReasoningFormat,
)
from aurea.providers._messages import (
    ReasoningKind as ReasoningKind,
)
from aurea.providers._messages import (
    ResponseFormat as ResponseFormat,
)
from aurea.providers._messages import (
    ResponseFormatType as ResponseFormatType,
)
from aurea.providers._messages import (
    Role as Role,
)
from aurea.providers._messages import (
    TextPart as TextPart,
)
from aurea.providers._messages import (
    Tool as Tool,
)
from aurea.providers._messages import (
    ToolCall as ToolCall,
)
from aurea.providers._messages import (
    ToolChoice as ToolChoice,
)
from aurea.providers._messages import (
    ToolChoiceMode as ToolChoiceMode,
)
from aurea.providers._messages import (
    required_capabilities as required_capabilities,
)
from aurea.providers._urls import safe_url


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
