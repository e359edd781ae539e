"""The plain values behind ``aurea.embedded``: the ``Guarded`` result of a guarded call, the
coercion of message-like values into ``ChatMessage``s, and the status an in-process call ends with.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from aurea.api.status import row_for
from aurea.errors import AureaError, InvalidRequest
from aurea.providers._base import ChatMessage, Role, Usage

T = TypeVar("T")
MessageLike = ChatMessage | tuple[str, str] | Mapping[str, str]
_DEFAULT_RETRY_ON: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)


@dataclass(frozen=True, slots=True, kw_only=True)
class Guarded(Generic[T]):
    """What a guarded function returned, and what it cost."""

    value: T
    model: str
    provider: str
    usage: Usage
    cost_nanos: int
    attempts: int
    request_id: str


def _messages(
    prompt: str | None, messages: Sequence[MessageLike], system: str | None
) -> tuple[ChatMessage, ...]:
    out: list[ChatMessage] = []
    if system is not None:
        out.append(ChatMessage(Role.SYSTEM, system))
    for m in messages:
        if isinstance(m, ChatMessage):
            out.append(m)
        elif isinstance(m, tuple):
            out.append(ChatMessage(Role(m[0]), m[1]))
        else:
            out.append(ChatMessage(Role(m["role"]), m["content"]))
    if prompt is not None:
        out.append(ChatMessage(Role.USER, prompt))
    if not out or all(m.role is Role.SYSTEM for m in out):
        raise InvalidRequest.field("prompt", "give a prompt or at least one user message")
    if any(not m.content for m in out):
        raise InvalidRequest.field("messages", "a message's content must not be empty")
    return tuple(out)


def _status(exc: BaseException) -> str:
    if isinstance(exc, asyncio.CancelledError):
        return "CANCELLED"
    return str(row_for(exc).grpc.name) if isinstance(exc, AureaError) else "INTERNAL"
