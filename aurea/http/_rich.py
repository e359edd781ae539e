"""The rich parts of a chat completions body, in OpenAI's shapes, to the domain's: ``tools``,
``tool_choice``, ``parallel_tool_calls``, ``response_format``, content parts (text and
``image_url``), assistant ``tool_calls`` and ``role: "tool"`` results.

The bounds and cross-field checks are the core's (``aurea.inference.rich``), the same the gRPC
edge applies, so a rich request is accepted or refused alike through both doors. Field names in
violations are OpenAI's paths (``tools[0].function.name``), which the SDKs show as ``param``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aurea.errors import FieldViolation
from aurea.http._inputs import BAD_TEXT, is_text
from aurea.inference import rich
from aurea.providers._base import (
    ContentPart,
    GenerationOptions,
    ResponseFormat,
    ResponseFormatType,
    Role,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
)
from aurea.security import input_limits, limit_text

_MODES = {
    "auto": ToolChoiceMode.AUTO,
    "none": ToolChoiceMode.NONE,
    "required": ToolChoiceMode.REQUIRED,
}


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False))


def _schema(value: Any, where: str, bad: list[FieldViolation]) -> dict[str, Any] | None:
    """A JSON Schema given as an object, within the core's size bound."""
    if not isinstance(value, Mapping):
        bad.append(FieldViolation(where, "must be a JSON Schema object"))
        return None
    try:
        size = _size(value)
    except (TypeError, ValueError, RecursionError):
        bad.append(FieldViolation(where, "must be a JSON Schema object"))
        return None
    if size > rich.MAX_SCHEMA_CHARS:
        bad.append(FieldViolation(where, f"at most {rich.MAX_SCHEMA_CHARS} characters"))
        return None
    return dict(value)


def _description(value: Any, where: str, bad: list[FieldViolation]) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > rich.MAX_DESCRIPTION_CHARS:
        bad.append(
            FieldViolation(where, f"must be a string of at most {rich.MAX_DESCRIPTION_CHARS}")
        )
        return ""
    return value


def _strict(value: Any, where: str, bad: list[FieldViolation]) -> bool:
    if value is not None and not isinstance(value, bool):
        bad.append(FieldViolation(where, "must be true or false"))
        return False
    return value is True


# For the Anthropic door, which reads its own tool shape with the same bounds.
schema_of = _schema
text_of = _description
strict_of = _strict


def tools(raw: Any, bad: list[FieldViolation]) -> tuple[Tool, ...]:
    """``tools``: a list of ``{"type": "function", "function": {name, description,
    parameters, strict}}``."""
    if raw is None:
        return ()
    most = min(input_limits().max_tools, rich.MAX_TOOLS)
    if not isinstance(raw, list):
        bad.append(FieldViolation("tools", "must be a list of function tools"))
        return ()
    if len(raw) > most:
        bad.append(FieldViolation("tools", f"at most {most} tools {limit_text('max_tools')}"))
        return ()
    out: list[Tool] = []
    names: list[str] = []
    for i, t in enumerate(raw):
        at = f"tools[{i}]"
        if not isinstance(t, Mapping) or t.get("type") != "function":
            bad.append(FieldViolation(f"{at}.type", 'only "function" tools are supported'))
            continue
        fn = t.get("function")
        if not isinstance(fn, Mapping):
            bad.append(FieldViolation(f"{at}.function", "must be an object with a name"))
            continue
        name = fn.get("name")
        if not isinstance(name, str) or not rich.name_ok(name):
            bad.append(FieldViolation(f"{at}.function.name", rich.NAME_RULE))
            continue
        names.append(name)
        description = _description(fn.get("description"), f"{at}.function.description", bad)
        params: dict[str, Any] | None = {"type": "object", "properties": {}}
        if fn.get("parameters") is not None:
            params = _schema(fn.get("parameters"), f"{at}.function.parameters", bad)
        strict = _strict(fn.get("strict"), f"{at}.function.strict", bad)
        if params is not None:
            out.append(Tool(name=name, description=description, parameters=params, strict=strict))
    rich.unique_names(names, bad)
    return tuple(out)


