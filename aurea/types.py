"""Aurea's public domain types: what a call is, who makes it, and the closed sets it names.

Transport-neutral: the gRPC edge and the HTTP door both build these; protobuf never appears here.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from aurea.providers._base import (
    Capability,
    ChatMessage,
    ContentPart,
    FinishReason,
    GenerationOptions,
    ImagePart,
    ReasoningEffort,
    ReasoningKind,
    ResponseFormat,
    ResponseFormatType,
    Role,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    ToolChoiceMode,
    Usage,
)

__all__ = [
    "CallScope",
    "Capability",
    "ChatMessage",
    "ContentPart",
    "FinishReason",
    "GenerationOptions",
    "ImagePart",
    "ModelKind",
    "Policy",
    "ReasoningEffort",
    "ReasoningKind",
    "ResponseFormat",
    "ResponseFormatType",
    "Role",
    "Scope",
    "TextPart",
    "Tool",
    "ToolCall",
    "ToolChoice",
    "ToolChoiceMode",
    "Usage",
]


class Policy(enum.StrEnum):
    """How the router ranks models when the caller names none."""

    COST = "cost"
    QUALITY = "quality"
    LATENCY = "latency"
    BALANCED = "balanced"


class ModelKind(enum.StrEnum):
    CHAT = "chat"
    EMBEDDING = "embedding"


class Scope(enum.StrEnum):
    """What an API key may do; ``admin`` includes ``user``."""

    USER = "user"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True, kw_only=True)
class CallScope:
    """Who is calling, for which operation, until when: built once per call by the edge.

    ``deadline`` is a ``time.monotonic()`` instant (None: the caller set none, and the server's
    ``server.default_call_timeout_s`` bounds the call instead). ``principal`` is the API key's
    name ("" when the server runs open), ``tenant`` the key's tenant as the key ring holds it
    now (its name when it names none; "" when open), runtime-created keys included.
    """

    request_id: str
    operation: str  # "aurea.v1.InferenceService/Generate", "POST /v1/chat/completions", ...
    principal: str = ""
    scopes: frozenset[Scope] = frozenset()
    deadline: float | None = None
    transport: str = "grpc"
    labels: Mapping[str, str] = field(default_factory=dict)
    tenant: str = ""
