"""The Gemini wire format as read back: finish reasons, usage counts, function calls, and an
upstream's error body as an ``aurea.errors`` class."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aurea.errors import ProviderAuthError, ProviderError
from aurea.providers._base import Finish, FinishReason
from aurea.providers._boundary import MalformedReply, json_type
from aurea.providers._http import error_for_status, parse_duration
from aurea.providers._values import Counts, token_count

__all__ = ["error_from_body", "finish_for", "parse_usage"]

_FILTERED = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "LANGUAGE",
}
# google.rpc.Code name -> the HTTP status Google maps it to (for in-stream errors).
_STATUS_HTTP = {
    "INVALID_ARGUMENT": 400,
    "FAILED_PRECONDITION": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "NOT_FOUND": 404,
    "RESOURCE_EXHAUSTED": 429,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DEADLINE_EXCEEDED": 504,
}


def finish_for(raw: str) -> Finish:
    """Gemini's ``finishReason`` as a ``Finish``; unknown or OTHER reasons are ERROR."""
    if raw == "STOP":
        return Finish(FinishReason.STOP, raw)
    if raw == "MAX_TOKENS":
        return Finish(FinishReason.LENGTH, raw)
    if raw in _FILTERED:
        return Finish(FinishReason.CONTENT_FILTER, raw)
    return Finish(FinishReason.ERROR, raw)


def parse_usage(meta: Any) -> Counts | None:
    """The counts in ``usageMetadata`` (None without a ``promptTokenCount``). Output is
    candidates + thoughts; a missing ``candidatesTokenCount`` is 0 (Gemini omits it when the
    answer is empty), an invalid one unknown."""
    if not isinstance(meta, Mapping) or "promptTokenCount" not in meta:
        return None
    thoughts = token_count(meta.get("thoughtsTokenCount")) or 0
    raw_candidates = meta.get("candidatesTokenCount", 0)
    candidates = token_count(raw_candidates)
    return Counts(
        input_tokens=meta.get("promptTokenCount"),
        cached_input_tokens=meta.get("cachedContentTokenCount"),
        output_tokens=None if candidates is None else candidates + thoughts,
        reasoning_tokens=thoughts,
    )


# (name, arguments JSON text, Gemini's own id or "", the part's thoughtSignature or "")
_Call = tuple[str, str, str, str]


def signature_of(part: Mapping[str, Any], where: str) -> str:
    """A part's ``thoughtSignature`` ("" without one)."""
    value = part.get("thoughtSignature")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedReply(f"{where}.thoughtSignature is {json_type(value)}, not text")
    return value


def _call(value: Any, where: str, signature: str = "") -> _Call:
    if not isinstance(value, Mapping) or not isinstance(value.get("name"), str):
        raise MalformedReply(f"{where} is not a function call with a name")
    args = value.get("args", {})
    if not isinstance(args, Mapping):
        raise MalformedReply(f"{where}.args is {json_type(args)}, not an object")
    given = value.get("id")
    return (
        value["name"],
        json.dumps(args, ensure_ascii=False),
        given if isinstance(given, str) else "",
        signature,
    )


def _finish(raw: str, calls: int) -> Finish:
    finish = finish_for(raw)
    if calls and finish.reason is FinishReason.STOP:
        return Finish(FinishReason.TOOL_CALLS, raw)
    return finish


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedReply(f"{where} is {json_type(value)}, not a list")
    return value


def error_from_body(
    provider: str, http_status: int | None, body: Any, retry_after_s: float | None = None
) -> ProviderError:
    """Map ``{"error": {code, message, status, details}}``; ``http_status`` None = in-stream."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        error = {"message": str(body)}
    status_name = str(error.get("status") or "")
    message = str(error.get("message") or "")
    detail = f"{status_name}: {message}" if status_name else message
    reasons = set()
    details = error.get("details")
    for item in details if isinstance(details, list) else []:
        if not isinstance(item, Mapping):
            continue
        if item.get("reason"):
            reasons.add(str(item["reason"]))
        if str(item.get("@type", "")).endswith("google.rpc.RetryInfo") and retry_after_s is None:
            retry_after_s = parse_duration(str(item.get("retryDelay", "")))
    in_stream = http_status is None
    code = error.get("code")
    if isinstance(code, bool) or not isinstance(code, int) or not 100 <= code < 600:
        code = 0  # not an HTTP status: classify by the status name instead
    status = http_status or code or _STATUS_HTTP.get(status_name, 500)
    if "API_KEY_INVALID" in reasons or status_name in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        where = "in-stream error" if in_stream else f"HTTP {status}"
        return ProviderAuthError(
            f"{provider}: {where}: {detail}",
            provider=provider,
            status=None if in_stream else status,
        )
    return error_for_status(
        provider, status, detail, retry_after_s=retry_after_s, in_stream=in_stream
    )