def tool_choice(raw: Any, bad: list[FieldViolation]) -> ToolChoice | None:
    """``tool_choice``: "auto" | "none" | "required" | {"type": "function", "function":
    {"name": ...}}."""
    if raw is None:
        return None
    if isinstance(raw, str):
        mode = _MODES.get(raw)
        if mode is None:
            bad.append(
                FieldViolation("tool_choice", 'must be "auto", "none", "required" or a tool')
            )
            return None
        return ToolChoice(mode=mode)
    fn = raw.get("function") if isinstance(raw, Mapping) else None
    name = fn.get("name") if isinstance(fn, Mapping) else None
    if not isinstance(raw, Mapping) or raw.get("type") != "function" or not isinstance(name, str):
        bad.append(
            FieldViolation(
                "tool_choice", 'must be "auto", "none", "required" or {type: "function", ...}'
            )
        )
        return None
    return ToolChoice(mode=ToolChoiceMode.TOOL, name=name)


def response_format(raw: Any, bad: list[FieldViolation]) -> ResponseFormat | None:
    """``response_format``: {"type": "text"} (None), {"type": "json_object"}, or
    {"type": "json_schema", "json_schema": {name, description, schema, strict}}."""
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat(type=ResponseFormatType.JSON_OBJECT)
    if kind != "json_schema":
        bad.append(
            FieldViolation("response_format.type", 'must be "text", "json_object" or "json_schema"')
        )
        return None
    assert isinstance(raw, Mapping)
    spec = raw.get("json_schema")
    if not isinstance(spec, Mapping):
        bad.append(FieldViolation("response_format.json_schema", "is required for json_schema"))
        return None
    name = spec.get("name")
    if not isinstance(name, str) or not rich.name_ok(name):
        bad.append(FieldViolation("response_format.json_schema.name", rich.NAME_RULE))
        name = "response"
    schema = None
    if spec.get("schema") is None:
        bad.append(FieldViolation("response_format.json_schema.schema", "is required"))
    else:
        schema = _schema(spec.get("schema"), "response_format.json_schema.schema", bad)
    return ResponseFormat(
        type=ResponseFormatType.JSON_SCHEMA,
        name=name,
        schema=schema,
        strict=_strict(spec.get("strict"), "response_format.json_schema.strict", bad),
        description=_description(
            spec.get("description"), "response_format.json_schema.description", bad
        ),
    )


def parallel(raw: Any, bad: list[FieldViolation]) -> bool | None:
    if raw is not None and not isinstance(raw, bool):
        bad.append(FieldViolation("parallel_tool_calls", "must be true or false"))
        return None
    return raw


def options(body: Mapping[str, Any], bad: list[FieldViolation]) -> GenerationOptions | None:
    """The call's ``GenerationOptions`` (None for a plain text call)."""
    found = tools(body.get("tools"), bad)
    choice = tool_choice(body.get("tool_choice"), bad)
    par = parallel(body.get("parallel_tool_calls"), bad)
    fmt = response_format(body.get("response_format"), bad)
    if not (found or choice or par is not None or fmt):
        return None
    return GenerationOptions(
        tools=found, tool_choice=choice, parallel_tool_calls=par, response_format=fmt
    )


