"""What the inference calls return: plain frozen dataclasses, never protobuf, so application code
does not depend on generated classes. Money is integer nano-dollars (``cost_nanos``), as in the
API; ``cost_usd`` is there for display."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from aurea_client._messages import Message, ReasoningBlock, ToolCall

Policy = Literal["cost", "quality", "latency", "balanced"]
# What a stream does when its upstream breaks after text was sent (see the API's MidStreamFailover).
Failover = Literal["continue", "continue_or_restart", "restart", "none"]
FinishReason = Literal[
    "stop", "length", "content_filter", "tool_calls", "budget_exceeded", "error", "unspecified"
]
ReasoningEffort = Literal["low", "medium", "high"]
# What reasoning text is: the model's own ("text") or the provider's summary of it.
ReasoningKind = Literal["text", "summary"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token counts normalized across providers (``estimated``: Aurea counted, the provider
    did not report)."""

    input_tokens: int = 0
    cached_input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    estimated: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """A whole answer from ``generate``."""

    request_id: str
    model: str
    provider: str
    text: str
    finish_reason: FinishReason
    usage: Usage
    cost_nanos: int
    latency_ms: float
    ttft_ms: float
    attempts: int
    cache_hit: bool
    route_reason: str
    # The calls to answer (finish_reason "tool_calls") and the reasoning, where the model gave
    # them; ``reasoning`` is never part of ``text`` (``reasoning_kind`` None when it is empty).
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str = ""
    reasoning_kind: ReasoningKind | None = None
    reasoning_blocks: tuple[ReasoningBlock, ...] = ()

    @property
    def cost_usd(self) -> float:
        return self.cost_nanos / 1e9

    def message(self) -> Message:
        """The assistant message that repeats this answer in the next request: its text, its
        tool calls and its reasoning blocks as returned (thinking models need them echoed)."""
        return Message(
            "assistant",
            self.text,
            tool_calls=self.tool_calls,
            reasoning_blocks=self.reasoning_blocks,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    """Opens every stream: the first candidate chosen."""

    request_id: str
    model: str
    provider: str
    attempt: int
    route_reason: str
    cache_hit: bool


@dataclass(frozen=True, slots=True)
class Delta:
    """The next piece of text (several upstream pieces may arrive merged)."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallDelta:
    """The next piece of tool call ``index`` (0, 1, ... in the answer): its first piece has the
    ``id`` and ``name``, and its ``arguments`` pieces joined are its JSON arguments. ``Final``
    repeats every call whole (with its signature)."""

    index: int
    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    """The next piece of the model's reasoning (never part of the text)."""

    text: str
    kind: ReasoningKind | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageUpdate:
    """Cumulative usage so far."""

    usage: Usage
    cost_nanos: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Fallback:
    """A candidate was abandoned; ``to_model`` is tried next. After text was sent, ``restart``
    True means the answer starts over: discard the text received so far (False: it continues
    where it stopped)."""

    from_model: str
    to_model: str
    to_provider: str
    cause: str
    message: str
    attempt: int
    restart: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Final:
    """Closes a stream that ended normally (or was cut for ``finish_reason``)."""

    finish_reason: FinishReason
    usage: Usage
    cost_nanos: int
    latency_ms: float
    ttft_ms: float
    model: str
    provider: str
    attempts: int
    # The answer's tool calls, whole, and its reasoning blocks (since the last restart).
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning_blocks: tuple[ReasoningBlock, ...] = ()

    @property
    def cost_usd(self) -> float:
        return self.cost_nanos / 1e9

    def message(self, text: str = "") -> Message:
        """The assistant message that repeats the answer: ``text`` is what the ``Delta`` events
        carried (since the last restart); the tool calls and reasoning blocks are this event's."""
        return Message(
            "assistant", text, tool_calls=self.tool_calls, reasoning_blocks=self.reasoning_blocks
        )


StreamEvent = Started | Delta | ToolCallDelta | ReasoningDelta | UsageUpdate | Fallback | Final


@dataclass(frozen=True, slots=True, kw_only=True)
class Embeddings:
    """One vector per input, in input order."""

    request_id: str
    model: str
    provider: str
    vectors: tuple[tuple[float, ...], ...]
    usage: Usage
    cost_nanos: int
