"""``aurea generate``'s rich options: ``--tools FILE``, ``--tool-choice``, ``--json-schema FILE``
(``--strict``), ``--image PATH|URL``, ``--reasoning``, and printing tool calls and reasoning so
a person can read them.

A tools file is a JSON list of tools, each ``{"name", "description", "parameters"}`` or OpenAI's
``{"type": "function", "function": {...}}``. A schema file is one JSON Schema object.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

__all__ = ["CliInputError", "StreamPrinter", "format_call", "rich_fields"]

_NAME = re.compile(r"[^A-Za-z0-9_-]+")
_MEDIA = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif"}
_MEDIA[".webp"] = "image/webp"


class CliInputError(ValueError):
    """A file or option the command cannot use (exit 2, one line)."""


def _json_file(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except OSError as exc:
        raise CliInputError(f"cannot read the {what} file {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise CliInputError(f"the {what} file {path} is not valid JSON: {exc}") from None


def _tools(path: str, pb: Any) -> list[Any]:
    raw = _json_file(path, "tools")
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise CliInputError(f"the tools file {path} must hold a JSON list of tools")
    tools = []
    for i, item in enumerate(raw):
        if isinstance(item, dict) and item.get("type") == "function":
            item = item.get("function")
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise CliInputError(f"tool {i} in {path} needs a name")
        params = item.get("parameters")
        tools.append(
            pb.Tool(
                name=item["name"],
                description=str(item.get("description", "")),
                parameters_json_schema=json.dumps(params) if params is not None else "",
                strict=bool(item.get("strict", False)),
            )
        )
    return tools


def _image(source: str, pb: Any) -> Any:
    if source.startswith(("http://", "https://", "data:")):
        return pb.Image(url=source)
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliInputError(f"cannot read the image {source}: {exc.strerror}") from None
    return pb.Image(data=data, media_type=_MEDIA.get(path.suffix.lower(), ""))


def rich_fields(args: Any, pb: Any, fields: dict[str, Any]) -> None:
    """Add the rich options' fields to a GenerateRequest's ``fields`` (its prompt becomes a
    message with image parts when images are given)."""
    if args.tools:
        fields["tools"] = _tools(args.tools, pb)
    if args.tool_choice:
        modes = {"auto": 1, "none": 2, "required": 3}
        choice = args.tool_choice
        fields["tool_choice"] = (
            pb.ToolChoice(mode=modes[choice]) if choice in modes else pb.ToolChoice(tool=choice)
        )
    if args.json_schema:
        schema = _json_file(args.json_schema, "schema")
        if not isinstance(schema, dict):
            raise CliInputError(f"the schema file {args.json_schema} must hold a JSON object")
        name = _NAME.sub("_", Path(args.json_schema).stem)[:64] or "response"
        fields["response_format"] = pb.ResponseFormat(
            type=pb.RESPONSE_FORMAT_TYPE_JSON_SCHEMA,
            name=name,
            json_schema=json.dumps(schema),
            strict=args.strict,
        )
    elif args.strict:
        raise CliInputError("--strict goes with --json-schema")
    if args.reasoning:
        fields["reasoning_effort"] = getattr(pb, f"REASONING_EFFORT_{args.reasoning.upper()}")
    if args.image:
        parts = [pb.ContentPart(text=args.prompt)]
        parts += [pb.ContentPart(image=_image(source, pb)) for source in args.image]
        messages = list(fields.pop("messages", []))
        if messages:
            messages[-1] = pb.ChatMessage(role=pb.ROLE_USER, parts=parts)
        else:
            fields.pop("prompt", None)
            messages = [pb.ChatMessage(role=pb.ROLE_USER, parts=parts)]
        fields["messages"] = messages


def format_call(call: Any) -> str:
    """``tool call get_weather(city="Paris") [id call_1]``-like, arguments pretty when JSON."""
    try:
        args = json.dumps(json.loads(call.arguments), ensure_ascii=False)
    except ValueError:
        args = call.arguments
    return f"tool call {call.name} {args}  [id {call.id}]"


class StreamPrinter:
    """Prints a stream's tool-call pieces as they come (each call on its own line, its
    arguments growing) and its reasoning on stderr."""

    def __init__(self) -> None:
        self.open = False  # a line of ours (text or a call) is still open on stdout
        self.thinking = False

    def tool_call(self, piece: Any, text_open: bool) -> None:
        if piece.name:
            if text_open or self.open:
                sys.stdout.write("\n")
            sys.stdout.write(f"tool call {piece.name} [id {piece.id}]: ")
        sys.stdout.write(piece.arguments)
        sys.stdout.flush()
        self.open = True

    def reasoning(self, piece: Any) -> None:
        if not self.thinking:
            sys.stderr.write("[reasoning] ")
            self.thinking = True
        sys.stderr.write(piece.text)
        sys.stderr.flush()

    def end(self) -> None:
        if self.thinking:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self.thinking = False
