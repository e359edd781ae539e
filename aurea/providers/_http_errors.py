"""How an upstream's error becomes an ``aurea.errors`` class: the status and wording table, the
caps on what of a reply Aurea reads or repeats, and strict JSON parsing that names what broke."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from aurea.errors import (
    ContentFiltered,
    ContextLengthExceeded,
    ProviderAuthError,
    ProviderError,
    ProviderOverloaded,
    ProviderRateLimited,
    ProviderServerError,
    UpstreamRejected,
)
from aurea.providers._retry import clamp_retry_after

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_ERROR_BODY_BYTES",
    "MAX_EVENT_BYTES",
    "MAX_MESSAGE_CHARS",
    "E",
    "ErrorParser",
    "clip",
    "error_for_status",
    "is_content_filter",
    "is_context_length",
    "json_object",
    "model_ids",
    "parse_json",
]

# What Aurea reads of an upstream's error body; the rest is never read (the connection closes).
MAX_ERROR_BODY_BYTES = 64 * 1024
# A non-streamed reply (JSON) larger than this fails the call: no real reply comes near it.
MAX_BODY_BYTES = 64 * 1024 * 1024
# One Server-Sent Event (its data lines, or one unterminated line) larger than this breaks the
# stream; a real chunk is a few hundred bytes.
MAX_EVENT_BYTES = 8 * 1024 * 1024
# An upstream's own words in an error message are cut to this many characters.
MAX_MESSAGE_CHARS = 2000

E = TypeVar("E", bound=ProviderError)
# (status, body text with secrets already removed, response headers) -> the error to raise
ErrorParser = Callable[[int, str, Mapping[str, str]], ProviderError]

_CONTEXT_WORDS = (
    "context_length",
    "context length",
    "context window",
    "context size",
    "exceed_context_size",
    "maximum context",
    "prompt is too long",
    "too many tokens",
    "input token count",
    "maximum number of tokens",
)
_FILTER_WORDS = (
    "content_filter",
    "content filter",
    "content_policy",
    "content policy",
    "content management policy",
    "safety system",
    "responsibleai",
)


def is_context_length(text: str) -> bool:
    """Does a provider's error text say the prompt did not fit the model's context window?"""
    lowered = text.lower()
    return any(word in lowered for word in _CONTEXT_WORDS)


def is_content_filter(text: str) -> bool:
    """Does a provider's error text say a content / safety policy blocked the request?"""
    lowered = text.lower()
    return any(word in lowered for word in _FILTER_WORDS)


def error_for_status(
    provider: str,
    status: int,
    detail: str,
    *,
    retry_after_s: float | None = None,
    in_stream: bool = False,
) -> ProviderError:
    """The most specific ``ProviderError`` for an HTTP error status and the provider's own text.

    ``in_stream``: the error came as an event inside a 200 stream; ``status`` is then the HTTP
    status the provider uses for that error type, used to classify but not reported.
    """
    where = "in-stream error" if in_stream else f"HTTP {status}"
    detail = clip(detail)
    message = f"{provider}: {where}: {detail}" if detail else f"{provider}: {where}"
    cls: type[ProviderError]
    if status in (401, 403):
        cls = ProviderAuthError
    elif status == 429:
        cls = ProviderRateLimited
    elif status in (503, 529) or (status >= 500 and "overloaded" in detail.lower()):
        cls = ProviderOverloaded
    elif status >= 500:
        cls = ProviderServerError
    elif is_context_length(detail):
        cls = ContextLengthExceeded
    elif is_content_filter(detail):
        cls = ContentFiltered
    elif 400 <= status < 500:
        cls = UpstreamRejected
    else:
        cls = ProviderServerError  # 1xx/3xx we did not expect
    reported = None if in_stream else status
    return cls(
        message, provider=provider, status=reported, retry_after_s=clamp_retry_after(retry_after_s)
    )


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` cut to ``limit`` characters (an upstream's words must not flood a status)."""
    return text if len(text) <= limit else f"{text[:limit]}... [{len(text) - limit} more chars]"


def model_ids(data: Mapping[str, Any]) -> list[str]:
    """The ids of a ``{"data": [{"id": ...}, ...]}`` model list (OpenAI's and Anthropic's shape);
    entries that are not objects with a string id are skipped."""
    items = data.get("data")
    if not isinstance(items, list):
        return []
    return [
        item["id"]
        for item in items
        if isinstance(item, Mapping) and isinstance(item.get("id"), str) and item["id"]
    ]


def json_object(data: Any, *, provider: str, what: str) -> Mapping[str, Any]:
    """``data`` if it is a JSON object, else ProviderServerError (the upstream broke its API)."""
    if not isinstance(data, Mapping):
        raise ProviderServerError(f"{provider}: {what} is not a JSON object", provider=provider)
    return data


def parse_json(text: str | bytes, *, provider: str, what: str, broken: type[E]) -> Any:
    """``json.loads`` that raises ``broken`` (e.g. StreamBroken) naming what was malformed."""
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # RecursionError: [[[[...
        raise broken(f"{provider}: malformed JSON in {what}", provider=provider) from exc
