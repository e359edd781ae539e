"""What an inference call is and what it produces: the call types the edge builds, the events a
stream emits, and the ``CallRecord`` every call leaves behind, whichever way it ended."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aurea.providers._base import (
    ChatMessage,
    FinishReason,
    GenerationOptions,
    ReasoningBlock,
    ReasoningDelta,
    ReasoningKind,
    ResponseFormat,
    Tool,
    ToolCall,
    ToolCallDelta,
    Usage,
)
from aurea.types import Policy


class CallerGone(asyncio.CancelledError):
    """Raised by an edge's writer when its transport says the caller has gone (grpc reports a
    failed write, not a cancellation): the call unwinds as a cancellation, not as a bug."""


class FailoverMode(enum.StrEnum):
    """What a stream does when its upstream breaks or stalls after output has begun and another
    candidate remains."""

    CONTINUE = "continue"  # continue by prefill where a candidate accepts it; else end (default)
    CONTINUE_OR_RESTART = "continue_or_restart"  # ... else restart (the client discards)
    RESTART = "restart"  # always restart on the next candidate (one model's whole answer)
    NONE = "none"  # end with the error

    @property
    def continues(self) -> bool:
        return self in (FailoverMode.CONTINUE, FailoverMode.CONTINUE_OR_RESTART)

    @property
    def restarts(self) -> bool:
        return self in (FailoverMode.CONTINUE_OR_RESTART, FailoverMode.RESTART)


@dataclass(frozen=True, slots=True, kw_only=True)
class GenerateCall:
    request_id: str
    messages: tuple[ChatMessage, ...]
    model: str = ""
    max_tokens: int = 0
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    job_id: str = ""
    principal: str = ""  # the API key's name ("" in open mode): whose default job pays
    policy: Policy | None = None
    fallbacks: tuple[str, ...] = ()
    cache_bypass: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)
    usage_interval: int = 16
    deadline: float | None = None  # monotonic instant; None: the server's default bound
    failover: FailoverMode = FailoverMode.CONTINUE
    # Rich generation: what the model may call, how it must shape its answer, how hard it
    # should think (None for plain text). Candidates whose catalog capabilities lack what the
    # call needs are skipped.
    options: GenerationOptions | None = None

    @property
    def tools(self) -> tuple[Tool, ...]:
        return self.options.tools if self.options is not None else ()

    @property
    def response_format(self) -> ResponseFormat | None:
        return self.options.response_format if self.options is not None else None


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedCall:
    request_id: str
    inputs: tuple[str, ...]
    model: str = ""
    job_id: str = ""
    principal: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    deadline: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Started:
    request_id: str
    model: str
    provider: str
    attempt: int
    reason: str
    cache_hit: bool = False


@dataclass(frozen=True, slots=True)
class Delta:
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class UsageUpdate:
    usage: Usage
    cost_nanos: int


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackEvent:
    from_model: str
    to_model: str
    to_provider: str
    cause: str
    message: str
    attempt: int
    # Output had begun and the next candidate starts the answer over: the client discards the
    # text it received so far. (After output began without it, the next deltas continue it.)
    restart: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Final:
    finish_reason: FinishReason
    usage: Usage
    cost_nanos: int
    latency_s: float
    ttft_s: float
    model: str
    provider: str
    attempts: int
    route_reason: str = ""
    text: str = ""  # filled for unary calls only
    # The answer's tool calls, whole and in order (streams send them as ``ToolCallDelta`` s
    # first; ``final`` repeats them assembled).
    tool_calls: tuple[ToolCall, ...] = ()
    reasoning: str = ""  # filled for unary calls only, where the provider exposes it
    reasoning_kind: ReasoningKind = ReasoningKind.TEXT
    # The provider's opaque reasoning blocks, in order (streams too: no event carries them),
    # for the client to send back with the answer in its next turn.
    reasoning_blocks: tuple[ReasoningBlock, ...] = ()


# ``ToolCallDelta`` and ``ReasoningDelta`` reach the edge as the adapters made them (their
# ``index`` is the call's position in this answer).
GenEvent = Started | Delta | ToolCallDelta | ReasoningDelta | UsageUpdate | FallbackEvent | Final


@dataclass(frozen=True, slots=True, kw_only=True)
class EmbedResult:
    model: str
    provider: str
    vectors: tuple[tuple[float, ...], ...]
    usage: Usage
    cost_nanos: int
    attempts: int = 1


class CallKind(enum.StrEnum):
    STREAM = "stream"
    UNARY = "unary"
    EMBED = "embed"


class CallOutcome(enum.StrEnum):
    """How a whole call ended, as the caller saw it."""

    OK = "ok"
    FAILED = "failed"  # ended with an error status
    CANCELLED = "cancelled"  # the caller went away
    DEADLINE = "deadline_exceeded"


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptRecord:
    model: str
    provider: str
    error: str = ""  # the error's reason ("" for the attempt that answered)
    latency_s: float = 0.0


@dataclass(slots=True, kw_only=True)
class CallRecord:
    """One per call, filled by every path (stream, unary, embed; success, error, cancel) and
    handed to the record sinks at the end: stats, ledger, metrics and the log line read it."""

    request_id: str
    kind: CallKind
    job_id: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    model: str = ""  # the model that answered (or was last tried)
    provider: str = ""
    attempts: list[AttemptRecord] = field(default_factory=list)
    fallbacks: int = 0
    ttft_s: float | None = None
    latency_s: float = 0.0
    usage: Usage = field(default_factory=Usage)
    cost_nanos: int = 0
    outcome: CallOutcome = CallOutcome.FAILED
    error: str = ""  # the reason of the error that ended the call
    finish_reason: FinishReason | None = None
    cache_hit: bool = False


# The record of the call running in this task: the canonical log line reads it when (and only
# when) it is written, so a call pays nothing for log fields that a log level filters out.
current_record: ContextVar[CallRecord | None] = ContextVar("aurea_call_record", default=None)


def log_fields(record: CallRecord) -> dict[str, Any]:
    """The record's fields for the canonical ``rpc_finished`` line."""
    fields: dict[str, Any] = {
        "model": record.model,
        "provider": record.provider,
        "attempts": len(record.attempts),
        "input_tokens": record.usage.input_tokens,
        "output_tokens": record.usage.output_tokens,
        "cost_nanos": record.cost_nanos,
        "outcome": record.outcome.value,
    }
    if record.cache_hit:
        fields["cache_hit"] = True
    if record.fallbacks:
        fields["fallbacks"] = record.fallbacks
    if record.ttft_s is not None:
        fields["ttft_ms"] = round(record.ttft_s * 1e3, 3)
    if record.finish_reason is not None:
        fields["finish"] = record.finish_reason.value
    if record.error:
        fields["error"] = record.error
    if record.labels:
        fields["labels"] = dict(record.labels)
    if record.job_id:
        fields["job_id"] = record.job_id
    return fields
