"""Anthropic's wire format as the fake checks and sends it: error bodies and texts, the broken
SSE event, message text, and the tool-block and image rules Anthropic refuses requests by."""

from __future__ import annotations

from typing import Any

__all__ = ["text_of"]


_RATE_LIMIT_MESSAGE = (
    "Number of request tokens has exceeded your per-minute rate limit "
    "(https://docs.anthropic.com/en/api/rate-limits); see the response headers for current usage. "
    "Please reduce the prompt length or the maximum tokens requested, or try again later."
)


_BROKEN_EVENT = b'event: content_block_delta\ndata: {"type":"content_block_delta",\n\n'


def _error(type_: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


def text_of(content: Any) -> str:
    """A message's text: a string, or its text and tool_result blocks' texts joined."""
    if isinstance(content, list):
        out = []
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                out.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                out.append(text_of(block.get("content")))
        return "".join(out)
    return "" if content is None else str(content)


def _blocks(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    content = message.get("content")
    if not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, dict) and b.get("type") == kind]


def _rich_problem(body: dict[str, Any]) -> str:
    """What Anthropic would refuse in tool blocks, images and tool choice ("" for nothing)."""
    messages = body.get("messages") or []
    for i, message in enumerate(messages):
        previous = messages[i - 1] if i else {}
        uses = {b.get("id") for b in _blocks(previous, "tool_use")}
        for j, block in enumerate(_blocks(message, "tool_result")):
            if block.get("tool_use_id") not in uses:
                return (
                    f"messages.{i}.content.{j}: unexpected `tool_use_id` found in `tool_result` "
                    f"blocks: {block.get('tool_use_id')}. Each `tool_result` block must have a "
                    "corresponding `tool_use` block in the previous message."
                )
        wanted = {b.get("id") for b in _blocks(message, "tool_use")}
        if wanted and i + 1 < len(messages):
            answered = {b.get("tool_use_id") for b in _blocks(messages[i + 1], "tool_result")}
            if wanted - answered:
                return (
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(sorted(map(str, wanted - answered)))}"
                )
        for j, block in enumerate(_blocks(message, "image")):
            source = block.get("source") or {}
            if source.get("type") == "base64":
                ok = source.get("media_type") in _IMAGE_TYPES and bool(source.get("data"))
            else:
                ok = source.get("type") == "url" and bool(source.get("url"))
            if not ok:
                return f"messages.{i}.content.{j}.image.source: invalid image source"
    names = {t.get("name") for t in body.get("tools") or []}
    choice = body.get("tool_choice") or {}
    if choice.get("type") == "tool" and choice.get("name") not in names:
        return "tool_choice.name: tool not found in tools"
    return ""
