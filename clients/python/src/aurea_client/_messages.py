"""What a conversation is made of: messages, the images in them, the tools a model may call, the
calls it made and the opaque reasoning blocks to echo. Plain frozen dataclasses; tuples and
mappings (``("user", "hi")``, ``{"role": "tool", "tool_call_id": ..., "content": ...}``) are
turned into them by ``as_message`` and friends, with a ``ValueError`` for what cannot be sent."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from os import PathLike
from pathlib import Path
from typing import Any, Literal, cast

Role = Literal["system", "user", "assistant", "tool"]
# The provider wire format of a reasoning block (the API's ReasoningBlockFormat, lower case).
ReasoningBlockFormat = Literal[
    "anthropic_thinking", "anthropic_redacted_thinking", "gemini_thought", "gemini_text_signature"
]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")
_MEDIA = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


@dataclass(frozen=True, slots=True)
class Image:
    """A picture in a user message: an http(s) or ``data:`` ``url`` the provider fetches, or
    the image's bytes (``data``, at most 3 MiB). ``media_type`` empty: recognized from the bytes
    or the URL. ``detail`` is OpenAI's "low", "high" or "auto" (others ignore it)."""

    url: str = ""
    data: bytes = b""
    media_type: str = ""
    detail: str = ""

    def __post_init__(self) -> None:
        if bool(self.url) == bool(self.data):
            raise ValueError("an Image has either a url or data (bytes), not both or neither")

    @classmethod
    def from_file(cls, path: str | PathLike[str], *, detail: str = "") -> Image:
        """The file's bytes, with the media type its extension names."""
        p = Path(path)
        return cls(data=p.read_bytes(), media_type=_MEDIA.get(p.suffix.lower(), ""), detail=detail)


# An Image; bytes (inline); a str URL (http, https or data:); a Path (the file is read).
ImageLike = Image | bytes | str | PathLike[str]


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call: ``parameters`` is the JSON Schema of its arguments (a JSON
    object; None: a tool without arguments). ``strict`` asks the provider to hold the arguments
    to the schema exactly (needs a model with ``strict_schema``)."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] | None = None
    strict: bool = False


# A Tool, or a mapping {"name", "description", "parameters", "strict"} or OpenAI's
# {"type": "function", "function": {...}}.
ToolLike = Tool | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call of a tool, as the model made it: ``arguments`` is JSON text exactly as written.
    ``signature`` is Gemini's thought signature (send the call back unchanged)."""

    id: str
    name: str
    arguments: str = ""
    signature: str = ""

    def parsed_arguments(self) -> Any:
        """The arguments decoded from JSON (``{}`` when empty); ValueError when not JSON."""
        return json.loads(self.arguments) if self.arguments else {}


@dataclass(frozen=True, slots=True)
class ReasoningBlock:
    """An opaque piece of a model's reasoning (signed thinking, redacted thinking, a thought
    signature) to send back unchanged on the assistant message that repeats its answer."""

    format: ReasoningBlockFormat
    text: str = ""
    signature: str = ""
    data: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """One turn of a conversation. ``Message(role, content)`` for text; a user message may add
    ``images`` (sent after the text), or give ``parts`` (text and images in order) instead of
    both. An assistant message repeats an answer: its ``tool_calls`` and ``reasoning_blocks`` as
    returned (``Completion.message()`` builds it). A tool message answers a call:
    ``Message.tool_result(call.id, result)``."""

    role: Role
    content: str = ""
    _: KW_ONLY
    images: Sequence[ImageLike] = ()  # kept as a tuple of Image
    parts: Sequence[str | ImageLike] = ()  # a str is text; kept as a tuple of str and Image
    tool_calls: Sequence[ToolCall] = ()
    tool_call_id: str = ""
    reasoning_blocks: Sequence[ReasoningBlock] = ()

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(
                f"a message's role is system, user, assistant or tool, not {self.role!r}"
            )
        # Lists (and image shorthands) are accepted and kept as tuples, so the message is frozen.
        object.__setattr__(self, "images", tuple(as_image(i) for i in self.images))
        parts = tuple(p if isinstance(p, str) else as_image(p) for p in self.parts)
        object.__setattr__(self, "parts", parts)
        object.__setattr__(self, "tool_calls", tuple(as_tool_call(c) for c in self.tool_calls))
        blocks = tuple(as_reasoning_block(b) for b in self.reasoning_blocks)
        object.__setattr__(self, "reasoning_blocks", blocks)
        if self.parts and (self.content or self.images):
            raise ValueError("a message gives parts, or content and images, not both")

    @classmethod
    def tool_result(cls, tool_call_id: str, result: object) -> Message:
        """The result of the call ``tool_call_id``: text as it is, anything else as JSON."""
        content = result if isinstance(result, str) else json.dumps(result)
        return cls("tool", content, tool_call_id=tool_call_id)


