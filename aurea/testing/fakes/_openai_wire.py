"""OpenAI's wire format as the fake sends it: error bodies (with the exact texts of the 401, 429,
500, 503 and 400 answers), request validation, message text and deterministic embeddings."""

from __future__ import annotations

import hashlib
import math
from typing import Any

from aiohttp import web

from aurea.testing.fakes._core import Fault, FaultKind, json_response

__all__ = ["fake_embedding", "fault_reply", "text_of", "wrong_key_reply"]

_CREATED = 1_700_000_000
_BROKEN_CHUNK = b'data: {"id":"chatcmpl-x","object":\n\n'
_FINGERPRINT = "fp_fake0001"


def fake_embedding(text: str, dims: int) -> list[float]:
    """A deterministic unit vector for ``text``."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = [(digest[i % len(digest)] - 127.5) / 127.5 for i in range(dims)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return [round(v / norm, 6) for v in raw]


def _error(message: str, type_: str | None, code: str | None, param: str | None = None) -> Any:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def text_of(content: Any) -> str:
    """A message's ``content`` as text: a string, or the text parts of a list joined."""
    if isinstance(content, list):
        return "".join(
            str(p.get("text", ""))
            for p in content
            if isinstance(p, dict) and p.get("type") == "text"
        )
    return "" if content is None else str(content)


def _invalid(body: dict[str, Any]) -> str:
    """What OpenAI would refuse in a request's tools, tool messages and response format."""
    called: set[str] = set()
    for i, m in enumerate(body.get("messages", [])):
        for call in m.get("tool_calls") or []:
            called.add(str(call.get("id")))
        if m.get("role") == "tool" and m.get("tool_call_id") not in called:
            return (
                f"Invalid parameter: messages[{i}]: messages with role 'tool' must be a response "
                "to a preceeding message with 'tool_calls'."
            )
    names = {t.get("function", {}).get("name") for t in body.get("tools") or []}
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("function", {}).get("name") not in names:
        return "Invalid value for 'tool_choice': the named function is not in 'tools'."
    fmt = body.get("response_format") or {}
    if fmt.get("type") == "json_schema":
        schema = fmt.get("json_schema") or {}
        if not schema.get("name") or not isinstance(schema.get("schema"), dict):
            return "Missing required parameter: 'response_format.json_schema.name' or 'schema'."
    return ""


def wrong_key_reply(key: str) -> web.Response:
    """The 401 OpenAI sends for a wrong API key (the key masked as OpenAI masks it)."""
    masked = key[:3] + "*" * max(len(key) - 7, 0) + key[-4:] if len(key) > 8 else "***"
    return json_response(
        _error(
            f"Incorrect API key provided: {masked}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            "invalid_api_key",
        ),
        status=401,
        indent=4,
    )


def fault_reply(fault: Fault, model: str) -> web.Response | None:
    """OpenAI's HTTP answer to ``fault`` (UNAUTHORIZED aside); None for the stream faults."""
    kind = fault.kind
    if kind is FaultKind.RATE_LIMIT:
        # Consistent hints, as OpenAI sends them: the window resets when Retry-After says.
        hints = {
            "retry-after": fault.retry_after,
            "x-ratelimit-limit-requests": "3",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": f"{fault.retry_after}s",
        }
        return json_response(
            _error(
                f"Rate limit reached for {model} in organization org-fake on requests per min"
                " (RPM): Limit 3, Used 3, Requested 1. Please try again in 20s. Visit "
                "https://platform.openai.com/account/rate-limits to learn more.",
                "requests",
                "rate_limit_exceeded",
            ),
            status=429,
            headers=hints if fault.retry_after else {},
            indent=4,
        )
    if kind is FaultKind.SERVER_ERROR:
        return json_response(
            _error(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            ),
            status=500,
            indent=4,
        )
    if kind is FaultKind.OVERLOADED:
        return json_response(
            _error("The server is overloaded or not ready yet.", "server_error", None),
            status=503,
            indent=4,
        )
    if kind is FaultKind.CONTEXT_LENGTH:
        return json_response(
            _error(
                "This model's maximum context length is 128000 tokens. However, your "
                "messages resulted in 130412 tokens. Please reduce the length of the messages.",
                "invalid_request_error",
                "context_length_exceeded",
                "messages",
            ),
            status=400,
            indent=4,
        )
    if kind is FaultKind.CONTENT_FILTER:
        return json_response(
            _error(
                "Your request was rejected as a result of our safety system. Your prompt may "
                "contain text that is not allowed by our safety system.",
                "invalid_request_error",
                "content_policy_violation",
            ),
            status=400,
            indent=4,
        )
    return None
