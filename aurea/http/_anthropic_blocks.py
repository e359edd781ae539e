"""Anthropic content blocks (``text``, ``image``, ``tool_use``, ``tool_result``, signed
``thinking`` / ``redacted_thinking``) to the domain's messages, one turn at a time, with
Anthropic's field paths in every violation. ``_anthropic`` builds whole requests from them."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aurea.errors import FieldViolation, InvalidRequest
from aurea.http._inputs import (
    BAD_TEXT,
    is_text,
)
from aurea.inference import rich
from aurea.providers._base import (
    ChatMessage,
    ContentPart,
    ReasoningBlock,
    ReasoningFormat,
    Role,
    TextPart,
    ToolCall,
)


def _raise(bad: list[FieldViolation]) -> None:
    if bad:
        summary = "; ".join(f"{v.field}: {v.description}" for v in bad)
        raise InvalidRequest(f"invalid request: {summary}", bad)


def _text_block(block: Mapping[str, Any], at: str, bad: list[FieldViolation]) -> str | None:
    text = block.get("text")
    if not isinstance(text, str):
        bad.append(FieldViolation(f"{at}.text", "is required: a string"))
        return None
    if not is_text(text):
        bad.append(FieldViolation(f"{at}.text", BAD_TEXT))
        return None
    if block.get("citations"):
        bad.append(FieldViolation(f"{at}.citations", "citations are not supported"))
        return None
    return text


def _image_block(
    block: Mapping[str, Any], role: Role, at: str, bad: list[FieldViolation]
) -> ContentPart | None:
    if role is not Role.USER:
        bad.append(FieldViolation(at, "images are allowed in user messages only"))
        return None
    source = block.get("source")
    kind = source.get("type") if isinstance(source, Mapping) else None
    where = f"{at}.source"
    if kind == "url" and isinstance(source, Mapping) and isinstance(source.get("url"), str):
        url = source["url"]
        if url.startswith("data:"):  # only http(s) here: inline bytes come as base64
            bad.append(FieldViolation(f"{where}.url", "must be an http(s) URL"))
            return None
        return rich.image_part(url=url, data=b"", media_type="", detail="", field=where, bad=bad)
    if kind == "base64" and isinstance(source, Mapping):
        media_type, data = source.get("media_type"), source.get("data")
        if not isinstance(media_type, str) or not isinstance(data, str) or not data:
            bad.append(FieldViolation(where, "needs media_type and data (base64)"))
            return None
        mine: list[FieldViolation] = []
        image = rich.image_part(
            url=f"data:{media_type};base64,{data}",
            data=b"",
            media_type=media_type,
            detail="",
            field=where,
            bad=mine,
        )
        for v in mine:  # the core speaks of the data: URL made here from the two fields
            name = f"{where}.data" if v.field == f"{where}.url" else v.field
            bad.append(FieldViolation(name, v.description))
        return image
    bad.append(FieldViolation(where, 'must be {type: "base64", ...} or {type: "url", url}'))
    return None


def _tool_use(block: Mapping[str, Any], at: str, bad: list[FieldViolation]) -> ToolCall | None:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
    ok = True
    if not isinstance(call_id, str) or not 0 < len(call_id) <= rich.MAX_TOOL_CALL_ID:
        bad.append(FieldViolation(f"{at}.id", f"must be 1 to {rich.MAX_TOOL_CALL_ID} characters"))
        ok = False
    if not isinstance(name, str) or not rich.name_ok(name):
        bad.append(FieldViolation(f"{at}.name", rich.NAME_RULE))
        ok = False
    text = ""
    if not isinstance(arguments, Mapping):
        bad.append(FieldViolation(f"{at}.input", "must be an object"))
        ok = False
    else:
        text = json.dumps(arguments, separators=(",", ":"), ensure_ascii=False)
        if len(text) > rich.MAX_ARGUMENTS_CHARS or not is_text(text):
            bad.append(
                FieldViolation(
                    f"{at}.input", f"must be at most {rich.MAX_ARGUMENTS_CHARS} characters of JSON"
                )
            )
            ok = False
    if not ok:
        return None
    assert isinstance(call_id, str) and isinstance(name, str)
    return ToolCall(id=call_id, name=name, arguments=text)


def _tool_result(
    block: Mapping[str, Any], at: str, bad: list[FieldViolation]
) -> ChatMessage | None:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not 0 < len(call_id) <= rich.MAX_TOOL_CALL_ID:
        bad.append(
            FieldViolation(f"{at}.tool_use_id", f"must be 1 to {rich.MAX_TOOL_CALL_ID} characters")
        )
        return None
    content = block.get("content", "")
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts: list[str] = []
        for j, part in enumerate(content):
            where = f"{at}.content[{j}]"
            if not isinstance(part, Mapping) or part.get("type") != "text":
                bad.append(FieldViolation(where, "only text blocks are supported in tool results"))
                return None
            found = _text_block(part, where, bad)
            if found is None:
                return None
            texts.append(found)
        text = "".join(texts)
    else:
        bad.append(FieldViolation(f"{at}.content", "must be a string or a list of text blocks"))
        return None
    if not is_text(text):
        bad.append(FieldViolation(f"{at}.content", BAD_TEXT))
        return None
    if block.get("is_error") is not None and not isinstance(block.get("is_error"), bool):
        bad.append(FieldViolation(f"{at}.is_error", "must be true or false"))
        return None
    return ChatMessage(Role.TOOL, text, tool_call_id=call_id)


def _reasoning(
    block: Mapping[str, Any], at: str, bad: list[FieldViolation]
) -> ReasoningBlock | None:
    if block.get("type") == "redacted_thinking":
        data = block.get("data")
        if not isinstance(data, str) or not data:
            bad.append(FieldViolation(f"{at}.data", "is required: a non-empty string"))
            return None
        return ReasoningBlock(format=ReasoningFormat.ANTHROPIC_REDACTED, data=data)
    thinking, signature = block.get("thinking"), block.get("signature", "")
    if not isinstance(thinking, str) or not is_text(thinking):
        bad.append(FieldViolation(f"{at}.thinking", "is required: a string"))
        return None
    if not isinstance(signature, str):
        bad.append(FieldViolation(f"{at}.signature", "must be a string"))
        return None
    if not signature:
        return None  # unsigned reasoning text (Aurea's, from a model that signs nothing): no
        # provider takes it back, so it is left out of the turn
    return ReasoningBlock(
        format=ReasoningFormat.ANTHROPIC_THINKING, text=thinking, signature=signature
    )


def _turn(m: Any, at: str, bad: list[FieldViolation]) -> list[ChatMessage]:
    """One Anthropic message as the domain's messages: its tool results first (one each), then
    the rest of the turn. Empty when bad."""
    if not isinstance(m, Mapping):
        bad.append(FieldViolation(at, "must be an object with role and content"))
        return []
    name = m.get("role")
    if name not in ("user", "assistant"):
        bad.append(FieldViolation(f"{at}.role", 'must be "user" or "assistant"'))
        return []
    role = Role.USER if name == "user" else Role.ASSISTANT
    content = m.get("content")
    if isinstance(content, str):
        if not is_text(content):
            bad.append(FieldViolation(f"{at}.content", BAD_TEXT))
            return []
        if not content and role is Role.USER:
            bad.append(FieldViolation(f"{at}.content", "must not be empty"))
            return []
        return [ChatMessage(role, content)]
    if not isinstance(content, list) or not content:
        bad.append(
            FieldViolation(f"{at}.content", "must be a string or a non-empty list of blocks")
        )
        return []
    if len(content) > rich.MAX_PARTS:
        bad.append(FieldViolation(f"{at}.content", f"at most {rich.MAX_PARTS} content blocks"))
        return []
    before = len(bad)
    results: list[ChatMessage] = []
    texts: list[str] = []
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    blocks: list[ReasoningBlock] = []
    images = False
    for j, block in enumerate(content):
        where = f"{at}.content[{j}]"
        kind = block.get("type") if isinstance(block, Mapping) else None
        assert kind is None or isinstance(block, Mapping)
        if kind == "text":
            text = _text_block(block, where, bad)
            if text is not None:
                texts.append(text)
                parts.append(TextPart(text))
        elif kind == "image":
            image = _image_block(block, role, where, bad)
            if image is not None:
                parts.append(image)
                images = True
        elif kind == "tool_use" and role is Role.ASSISTANT:
            call = _tool_use(block, where, bad)
            if call is not None:
                calls.append(call)
        elif kind == "tool_result" and role is Role.USER:
            result = _tool_result(block, where, bad)
            if result is not None:
                results.append(result)
        elif kind in ("thinking", "redacted_thinking") and role is Role.ASSISTANT:
            found = _reasoning(block, where, bad)
            if found is not None:
                blocks.append(found)
        elif kind in ("tool_use", "tool_result", "thinking", "redacted_thinking"):
            bad.append(FieldViolation(f"{where}.type", f"{kind!r} blocks are not allowed here"))
        else:
            bad.append(
                FieldViolation(
                    f"{where}.type",
                    "must be text, image, tool_use, tool_result, thinking or redacted_thinking",
                )
            )
    if len(bad) > before:
        return []
    text = "".join(texts)
    out = results
    if text or images or calls or blocks:
        out.append(
            ChatMessage(
                role,
                text,
                parts=tuple(parts) if images else (),
                tool_calls=tuple(calls),
                reasoning_blocks=tuple(blocks),
            )
        )
    return out
