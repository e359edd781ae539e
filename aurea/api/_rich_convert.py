"""Conversion of the rich generation fields (message parts, tool calls, tools, tool choice and
response format) from protobuf to domain types, collecting every bad field for `aurea.api.convert`.
"""

from __future__ import annotations

from typing import Any

from aurea.errors import FieldViolation
from aurea.inference import rich
from aurea.providers._base import (
    ChatMessage,
    ContentPart,
    ReasoningBlock,
    ReasoningFormat,
    ResponseFormat,
    ResponseFormatType,
    Role,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
)
from aurea.v1 import inference_pb2 as pb

_ROLES = {
    pb.ROLE_SYSTEM: Role.SYSTEM,
    pb.ROLE_USER: Role.USER,
    pb.ROLE_ASSISTANT: Role.ASSISTANT,
    pb.ROLE_TOOL: Role.TOOL,
}
_TOOL_CHOICE = {
    pb.TOOL_CHOICE_MODE_UNSPECIFIED: ToolChoiceMode.AUTO,
    pb.TOOL_CHOICE_MODE_AUTO: ToolChoiceMode.AUTO,
    pb.TOOL_CHOICE_MODE_NONE: ToolChoiceMode.NONE,
    pb.TOOL_CHOICE_MODE_REQUIRED: ToolChoiceMode.REQUIRED,
}
# Bounds of what a client sends back (a provider's blocks and signatures are far smaller).
MAX_REASONING_BLOCKS = 64
MAX_SIGNATURE_CHARS = 65_536
BLOCK_FORMATS = {
    pb.REASONING_BLOCK_FORMAT_ANTHROPIC_THINKING: ReasoningFormat.ANTHROPIC_THINKING,
    pb.REASONING_BLOCK_FORMAT_ANTHROPIC_REDACTED_THINKING: ReasoningFormat.ANTHROPIC_REDACTED,
    pb.REASONING_BLOCK_FORMAT_GEMINI_THOUGHT: ReasoningFormat.GEMINI_THOUGHT,
    pb.REASONING_BLOCK_FORMAT_GEMINI_TEXT_SIGNATURE: ReasoningFormat.GEMINI_TEXT_SIGNATURE,
}
BLOCK_FORMATS_PB = {v: k for k, v in BLOCK_FORMATS.items()}
_FORMATS = {
    pb.RESPONSE_FORMAT_TYPE_UNSPECIFIED: ResponseFormatType.TEXT,
    pb.RESPONSE_FORMAT_TYPE_TEXT: ResponseFormatType.TEXT,
    pb.RESPONSE_FORMAT_TYPE_JSON_OBJECT: ResponseFormatType.JSON_OBJECT,
    pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA: ResponseFormatType.JSON_SCHEMA,
}


def _check(bad: list[FieldViolation], ok: bool, field: str, description: str) -> None:
    if not ok:
        bad.append(FieldViolation(field, description))


