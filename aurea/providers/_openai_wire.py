"""The OpenAI Chat Completions wire format as read back: finish reasons, usage counts, message
content and choices, and an upstream's error body as an ``aurea.errors`` class."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurea.errors import ContentFiltered, ContextLengthExceeded, ProviderError
from aurea.providers._base import Finish, FinishReason
from aurea.providers._boundary import MalformedReply, json_type
from aurea.providers._http import error_for_status
from aurea.providers._values import Counts

__all__ = ["choice_index", "content_text", "error_from_body", "finish_reason", "parse_usage"]

_FINISH = {
    "stop": FinishReason.STOP,
    "length": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
    "tool_calls": FinishReason.TOOL_CALLS,
    "function_call": FinishReason.TOOL_CALLS,
}


def finish_reason(raw: str) -> Finish:
    """OpenAI's finish_reason as a ``Finish`` (servers' own words such as "eos" count as STOP)."""
    return Finish(_FINISH.get(raw, FinishReason.STOP), raw)


def _finish_of(choice: Mapping[str, Any], where: str) -> Finish | None:
    raw = choice.get("finish_reason")
    if raw is None or raw == "":
        return None
    if not isinstance(raw, str):
        raise MalformedReply(f"{where}.finish_reason is {json_type(raw)}, not a string")
    return finish_reason(raw)


def parse_usage(data: Any) -> Counts | None:
    """The counts in OpenAI's usage object (None when there is none); ``reported_usage`` turns
    them into a validated ``Usage`` (OpenAI's prompt tokens already include cached ones)."""
    counts = Counts.of(data, input_tokens="prompt_tokens", output_tokens="completion_tokens")
    if counts is None:
        return None
    prompt_details = data.get("prompt_tokens_details")
    completion_details = data.get("completion_tokens_details")
    return Counts(
        input_tokens=counts.input_tokens,
        output_tokens=counts.output_tokens,
        cached_input_tokens=(
            prompt_details.get("cached_tokens") if isinstance(prompt_details, Mapping) else None
        ),
        reasoning_tokens=(
            completion_details.get("reasoning_tokens")
            if isinstance(completion_details, Mapping)
            else None
        ),
    )


def content_text(value: Any, where: str) -> str:
    """A message or delta ``content`` as text: a string, null (no text), or a list of text parts
    (strings or ``{"type": "text", "text": ...}``), joined. Anything else is MalformedReply."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if isinstance(part, str):
                parts.append(part)
            elif (
                isinstance(part, Mapping)
                and part.get("type", "text") == "text"
                and isinstance(part.get("text"), str)
            ):
                parts.append(part["text"])
            else:
                raise MalformedReply(f"{where}[{i}] is {json_type(part)}, not a text part")
        return "".join(parts)
    raise MalformedReply(f"{where} is {json_type(value)}, not text")


def choice_index(value: Any, where: str) -> int:
    """A choice's ``index``: a whole number, also when sent as a string (``"0"``); missing is 0."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        return int(value)
    raise MalformedReply(f"{where}.index is {json_type(value)}, not a whole number")


def _choices(data: Mapping[str, Any], where: str) -> list[Mapping[str, Any]]:
    choices = data.get("choices")
    if choices is None:
        return []
    if not isinstance(choices, list):
        raise MalformedReply(f"{where}.choices is {json_type(choices)}, not a list")
    for i, choice in enumerate(choices):
        if not isinstance(choice, Mapping):
            raise MalformedReply(f"{where}.choices[{i}] is {json_type(choice)}, not an object")
    return choices


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedReply(f"{where} is {json_type(value)}, not an object")
    return value


def error_from_body(
    provider: str, status: int | None, error: Any, retry_after_s: float | None = None
) -> ProviderError:
    """Map ``{"error": {message, type, param, code}}`` onto aurea.errors.

    ``status`` None means the error arrived as an event inside a stream.
    """
    if not isinstance(error, Mapping):
        error = {"message": str(error)}
    message = str(error.get("message") or "")
    type_ = str(error.get("type") or "")
    code = str(error.get("code") or "")
    detail = f"{type_}: {message}" if type_ else message
    if code:
        detail = f"{detail} (code {code})"
    in_stream = status is None
    if status is None:  # classify an in-stream error by the status OpenAI uses for its type
        status = 400 if type_ == "invalid_request_error" else 500
        if "rate_limit" in f"{type_} {code}":
            status = 429
        if code.isdigit() and 400 <= int(code) < 600:  # vLLM / llama.cpp put the status here
            status = int(code)
    where = "in-stream error" if in_stream else f"HTTP {status}"
    text = f"{provider}: {where}: {detail}"
    reported = None if in_stream else status
    if code == "context_length_exceeded":
        return ContextLengthExceeded(text, provider=provider, status=reported)
    if code in ("content_filter", "content_policy_violation"):
        return ContentFiltered(text, provider=provider, status=reported)
    return error_for_status(
        provider, status, detail, retry_after_s=retry_after_s, in_stream=in_stream
    )
