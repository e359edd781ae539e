"""What the core adds for rich generation: which candidates can serve a call that needs tools,
a JSON schema, a strict schema, images or reasoning (their catalog capabilities say), the
assembly of streamed tool-call pieces into whole calls, and the checks every edge (gRPC, the
HTTP door) applies to the rich parts of a request before it builds the call.

The capability filter runs in the core, after routing and before the attempt loop, so a call is
never sent to a model that would drop what it asked for; with no capable candidate it ends at
once with ``UnsupportedFeature`` naming the models and what each lacks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from aurea.errors import FieldViolation, UnsupportedFeature
from aurea.providers._base import (
    Capability,
    ChatMessage,
    ImagePart,
    Role,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
)
from aurea.providers._images import (
    MAX_IMAGE_BYTES,
    MEDIA_TYPES,
    media_type_from_url,
    parse_data_url,
    sniff_media_type,
)
from aurea.routing import Candidate

__all__ = [
    "MAX_TOOLS",
    "ToolCalls",
    "capable",
    "check_conversation",
    "image_part",
    "json_object",
    "name_ok",
    "unique_names",
]

# The request field each capability answers to, for the BadRequest field violation.
_FIELD = {
    Capability.TOOLS: "tools",
    Capability.JSON_SCHEMA: "response_format",
    Capability.STRICT_SCHEMA: "response_format.strict",
    Capability.IMAGES: "messages",
    Capability.REASONING: "reasoning_effort",
}
_WHAT = {
    Capability.TOOLS: "tool calls",
    Capability.JSON_SCHEMA: "JSON response formats",
    Capability.STRICT_SCHEMA: "strict schemas",
    Capability.IMAGES: "images in messages",
    Capability.REASONING: "a reasoning effort",
}


def capable(candidates: Sequence[Candidate], needs: frozenset[Capability]) -> tuple[Candidate, ...]:
    """The candidates whose catalog capabilities cover ``needs``, in order; UnsupportedFeature
    when none does."""
    out = tuple(c for c in candidates if needs <= c.model.capabilities)
    if out:
        return out
    lacks = []
    missing: set[Capability] = set()
    for c in candidates:
        gap = sorted(needs - c.model.capabilities)
        missing.update(gap)
        lacks.append(f"{c.model.name} lacks {', '.join(_WHAT[g] for g in gap)}")
    who = (
        f"model {candidates[0].model.name!r} cannot serve this request"
        if len(candidates) == 1
        else "no candidate model can serve this request"
    )
    violations = [
        FieldViolation(_FIELD[g], f"needs a model with the {g.value!r} capability")
        for g in sorted(missing)
    ]
    message = f"{who}: {'; '.join(lacks)} (catalog capabilities; see models.NAME.capabilities)"
    raise UnsupportedFeature(message, violations)


class ToolCalls:
    """The tool calls of one answer, assembled from ``ToolCallDelta`` s as they pass."""

    __slots__ = ("_calls", "chars")

    def __init__(self) -> None:
        # index -> ([id, name, signature], argument pieces)
        self._calls: dict[int, tuple[list[str], list[str]]] = {}
        self.chars = 0  # argument characters so far (for output estimates)

    def __bool__(self) -> bool:
        return bool(self._calls)

    def add(self, delta: ToolCallDelta) -> None:
        found = self._calls.get(delta.index)
        if found is None:
            found = self._calls[delta.index] = (["", "", ""], [])
        head, args = found
        if delta.id and not head[0]:
            head[0] = delta.id
        if delta.name and not head[1]:
            head[1] = delta.name
        if delta.signature and not head[2]:
            head[2] = delta.signature
        if delta.arguments:
            args.append(delta.arguments)
            self.chars += len(delta.arguments)

    def text(self) -> str:
        """Every call's name and arguments (what output estimates count)."""
        return "".join(h[1] + "".join(a) for h, a in self._calls.values())

    def calls(self) -> tuple[ToolCall, ...]:
        return tuple(
            ToolCall(id=head[0], name=head[1], arguments="".join(args), signature=head[2])
            for _, (head, args) in sorted(self._calls.items())
        )


# -- validating the rich parts of a call (shared by every edge) ------------------------------------

MAX_TOOLS = 128
MAX_PARTS = 100
MAX_SCHEMA_CHARS = 65_536
MAX_DESCRIPTION_CHARS = 4096
MAX_URL_CHARS = 8192
MAX_ARGUMENTS_CHARS = 1 << 20
MAX_TOOL_CALL_ID = 256
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
NAME_RULE = "must be 1 to 64 characters of a-z, A-Z, 0-9, _ and -"


