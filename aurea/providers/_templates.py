"""JSON pointers (RFC 6901) and body templates for the generic HTTP adapter: filling a template's
placeholders, finding what a template references, and reading text, counts and finish reasons
out of a reply."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from aurea.providers._base import Finish, FinishReason, ProviderRequest, Usage
from aurea.providers._boundary import MalformedReply, json_type
from aurea.providers._tokens import prompt_extra_tokens
from aurea.providers._values import Counts, reported_usage, token_count

__all__ = [
    "MISSING",
    "check_pointer",
    "finish_from",
    "read_count",
    "references",
    "render_template",
    "resolve_pointer",
    "text_of",
    "usage_from_counts",
]

MISSING: Any = object()  # what resolve_pointer returns when the pointer leads nowhere
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_FINISH_WORDS = {
    "length": FinishReason.LENGTH,
    "max_tokens": FinishReason.LENGTH,
    "content_filter": FinishReason.CONTENT_FILTER,
    "tool_calls": FinishReason.TOOL_CALLS,
}


def check_pointer(pointer: str) -> str:
    """``pointer`` if it is a valid RFC 6901 JSON pointer, else ValueError."""
    if pointer and not pointer.startswith("/"):
        raise ValueError(f"JSON pointer {pointer!r} must be empty or start with '/'")
    return pointer


def resolve_pointer(document: Any, pointer: str) -> Any:
    """The value at ``pointer`` (RFC 6901: ``~1`` is ``/``, ``~0`` is ``~``), or ``MISSING``."""
    check_pointer(pointer)
    if pointer == "":
        return document
    current = document
    for raw in pointer[1:].split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(current, Mapping):
            if token not in current:
                return MISSING
            current = current[token]
        elif isinstance(current, list):
            if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
                return MISSING
            index = int(token)
            if index >= len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def render_template(template: Any, values: Mapping[str, Any]) -> Any:
    """Fill ``template``'s string leaves from ``values`` (see the module docstring)."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole and whole.group(1) in values:
            return values[whole.group(1)]

        def text(match: re.Match[str]) -> str:
            if match.group(1) not in values:
                return match.group(0)  # not ours: leave literal braces alone
            value = values[match.group(1)]
            if value is None:
                return ""
            return value if isinstance(value, str) else json.dumps(value)

        return _PLACEHOLDER.sub(text, template)
    if isinstance(template, Mapping):
        out = {}
        for key, value in template.items():
            rendered = render_template(value, values)
            if rendered is None and value is not None:
                continue
            out[str(key)] = rendered
        return out
    if isinstance(template, list):
        return [render_template(item, values) for item in template]
    return template


def text_of(value: Any, where: str = "the text") -> str:
    """A pointer's value as text: a string as is, a list of strings joined, nothing as "";
    anything else (a number, an object, a list holding one) is a MalformedReply."""
    if value is MISSING or value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return "".join(value)
    raise MalformedReply(f"{where} is {json_type(value)}, not text")


def read_count(document: Any, pointer: str | None) -> int | None:
    """A validated token count at ``pointer`` (``_values.token_count``), or None when it is
    absent or not a count."""
    value = resolve_pointer(document, pointer) if pointer is not None else MISSING
    return None if value is MISSING else token_count(value)


def references(template: Any) -> set[str]:
    """The placeholders a template's string leaves (and keys) use."""
    found: set[str] = set()
    if isinstance(template, str):
        found.update(_PLACEHOLDER.findall(template))
    elif isinstance(template, Mapping):
        for key, value in template.items():
            found.update(references(str(key)) | references(value))
    elif isinstance(template, list):
        for item in template:
            found |= references(item)
    return found


async def usage_from_counts(
    counts: tuple[int | None, int | None], request: ProviderRequest, text: str
) -> Usage:
    """Reported (input, output) counts, each missing one estimated (the whole is then
    ``estimated``)."""
    return await reported_usage(
        Counts(input_tokens=counts[0], output_tokens=counts[1]),
        messages=request.messages,
        output_text=text,
        model=request.model,
        extra_input_tokens=prompt_extra_tokens(request),
    )


def finish_from(document: Any, pointer: str | None) -> Finish | None:
    """A ``Finish`` from the word at ``pointer`` (length/max_tokens, content_filter,
    tool_calls; any other string is STOP), or None when there is none."""
    if pointer is None:
        return None
    raw = resolve_pointer(document, pointer)
    if raw in (MISSING, None, ""):
        return None
    if not isinstance(raw, str):
        raise MalformedReply(f"the finish reason at {pointer!r} is {json_type(raw)}, not a string")
    return Finish(_FINISH_WORDS.get(raw.lower(), FinishReason.STOP), raw)
