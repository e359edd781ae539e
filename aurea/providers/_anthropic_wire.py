"""The Anthropic Messages wire format as read back: stop reasons, usage counts in Aurea's
convention, content-block fields, and an upstream's error body as an ``aurea.errors`` class."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aurea.errors import ProviderError
from aurea.providers._base import FinishReason, ReasoningKind
from aurea.providers._boundary import MalformedReply, json_type
from aurea.providers._http import error_for_status, retry_after_from_headers
from aurea.providers._retry import parse_reset_time
from aurea.providers._values import Counts, token_count

__all__ = ["error_from_body", "usage_counts"]

_FINISH = {
    "end_turn": FinishReason.STOP,
    "stop_sequence": FinishReason.STOP,
    "pause_turn": FinishReason.STOP,
    "max_tokens": FinishReason.LENGTH,
    "model_context_window_exceeded": FinishReason.LENGTH,
    "tool_use": FinishReason.TOOL_CALLS,
    "refusal": FinishReason.CONTENT_FILTER,
}
# The HTTP status Anthropic uses for each error type (to classify in-stream ``error`` events).
_TYPE_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


def usage_counts(raw: Mapping[str, Any]) -> Counts:
    """Anthropic's usage (input excludes cache reads and writes) as counts in Aurea's convention:
    input is all three added up (unknown when ``input_tokens`` itself is invalid)."""
    fresh = token_count(raw.get("input_tokens"))
    read = token_count(raw.get("cache_read_input_tokens")) or 0
    written = token_count(raw.get("cache_creation_input_tokens")) or 0
    return Counts(
        input_tokens=None if fresh is None else fresh + read + written,
        cached_input_tokens=read,
        output_tokens=raw.get("output_tokens"),
    )


def _stop_reason(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedReply(f"{where}.stop_reason is {json_type(value)}, not a string")
    return value


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _field(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str):
        raise MalformedReply(f"{where}.{key} is {json_type(value)}, not text")
    return value


def _reasoning_kind(model: str) -> ReasoningKind:
    # Claude 3.7 returns its whole thinking; later models a summary of it.
    return ReasoningKind.TEXT if model.startswith("claude-3-7") else ReasoningKind.SUMMARY


@dataclass(slots=True)
class _Block:
    """A content block of the answer being streamed, as Aurea relays it."""

    kind: str  # "text", "tool" (a tool call), "answer" (the structured output tool), "thinking"
    call: int = -1  # the tool call's position in the answer
    pieces: int = 0  # argument pieces relayed
    # A thinking block's text and signature as they stream (it is kept whole, to go back).
    thinking: list[str] = field(default_factory=list)
    signature: str = ""


def error_from_body(
    provider: str, status: int | None, body: Any, retry_after_s: float | None = None
) -> ProviderError:
    """Map ``{"type": "error", "error": {type, message}}``; ``status`` None = in-stream event."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        error = {"message": str(body)}
    type_ = str(error.get("type") or "")
    message = str(error.get("message") or "")
    detail = f"{type_}: {message}" if type_ else message
    in_stream = status is None
    if status is None:
        status = _TYPE_STATUS.get(type_, 500)
    return error_for_status(
        provider, status, detail, retry_after_s=retry_after_s, in_stream=in_stream
    )


def _retry_after(headers: Mapping[str, str]) -> float | None:
    seconds = retry_after_from_headers(headers)
    if seconds is not None:
        return seconds
    resets = [
        parse_reset_time(headers.get(f"anthropic-ratelimit-{name}-reset"))
        for name in ("requests", "tokens", "input-tokens", "output-tokens")
    ]
    known = [r for r in resets if r is not None]
    return max(known) if known else None