def name_ok(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def json_object(text: str, field: str, bad: list[FieldViolation]) -> dict[str, Any] | None:
    """``text`` parsed as a JSON object (a schema), or None with a violation."""
    if len(text) > MAX_SCHEMA_CHARS:
        bad.append(FieldViolation(field, f"at most {MAX_SCHEMA_CHARS} characters"))
        return None
    try:
        value = json.loads(text)
    except ValueError as exc:
        bad.append(FieldViolation(field, f"is not valid JSON ({exc})"))
        return None
    if not isinstance(value, dict):
        bad.append(FieldViolation(field, "must be a JSON object"))
        return None
    return value


def image_part(
    *, url: str, data: bytes, media_type: str, detail: str, field: str, bad: list[FieldViolation]
) -> ImagePart | None:
    """An ``ImagePart`` from what a request gave (a URL, a base64 data: URL, or bytes), or
    None with a violation: the size limit, a media type Aurea does not take, a bad URL."""
    if detail not in ("", "low", "high", "auto"):
        bad.append(FieldViolation(f"{field}.detail", 'must be "low", "high", "auto" or empty'))
        return None
    media_type = media_type.strip().lower()
    if url.startswith("data:"):
        try:
            url_type, data = parse_data_url(url)
        except ValueError as exc:
            bad.append(FieldViolation(f"{field}.url", str(exc)))
            return None
        media_type = media_type or url_type
        url = ""
    if url:
        if len(url) > MAX_URL_CHARS or not url.lower().startswith(("http://", "https://")):
            bad.append(
                FieldViolation(
                    f"{field}.url",
                    f"must be an http(s) URL of at most {MAX_URL_CHARS} characters, or a data: URL",
                )
            )
            return None
        media_type = media_type or media_type_from_url(url)
        if media_type and media_type not in MEDIA_TYPES:
            bad.append(FieldViolation(f"{field}.media_type", f"must be one of {MEDIA_TYPES}"))
            return None
        return ImagePart(url=url, media_type=media_type, detail=detail)
    if not data:
        bad.append(FieldViolation(field, "needs a url or data"))
        return None
    if len(data) > MAX_IMAGE_BYTES:
        bad.append(
            FieldViolation(
                f"{field}.data",
                f"the image is {len(data)} bytes; at most {MAX_IMAGE_BYTES} are allowed",
            )
        )
        return None
    sniffed = sniff_media_type(data)
    media_type = media_type or sniffed
    if media_type not in MEDIA_TYPES:
        bad.append(
            FieldViolation(
                f"{field}.media_type",
                f"must be one of {', '.join(MEDIA_TYPES)} (not recognized from the bytes)",
            )
        )
        return None
    return ImagePart(data=data, media_type=media_type, detail=detail)


def unique_names(names: Sequence[str], bad: list[FieldViolation], field: str = "tools") -> None:
    if len(set(names)) != len(names):
        bad.append(FieldViolation(field, "tool names must be unique"))


def check_conversation(
    messages: Sequence[ChatMessage],
    tools: Sequence[Tool],
    choice: ToolChoice | None,
    bad: list[FieldViolation],
    *,
    messages_field: str = "messages",
    choice_field: str = "tool_choice",
) -> None:
    """What holds across fields: a named tool choice names a tool; a tool result answers a
    call an earlier assistant message made. (Unique tool names: ``unique_names``, on every
    name the request gave.)"""
    names = [t.name for t in tools]
    if choice is not None and choice.mode is not ToolChoiceMode.AUTO:
        if choice.mode is ToolChoiceMode.TOOL and choice.name not in names:
            bad.append(
                FieldViolation(choice_field, f"names no tool of the request: {choice.name!r}")
            )
        elif choice.mode is ToolChoiceMode.REQUIRED and not tools:
            bad.append(FieldViolation(choice_field, "requires tools"))
    called: set[str] = set()
    for i, m in enumerate(messages):
        for call in m.tool_calls:
            called.add(call.id)
        if m.role is Role.TOOL and m.tool_call_id not in called:
            bad.append(
                FieldViolation(
                    f"{messages_field}[{i}].tool_call_id",
                    f"answers no tool call of an earlier assistant message: {m.tool_call_id!r}",
                )
            )