def parts(
    content: list[Any], role: Role, where: str, bad: list[FieldViolation]
) -> tuple[str, tuple[ContentPart, ...]]:
    """A content list's text (its text parts joined) and its parts, text and images in order.
    A list of text parts only is plain text (no parts), as OpenAI treats it."""
    if len(content) > rich.MAX_PARTS:
        bad.append(FieldViolation(where, f"at most {rich.MAX_PARTS} content parts"))
        return "", ()
    texts: list[str] = []
    out: list[ContentPart] = []
    images = False
    for j, part in enumerate(content):
        at = f"{where}[{j}]"
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind == "text" and isinstance(part, Mapping) and isinstance(part.get("text"), str):
            text = part["text"]
            if not is_text(text):
                bad.append(FieldViolation(f"{at}.text", BAD_TEXT))
                continue
            texts.append(text)
            out.append(TextPart(text))
        elif kind == "image_url" and isinstance(part, Mapping):
            image = _image(part.get("image_url"), role, f"{at}.image_url", bad)
            if image is not None:
                out.append(image)
                images = True
        elif kind in ("input_audio", "file"):
            bad.append(FieldViolation(at, f"content parts of type {kind!r} are not supported"))
        else:
            bad.append(
                FieldViolation(at, "must be a content part {type: 'text'} or {type: 'image_url'}")
            )
    return "".join(texts), (tuple(out) if images else ())


def _image(raw: Any, role: Role, where: str, bad: list[FieldViolation]) -> ContentPart | None:
    if role is not Role.USER:
        bad.append(FieldViolation(where, "images are allowed in user messages only"))
        return None
    url = raw.get("url") if isinstance(raw, Mapping) else None
    if not isinstance(url, str) or not url:
        bad.append(FieldViolation(f"{where}.url", "is required: an http(s) URL or a data: URL"))
        return None
    assert isinstance(raw, Mapping)
    detail = raw.get("detail") or ""
    if not isinstance(detail, str):
        bad.append(FieldViolation(f"{where}.detail", 'must be "low", "high" or "auto"'))
        return None
    mine: list[FieldViolation] = []
    image = rich.image_part(url=url, data=b"", media_type="", detail=detail, field=where, bad=mine)
    # OpenAI's request has only ``url`` and ``detail``: what the core says of the decoded
    # bytes (their size, their media type) is about the url the client sent.
    for v in mine:
        name = v.field
        if name.endswith((".data", ".media_type")) or name == where:
            name = f"{where}.url"
        bad.append(FieldViolation(name, v.description))
    return image


def tool_calls(raw: Any, where: str, bad: list[FieldViolation]) -> tuple[ToolCall, ...]:
    """An assistant message's ``tool_calls``: ``[{id, type: "function", function: {name,
    arguments}}]``."""
    if not isinstance(raw, list):
        bad.append(FieldViolation(where, "must be a list of tool calls"))
        return ()
    out: list[ToolCall] = []
    for j, c in enumerate(raw):
        at = f"{where}[{j}]"
        if not isinstance(c, Mapping):
            bad.append(FieldViolation(at, "must be an object {id, type, function}"))
            continue
        call_id = c.get("id")
        fn = c.get("function")
        name = fn.get("name") if isinstance(fn, Mapping) else None
        args = fn.get("arguments", "") if isinstance(fn, Mapping) else None
        ok = True
        if not isinstance(call_id, str) or not 0 < len(call_id) <= rich.MAX_TOOL_CALL_ID:
            bad.append(
                FieldViolation(f"{at}.id", f"must be 1 to {rich.MAX_TOOL_CALL_ID} characters")
            )
            ok = False
        if c.get("type", "function") != "function":
            bad.append(FieldViolation(f"{at}.type", 'must be "function"'))
            ok = False
        if not isinstance(name, str) or not rich.name_ok(name):
            bad.append(FieldViolation(f"{at}.function.name", rich.NAME_RULE))
            ok = False
        if not isinstance(args, str) or len(args) > rich.MAX_ARGUMENTS_CHARS:
            bad.append(
                FieldViolation(
                    f"{at}.function.arguments",
                    f"must be JSON text of at most {rich.MAX_ARGUMENTS_CHARS} characters",
                )
            )
            ok = False
        elif not is_text(args):
            bad.append(FieldViolation(f"{at}.function.arguments", BAD_TEXT))
            ok = False
        if ok:
            assert isinstance(call_id, str) and isinstance(name, str) and isinstance(args, str)
            out.append(ToolCall(id=call_id, name=name, arguments=args or "{}"))
    return tuple(out)
