"""Anthropic Messages shapes of Aurea's rich parts: image blocks, ``tool_use`` blocks in
assistant turns and ``tool_result`` blocks in user turns, ``tools`` and ``tool_choice``,
extended thinking (a message's signed and redacted thinking blocks go back first in its
content), and structured output.

Structured output goes one of two ways (provider option ``structured_output``): ``"tool"`` (the
default; every Claude model) offers one tool whose input schema is the requested schema and
forces it, and the tool's input becomes the answer's text; ``"native"`` sends
``output_format`` (Anthropic's structured outputs, a beta on recent models). With ``"tool"`` a
request cannot also offer its own tools (the answer tool must be forced): that combination is
refused with UnsupportedFeature rather than half-honoured.
"""

from __future__ import annotations

import json
from typing import Any

from aurea.errors import FieldViolation, UnsupportedFeature
from aurea.providers._base import (
    ChatMessage,
    ImagePart,
    ProviderRequest,
    ReasoningEffort,
    ReasoningFormat,
    ResponseFormatType,
    Role,
    TextPart,
    ToolChoiceMode,
)

__all__ = [
    "STRUCTURED_OUTPUT",
    "THINKING_BUDGET",
    "answer_tool",
    "messages_json",
    "rich_fields",
]

STRUCTURED_OUTPUT = ("tool", "native")
STRUCTURED_OUTPUTS_BETA = "structured-outputs-2025-11-13"
THINKING_BUDGET = {
    ReasoningEffort.LOW: 1024,
    ReasoningEffort.MEDIUM: 4096,
    ReasoningEffort.HIGH: 16384,
}


def _arguments(text: str) -> Any:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}  # a model's broken arguments, sent back: Anthropic needs an object


def _reasoning(m: ChatMessage) -> list[dict[str, Any]]:
    """The message's Anthropic reasoning blocks, verbatim (another provider's are left out)."""
    out: list[dict[str, Any]] = []
    for b in m.reasoning_blocks:
        if b.format is ReasoningFormat.ANTHROPIC_THINKING:
            out.append({"type": "thinking", "thinking": b.text, "signature": b.signature})
        elif b.format is ReasoningFormat.ANTHROPIC_REDACTED:
            out.append({"type": "redacted_thinking", "data": b.data})
    return out


def _blocks(m: ChatMessage) -> list[dict[str, Any]]:
    # Thinking first: Anthropic wants an assistant turn to start with its thinking blocks.
    out = _reasoning(m)
    if m.parts:
        for part in m.parts:
            if type(part) is TextPart:
                out.append({"type": "text", "text": part.text})
            elif type(part) is ImagePart:
                if part.url:
                    source = {"type": "url", "url": part.url}
                else:
                    source = {
                        "type": "base64",
                        "media_type": part.media_type,
                        "data": part.base64(),
                    }
                out.append({"type": "image", "source": source})
    elif m.content:
        out.append({"type": "text", "text": m.content})
    for call in m.tool_calls:
        out.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": _arguments(call.arguments),
            }
        )
    return out


def messages_json(messages: tuple[ChatMessage, ...]) -> list[dict[str, Any]]:
    """The non-system messages in Anthropic's shape: tool results ride in a user turn, one
    turn for consecutive results (Anthropic wants every result of a turn's calls together)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        if m.role is Role.SYSTEM:
            continue
        if m.role is Role.TOOL:
            block = {"type": "tool_result", "tool_use_id": m.tool_call_id, "content": m.content}
            last = out[-1] if out else None
            if (
                last is not None
                and last["role"] == "user"
                and isinstance(last["content"], list)
                and all(b.get("type") == "tool_result" for b in last["content"])
            ):
                last["content"].append(block)
            else:
                out.append({"role": "user", "content": [block]})
        elif m.parts or m.tool_calls or _reasoning(m):
            out.append({"role": str(m.role), "content": _blocks(m)})
        else:
            out.append({"role": str(m.role), "content": m.content})
    return out


def answer_tool(request: ProviderRequest, style: str) -> str:
    """The name of the tool whose input is the answer ("" unless structured output goes the
    ``"tool"`` way)."""
    fmt = request.response_format
    if style != "tool" or fmt is None or fmt.type is ResponseFormatType.TEXT:
        return ""
    return fmt.name if fmt.type is ResponseFormatType.JSON_SCHEMA else "json_response"


def rich_fields(
    request: ProviderRequest, *, provider: str, style: str, max_tokens: int
) -> tuple[dict[str, Any], list[str]]:
    """The body's fields for tools, tool choice, structured output and thinking, and the
    ``anthropic-beta`` features they need."""
    body: dict[str, Any] = {}
    betas: list[str] = []
    tools = [
        {
            "name": t.name,
            "input_schema": dict(t.parameters) or {"type": "object", "properties": {}},
            **({"description": t.description} if t.description else {}),
            **({"strict": True} if t.strict else {}),
        }
        for t in request.tools
    ]
    choice: dict[str, Any] | None = None
    mode = request.tool_choice.mode if request.tool_choice is not None else None
    if mode is ToolChoiceMode.NONE:
        choice = {"type": "none"}
    elif mode is ToolChoiceMode.REQUIRED:
        choice = {"type": "any"}
    elif mode is ToolChoiceMode.TOOL:
        assert request.tool_choice is not None
        choice = {"type": "tool", "name": request.tool_choice.name}
    elif request.tools and mode is ToolChoiceMode.AUTO:
        choice = {"type": "auto"}
    fmt = request.response_format
    answer = answer_tool(request, style)
    if answer:
        assert fmt is not None
        if request.tools and mode is not ToolChoiceMode.NONE:
            raise UnsupportedFeature(
                f"{provider}: model {request.model!r} cannot combine tools with a JSON response "
                "format while structured output goes through a forced tool (set the provider's "
                'option structured_output = "native" on a model that supports it)',
                [FieldViolation("response_format", "cannot be combined with tools here")],
            )
        schema = dict(fmt.schema) if fmt.schema is not None else {"type": "object"}
        description = fmt.description or "Give your answer as this tool's input."
        tools = [{"name": answer, "description": description, "input_schema": schema}]
        choice = {"type": "tool", "name": answer}
    elif fmt is not None and fmt.type is not ResponseFormatType.TEXT:
        schema = dict(fmt.schema) if fmt.schema is not None else {"type": "object"}
        body["output_format"] = {"type": "json_schema", "schema": schema}
        betas.append(STRUCTURED_OUTPUTS_BETA)
    if request.parallel_tool_calls is False and tools and not answer:
        choice = {**(choice or {"type": "auto"}), "disable_parallel_tool_use": True}
    if tools:
        body["tools"] = tools
    if choice is not None and (tools or choice["type"] == "none"):
        body["tool_choice"] = choice
    if request.reasoning is not None:
        budget = THINKING_BUDGET[request.reasoning]
        body["thinking"] = {"type": "enabled", "budget_tokens": budget}
        if max_tokens <= budget:  # the budget is part of max_tokens and must leave room
            body["max_tokens"] = budget + max_tokens
    return body, betas