def _message(m: Any, i: int, bad: list[FieldViolation]) -> ChatMessage | None:
    at = f"messages[{i}]"
    role = _ROLES.get(m.role)
    _check(
        bad,
        role is not None,
        f"{at}.role",
        "must be ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT or ROLE_TOOL",
    )
    if not (m.parts or m.tool_calls or m.tool_call_id or m.reasoning_blocks):
        # The common case: one text message, checked as before.
        _check(bad, bool(m.content), f"{at}.content", "must not be empty")
        return ChatMessage(role, m.content) if role is not None else None
    parts: list[ContentPart] = []
    text = m.content
    if m.parts:
        _check(bad, not m.content, f"{at}.content", "give either content or parts, not both")
        _check(bad, len(m.parts) <= rich.MAX_PARTS, f"{at}.parts", f"at most {rich.MAX_PARTS}")
        texts: list[str] = []
        for j, p in enumerate(m.parts):
            where = f"{at}.parts[{j}]"
            kind = p.WhichOneof("part")
            if kind == "text":
                _check(bad, bool(p.text), f"{where}.text", "must not be empty")
                parts.append(TextPart(p.text))
                texts.append(p.text)
            elif kind == "image":
                _check(bad, role is Role.USER, where, "images are allowed in ROLE_USER messages")
                img = p.image
                image = rich.image_part(
                    url=img.url,
                    data=img.data,
                    media_type=img.media_type,
                    detail=img.detail,
                    field=f"{where}.image",
                    bad=bad,
                )
                if image is not None:
                    parts.append(image)
            else:
                bad.append(FieldViolation(where, "needs text or an image"))
        text = "".join(texts)
    calls: list[ToolCall] = []
    if m.tool_calls:
        _check(bad, role is Role.ASSISTANT, f"{at}.tool_calls", "only on ROLE_ASSISTANT")
        for j, c in enumerate(m.tool_calls):
            where = f"{at}.tool_calls[{j}]"
            _check(
                bad,
                0 < len(c.id) <= rich.MAX_TOOL_CALL_ID,
                f"{where}.id",
                f"must be 1 to {rich.MAX_TOOL_CALL_ID} characters",
            )
            _check(bad, rich.name_ok(c.name), f"{where}.name", rich.NAME_RULE)
            _check(
                bad,
                len(c.arguments) <= rich.MAX_ARGUMENTS_CHARS,
                f"{where}.arguments",
                f"at most {rich.MAX_ARGUMENTS_CHARS} characters",
            )
            _check(
                bad,
                len(c.signature) <= MAX_SIGNATURE_CHARS,
                f"{where}.signature",
                f"at most {MAX_SIGNATURE_CHARS} characters",
            )
            calls.append(
                ToolCall(id=c.id, name=c.name, arguments=c.arguments or "{}", signature=c.signature)
            )
    elif not m.parts:
        _check(bad, bool(m.content), f"{at}.content", "must not be empty")
    if role is Role.TOOL:
        _check(
            bad,
            0 < len(m.tool_call_id) <= rich.MAX_TOOL_CALL_ID,
            f"{at}.tool_call_id",
            f"must be 1 to {rich.MAX_TOOL_CALL_ID} characters on a ROLE_TOOL message",
        )
    else:
        _check(bad, not m.tool_call_id, f"{at}.tool_call_id", "only on ROLE_TOOL")
    blocks = _reasoning_blocks(m, at, role, bad) if m.reasoning_blocks else ()
    if role is None:
        return None
    return ChatMessage(
        role,
        text,
        parts=tuple(parts),
        tool_calls=tuple(calls),
        tool_call_id=m.tool_call_id,
        reasoning_blocks=blocks,
    )


def _reasoning_blocks(
    m: Any, at: str, role: Role | None, bad: list[FieldViolation]
) -> tuple[ReasoningBlock, ...]:
    """A message's reasoning blocks, checked: only on an assistant message, bounded, each in a
    known format with what that format needs (the provider checks the signatures)."""
    field = f"{at}.reasoning_blocks"
    _check(bad, role is Role.ASSISTANT, field, "only on ROLE_ASSISTANT")
    if len(m.reasoning_blocks) > MAX_REASONING_BLOCKS:
        bad.append(FieldViolation(field, f"at most {MAX_REASONING_BLOCKS} blocks"))
        return ()
    out: list[ReasoningBlock] = []
    for j, b in enumerate(m.reasoning_blocks):
        where = f"{field}[{j}]"
        kind = BLOCK_FORMATS.get(b.format)
        _check(bad, kind is not None, f"{where}.format", "is not a known ReasoningBlockFormat")
        for name in ("signature", "data"):
            _check(
                bad,
                len(getattr(b, name)) <= MAX_SIGNATURE_CHARS,
                f"{where}.{name}",
                f"at most {MAX_SIGNATURE_CHARS} characters",
            )
        if kind is ReasoningFormat.ANTHROPIC_REDACTED:
            _check(bad, bool(b.data), f"{where}.data", "is required for redacted thinking")
            _check(bad, not (b.text or b.signature), where, "redacted thinking has only data")
        elif kind is not None:
            _check(bad, bool(b.signature), f"{where}.signature", f"is required for {kind.value}")
            _check(bad, not b.data, f"{where}.data", "only for redacted thinking")
            if kind is ReasoningFormat.GEMINI_TEXT_SIGNATURE:
                _check(bad, not b.text, f"{where}.text", "must be empty for a text signature")
        if kind is not None:
            out.append(ReasoningBlock(format=kind, text=b.text, signature=b.signature, data=b.data))
    return tuple(out)


