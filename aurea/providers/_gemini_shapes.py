"""Gemini shapes of Aurea's rich parts: ``inlineData`` / ``fileData`` image parts,
``functionCall`` parts in model turns and ``functionResponse`` parts in user turns,
``tools.functionDeclarations`` with ``toolConfig``, ``responseMimeType`` + ``responseSchema``,
and ``thinkingConfig``.

Gemini's schemas are an OpenAPI 3.0 subset (``Schema``): ``to_gemini_schema`` converts a JSON
Schema to it (type names upper-cased, ``["T", "null"]`` as ``nullable``, ``const`` as a
one-value ``enum``, local ``$ref`` s inlined) and leaves out the keywords Gemini does not take
(``additionalProperties``, ``$schema``, ``not``, ...): Gemini aims for such a schema but cannot
promise every keyword, which is why Gemini models lack ``strict_schema`` unless their catalog
entry says otherwise. Gemini names no tool-call ids: Aurea makes them (``call_`` and a digest of
the call), and finds a result's function name by its call's id in the conversation. Thought
signatures go back where they came: a call's on its ``functionCall`` part, signed thought parts
first in the turn, a text signature on the turn's last text part.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
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

__all__ = ["call_id", "contents_json", "rich_fields", "to_gemini_schema"]

THINKING_BUDGET = {
    ReasoningEffort.LOW: 1024,
    ReasoningEffort.MEDIUM: 4096,
    ReasoningEffort.HIGH: 16384,
}
_KEEP = (
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "default",
    "minimum",
    "maximum",
    "propertyOrdering",
    "required",
)
_MAX_DEPTH = 32


def call_id(index: int, name: str, arguments: str) -> str:
    """A tool call id for a Gemini call that came without one (deterministic)."""
    digest = hashlib.sha256(f"{index}\0{name}\0{arguments}".encode()).hexdigest()
    return f"call_{digest[:24]}"


def to_gemini_schema(schema: Mapping[str, Any]) -> dict[str, Any]:
    """``schema`` (JSON Schema) as a Gemini ``Schema`` (see the module docstring)."""
    defs = {**dict(schema.get("definitions") or {}), **dict(schema.get("$defs") or {})}
    return _convert(schema, defs, 0)


def _convert(schema: Mapping[str, Any], defs: Mapping[str, Any], depth: int) -> dict[str, Any]:
    if depth > _MAX_DEPTH:
        return {}
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        target = defs.get(name)
        if isinstance(target, Mapping):
            return _convert(
                {**target, **{k: v for k, v in schema.items() if k != "$ref"}}, defs, depth + 1
            )
    out: dict[str, Any] = {k: schema[k] for k in _KEEP if k in schema}
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [k for k in kind if k != "null"]
        if len(kinds) < len(kind):
            out["nullable"] = True
        kind = kinds[0] if len(kinds) == 1 else None
        if len(kinds) > 1:
            out["anyOf"] = [{"type": str(k).upper()} for k in kinds]
    if isinstance(kind, str):
        out["type"] = kind.upper()
    if "const" in schema:
        out["enum"] = [schema["const"]]
    if isinstance(schema.get("properties"), Mapping):
        out["properties"] = {
            str(k): _convert(v, defs, depth + 1)
            for k, v in schema["properties"].items()
            if isinstance(v, Mapping)
        }
    if isinstance(schema.get("items"), Mapping):
        out["items"] = _convert(schema["items"], defs, depth + 1)
    for key in ("anyOf", "oneOf"):
        if isinstance(schema.get(key), list):
            out["anyOf"] = [
                _convert(s, defs, depth + 1) for s in schema[key] if isinstance(s, Mapping)
            ]
    if "enum" in out and "type" not in out:
        out["type"] = "STRING"
    return out


def _arguments(text: str) -> Any:
    try:
        value = json.loads(text) if text else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _response(text: str) -> dict[str, Any]:
    """A tool's result as ``functionResponse.response`` (a JSON object: the result itself when
    it is one, else ``{"result": ...}``)."""
    try:
        value = json.loads(text)
    except ValueError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def _image(part: ImagePart, provider: str, model: str) -> dict[str, Any]:
    if part.data:
        return {"inlineData": {"mimeType": part.media_type, "data": part.base64()}}
    if not part.media_type:
        raise UnsupportedFeature(
            f"{provider}: model {model!r} needs the media type of an image given by URL",
            [FieldViolation("messages", "an image URL needs its media_type for Gemini")],
        )
    return {"fileData": {"mimeType": part.media_type, "fileUri": part.url}}


def contents_json(request: ProviderRequest, provider: str) -> list[dict[str, Any]]:
    """The non-system messages as Gemini ``contents``."""
    names: dict[str, str] = {}  # tool call id -> function name
    out: list[dict[str, Any]] = []
    for m in request.messages:
        if m.role is Role.SYSTEM:
            continue
        if m.role is Role.TOOL:
            part = {
                "functionResponse": {
                    "name": names.get(m.tool_call_id, ""),
                    "response": _response(m.content),
                }
            }
            last = out[-1] if out else None
            if (
                last is not None
                and last.get("role") == "user"
                and "functionResponse" in last["parts"][0]
            ):
                last["parts"].append(part)
            else:
                out.append({"role": "user", "parts": [part]})
            continue
        out.append(
            {
                "role": "model" if m.role is Role.ASSISTANT else "user",
                "parts": _parts(m, names, provider, request.model),
            }
        )
    return out


def _parts(
    m: ChatMessage, names: dict[str, str], provider: str, model: str
) -> list[dict[str, Any]]:
    if not (m.parts or m.tool_calls or m.reasoning_blocks):
        return [{"text": m.content}]
    # Signed thought parts first, as Gemini sent them; another provider's blocks are left out.
    parts: list[dict[str, Any]] = [
        {"text": b.text, "thought": True, "thoughtSignature": b.signature}
        for b in m.reasoning_blocks
        if b.format is ReasoningFormat.GEMINI_THOUGHT
    ]
    first = len(parts)
    if m.parts:
        for p in m.parts:
            if type(p) is TextPart:
                parts.append({"text": p.text})
            elif type(p) is ImagePart:
                parts.append(_image(p, provider, model))
    elif m.content:
        parts.append({"text": m.content})
    texts = [p for p in parts[first:] if "text" in p]
    signed = [
        b.signature for b in m.reasoning_blocks if b.format is ReasoningFormat.GEMINI_TEXT_SIGNATURE
    ]
    if signed and texts:
        # Gemini signs the last text part of an answer (a stream's text arrives as one here).
        texts[-1]["thoughtSignature"] = signed[0]
    for call in m.tool_calls:
        names[call.id] = call.name
        part: dict[str, Any] = {
            "functionCall": {"name": call.name, "args": _arguments(call.arguments)}
        }
        if call.signature:  # on the call's own part, as Gemini requires
            part["thoughtSignature"] = call.signature
        parts.append(part)
    return parts


def rich_fields(request: ProviderRequest, provider: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The body's ``tools``/``toolConfig`` fields, and what goes in its ``generationConfig``."""
    body: dict[str, Any] = {}
    config: dict[str, Any] = {}
    if request.tools:
        if request.parallel_tool_calls is False:
            raise UnsupportedFeature(
                f"{provider}: model {request.model!r} cannot be kept to one tool call per answer "
                "(Gemini has no such setting)",
                [FieldViolation("parallel_tool_calls", "Gemini cannot restrict it")],
            )
        declarations = []
        for t in request.tools:
            declaration: dict[str, Any] = {"name": t.name}
            if t.description:
                declaration["description"] = t.description
            if t.parameters.get("properties"):  # Gemini refuses an object without properties
                declaration["parameters"] = to_gemini_schema(t.parameters)
            declarations.append(declaration)
        body["tools"] = [{"functionDeclarations": declarations}]
    choice = request.tool_choice
    if choice is not None and (request.tools or choice.mode is ToolChoiceMode.NONE):
        calling: dict[str, Any] = {
            "mode": {
                ToolChoiceMode.AUTO: "AUTO",
                ToolChoiceMode.NONE: "NONE",
                ToolChoiceMode.REQUIRED: "ANY",
                ToolChoiceMode.TOOL: "ANY",
            }[choice.mode]
        }
        if choice.mode is ToolChoiceMode.TOOL:
            calling["allowedFunctionNames"] = [choice.name]
        body["toolConfig"] = {"functionCallingConfig": calling}
    fmt = request.response_format
    if fmt is not None and fmt.type is not ResponseFormatType.TEXT:
        config["responseMimeType"] = "application/json"
        if fmt.type is ResponseFormatType.JSON_SCHEMA and fmt.schema is not None:
            config["responseSchema"] = to_gemini_schema(fmt.schema)
    if request.reasoning is not None:
        config["thinkingConfig"] = {
            "includeThoughts": True,
            "thinkingBudget": THINKING_BUDGET[request.reasoning],
        }
    return body, config