MessageLike = Message | tuple[str, str] | Mapping[str, Any]
_MESSAGE_KEYS = frozenset(
    ("role", "content", "images", "parts", "tool_calls", "tool_call_id", "reasoning_blocks")
)


def as_message(m: MessageLike) -> Message:
    if isinstance(m, Message):
        return m
    if isinstance(m, tuple):
        role, content = m
        return Message(cast(Role, role), content)
    unknown = set(m) - _MESSAGE_KEYS
    if unknown:
        raise ValueError(
            f"a message has no {', '.join(sorted(unknown))} "
            f"(its keys are {', '.join(sorted(_MESSAGE_KEYS))})"
        )
    content = m.get("content") or ""
    parts: Iterable[Any] = ()
    if not isinstance(content, str):  # OpenAI-style content parts
        parts, content = content, ""
    return Message(
        cast(Role, m["role"]),
        content,
        images=tuple(m.get("images") or ()),
        parts=tuple(_part(p) for p in m.get("parts") or parts),
        tool_calls=tuple(m.get("tool_calls") or ()),
        tool_call_id=m.get("tool_call_id") or "",
        reasoning_blocks=tuple(m.get("reasoning_blocks") or ()),
    )


def _part(p: Any) -> str | Image:
    if isinstance(p, Mapping):
        if p.get("type") == "text":
            return str(p["text"])
        if p.get("type") == "image_url":
            url = p["image_url"]
            if isinstance(url, Mapping):
                return Image(url=url["url"], detail=url.get("detail", ""))
            return Image(url=url)
        raise ValueError(f"a content part is text or an image, not {p!r}")
    return p if isinstance(p, str) else as_image(p)


def as_image(i: ImageLike) -> Image:
    if isinstance(i, Image):
        return i
    if isinstance(i, bytes | bytearray):
        return Image(data=bytes(i))
    if isinstance(i, str):
        if i.startswith(("http://", "https://", "data:")):
            return Image(url=i)
        raise ValueError(
            f"an image given as text is an http(s) or data: URL, not {i[:40]!r} "
            "(pass a pathlib.Path or Image.from_file for a file)"
        )
    if isinstance(i, PathLike):
        return Image.from_file(i)
    raise ValueError(f"an image is an Image, bytes, a URL or a Path, not {type(i).__name__}")


def as_tool(t: ToolLike) -> Tool:
    if isinstance(t, Tool):
        return t
    spec: Mapping[str, Any] = t
    if spec.get("type") == "function" and isinstance(spec.get("function"), Mapping):
        spec = spec["function"]
    if not isinstance(spec.get("name"), str):
        raise ValueError(f"a tool needs a name: {dict(t)!r}")
    return Tool(
        spec["name"],
        str(spec.get("description") or ""),
        spec.get("parameters"),
        bool(spec.get("strict", False)),
    )


def as_tool_call(c: ToolCall | Mapping[str, Any]) -> ToolCall:
    if isinstance(c, ToolCall):
        return c
    fn = c.get("function")  # OpenAI's {"id", "type": "function", "function": {...}}
    spec: Mapping[str, Any] = fn if isinstance(fn, Mapping) else c
    args = spec.get("arguments") or ""
    return ToolCall(
        str(c["id"]),
        str(spec["name"]),
        args if isinstance(args, str) else json.dumps(args),
        str(c.get("signature") or ""),
    )


def as_reasoning_block(b: ReasoningBlock | Mapping[str, Any]) -> ReasoningBlock:
    if isinstance(b, ReasoningBlock):
        return b
    return ReasoningBlock(
        b["format"], b.get("text") or "", b.get("signature") or "", b.get("data") or ""
    )
