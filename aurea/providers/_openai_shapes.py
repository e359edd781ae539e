"""The OpenAI Chat Completions shapes of Aurea's rich parts, both ways: messages with image
parts, tool calls and tool results; ``tools``, ``tool_choice``, ``response_format``; and the
``tool_calls`` (and ``reasoning_content``) of replies and stream deltas. The OpenAI adapter sends
them; generic HTTP templates can reference them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurea.providers._base import (
    ChatMessage,
    ImagePart,
    ProviderRequest,
    ReasoningEffort,
    ResponseFormat,
    ResponseFormatType,
    Role,
    TextPart,
    Tool,
    ToolCall,
    ToolCallDelta,
    ToolChoice,
    ToolChoiceMode,
)
from aurea.providers._boundary import MalformedReply, json_type

__all__ = [
    "message_json",
    "messages_json",
    "reasoning_text",
    "response_format_json",
    "tool_call_deltas",
    "tool_calls_of",
    "tool_choice_json",
    "tools_json",
]

# ``llama_cpp`` is llama-cpp-python's server, which takes a schema only as
# ``{"type": "json_object", "schema": ...}`` (its grammar support).
SCHEMA_STYLES = ("openai", "llama_cpp")


def message_json(m: ChatMessage) -> dict[str, Any]:
    """One message in OpenAI's shape."""
    if not (m.parts or m.tool_calls or m.tool_call_id):
        return {"role": str(m.role), "content": m.content}
    out: dict[str, Any] = {"role": str(m.role)}
    if m.parts:
        content: list[dict[str, Any]] = []
        for part in m.parts:
            if type(part) is TextPart:
                content.append({"type": "text", "text": part.text})
            elif type(part) is ImagePart:
                image: dict[str, Any] = {"url": part.data_url()}
                if part.detail:
                    image["detail"] = part.detail
                content.append({"type": "image_url", "image_url": image})
        out["content"] = content
    else:
        # An assistant turn that only called tools has null content, as OpenAI sends it.
        out["content"] = m.content if m.content or not m.tool_calls else None
    if m.tool_calls:
        out["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments},
            }
            for c in m.tool_calls
        ]
    if m.role is Role.TOOL:
        out["tool_call_id"] = m.tool_call_id
    return out


def messages_json(messages: tuple[ChatMessage, ...]) -> list[dict[str, Any]]:
    return [message_json(m) for m in messages]


def tools_json(tools: tuple[Tool, ...]) -> list[dict[str, Any]]:
    out = []
    for t in tools:
        function: dict[str, Any] = {"name": t.name, "parameters": dict(t.parameters)}
        if t.description:
            function["description"] = t.description
        if t.strict:
            function["strict"] = True
        out.append({"type": "function", "function": function})
    return out


def tool_choice_json(choice: ToolChoice) -> Any:
    if choice.mode is ToolChoiceMode.TOOL:
        return {"type": "function", "function": {"name": choice.name}}
    return str(choice.mode)


def response_format_json(fmt: ResponseFormat, style: str = "openai") -> dict[str, Any]:
    if fmt.type is ResponseFormatType.TEXT:
        return {"type": "text"}
    if fmt.type is ResponseFormatType.JSON_OBJECT or fmt.schema is None:
        return {"type": "json_object"}
    if style == "llama_cpp":
        return {"type": "json_object", "schema": dict(fmt.schema)}
    schema: dict[str, Any] = {"name": fmt.name, "schema": dict(fmt.schema)}
    if fmt.description:
        schema["description"] = fmt.description
    if fmt.strict:
        schema["strict"] = True
    return {"type": "json_schema", "json_schema": schema}


def rich_fields(request: ProviderRequest, style: str = "openai") -> dict[str, Any]:
    """The request body's fields for tools, tool choice, response format and reasoning (empty
    for a plain request)."""
    body: dict[str, Any] = {}
    if request.tools:
        body["tools"] = tools_json(request.tools)
        if request.tool_choice is not None:
            body["tool_choice"] = tool_choice_json(request.tool_choice)
        if request.parallel_tool_calls is not None:
            body["parallel_tool_calls"] = request.parallel_tool_calls
    elif request.tool_choice is not None and request.tool_choice.mode is ToolChoiceMode.NONE:
        body["tool_choice"] = "none"
    if request.response_format is not None:
        body["response_format"] = response_format_json(request.response_format, style)
    if request.reasoning is not None:
        body["reasoning_effort"] = _EFFORT[request.reasoning]
    return body


_EFFORT = {
    ReasoningEffort.LOW: "low",
    ReasoningEffort.MEDIUM: "medium",
    ReasoningEffort.HIGH: "high",
}


def _text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise MalformedReply(f"{where} is {json_type(value)}, not text")
    return value


def _index(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 16:
        return value
    raise MalformedReply(f"{where}.index is {json_type(value)}, not a call index")


def tool_call_deltas(value: Any, where: str) -> list[ToolCallDelta]:
    """A stream delta's ``tool_calls`` as ``ToolCallDelta`` s (OpenAI's ``index`` is the call's
    position in the answer; its first piece carries ``id`` and ``function.name``)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise MalformedReply(f"{where} is {json_type(value)}, not a list")
    out = []
    for i, item in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(item, Mapping):
            raise MalformedReply(f"{at} is {json_type(item)}, not an object")
        function = item.get("function") or {}
        if not isinstance(function, Mapping):
            raise MalformedReply(f"{at}.function is {json_type(function)}, not an object")
        out.append(
            ToolCallDelta(
                index=_index(item.get("index", i), at),
                id=_text(item.get("id"), f"{at}.id"),
                name=_text(function.get("name"), f"{at}.function.name"),
                arguments=_text(function.get("arguments"), f"{at}.function.arguments"),
            )
        )
    return out


def tool_calls_of(message: Mapping[str, Any], where: str) -> tuple[ToolCall, ...]:
    """A reply message's ``tool_calls`` as whole calls."""
    value = message.get("tool_calls")
    if value is None:
        return ()
    if not isinstance(value, list):
        raise MalformedReply(f"{where}.tool_calls is {json_type(value)}, not a list")
    calls = []
    for i, item in enumerate(value):
        at = f"{where}.tool_calls[{i}]"
        if not isinstance(item, Mapping) or not isinstance(item.get("function"), Mapping):
            raise MalformedReply(f"{at} is not a function call")
        function = item["function"]
        calls.append(
            ToolCall(
                id=_text(item.get("id"), f"{at}.id"),
                name=_text(function.get("name"), f"{at}.function.name"),
                arguments=_text(function.get("arguments"), f"{at}.function.arguments") or "{}",
            )
        )
    return tuple(calls)


def reasoning_text(obj: Mapping[str, Any], where: str) -> str:
    """The reasoning OpenAI-compatible servers put beside the content (``reasoning_content``:
    DeepSeek, vLLM, llama.cpp; ``reasoning``: OpenRouter, Ollama)."""
    for key in ("reasoning_content", "reasoning"):
        value = obj.get(key)
        if isinstance(value, str):
            return value
        if value is not None and not isinstance(value, Mapping):  # (OpenRouter's details obj)
            raise MalformedReply(f"{where}.{key} is {json_type(value)}, not text")
    return ""