def reasoning_blocks_pb(blocks: tuple[ReasoningBlock, ...]) -> list[pb.ReasoningBlock]:
    return [
        pb.ReasoningBlock(
            format=BLOCK_FORMATS_PB[b.format], text=b.text, signature=b.signature, data=b.data
        )
        for b in blocks
    ]


def _tools(req: Any, bad: list[FieldViolation]) -> tuple[Tool, ...]:
    _check(bad, len(req.tools) <= rich.MAX_TOOLS, "tools", f"at most {rich.MAX_TOOLS} tools")
    rich.unique_names([t.name for t in req.tools], bad)
    tools: list[Tool] = []
    for i, t in enumerate(req.tools):
        at = f"tools[{i}]"
        _check(bad, rich.name_ok(t.name), f"{at}.name", rich.NAME_RULE)
        _check(
            bad,
            len(t.description) <= rich.MAX_DESCRIPTION_CHARS,
            f"{at}.description",
            f"at most {rich.MAX_DESCRIPTION_CHARS} characters",
        )
        params: dict[str, Any] | None = {"type": "object", "properties": {}}
        if t.parameters_json_schema:
            params = rich.json_object(t.parameters_json_schema, f"{at}.parameters_json_schema", bad)
        if params is not None:
            tools.append(
                Tool(name=t.name, description=t.description, parameters=params, strict=t.strict)
            )
    return tuple(tools)


def _tool_choice(req: Any, bad: list[FieldViolation]) -> ToolChoice | None:
    if not req.HasField("tool_choice"):
        return None
    which = req.tool_choice.WhichOneof("choice")
    if which == "tool":
        return ToolChoice(mode=ToolChoiceMode.TOOL, name=req.tool_choice.tool)
    mode = _TOOL_CHOICE.get(req.tool_choice.mode) if which == "mode" else ToolChoiceMode.AUTO
    _check(bad, mode is not None, "tool_choice.mode", "is not a known ToolChoiceMode value")
    return ToolChoice(mode=mode or ToolChoiceMode.AUTO)


def _response_format(req: Any, bad: list[FieldViolation]) -> ResponseFormat | None:
    if not req.HasField("response_format"):
        return None
    rf = req.response_format
    kind = _FORMATS.get(rf.type)
    _check(bad, kind is not None, "response_format.type", "is not a known ResponseFormatType")
    if kind is None or kind is ResponseFormatType.TEXT:
        _check(bad, not rf.json_schema, "response_format.json_schema", "only with JSON_SCHEMA")
        return None
    _check(
        bad,
        len(rf.description) <= rich.MAX_DESCRIPTION_CHARS,
        "response_format.description",
        f"at most {rich.MAX_DESCRIPTION_CHARS} characters",
    )
    if kind is ResponseFormatType.JSON_OBJECT:
        _check(bad, not rf.json_schema, "response_format.json_schema", "only with JSON_SCHEMA")
        _check(bad, not rf.strict, "response_format.strict", "only with JSON_SCHEMA")
        return ResponseFormat(type=kind)
    _check(bad, not rf.name or rich.name_ok(rf.name), "response_format.name", rich.NAME_RULE)
    schema = None
    if not rf.json_schema:
        bad.append(FieldViolation("response_format.json_schema", "is required for JSON_SCHEMA"))
    else:
        schema = rich.json_object(rf.json_schema, "response_format.json_schema", bad)
    return ResponseFormat(
        type=kind,
        name=rf.name or "response",
        schema=schema,
        strict=rf.strict,
        description=rf.description,
    )
