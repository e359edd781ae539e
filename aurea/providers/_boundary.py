"""The adapter boundary: whatever goes wrong inside an adapter leaves it as an ``AureaError``.

``adapter_boundary`` decorates an adapter class: an unexpected exception from its ``stream``,
``complete``, ``embed``, ``list_models`` or ``run`` (a ``KeyError`` on a reply missing a field, a
``TypeError`` on a field of the wrong type, a vendor library's own error) becomes the most
specific ``ProviderError`` (``raise ... from exc``), and ``MalformedReply``, which adapters raise
when an upstream broke its own wire format, becomes one naming what was wrong. ``check_options``
refuses option names an adapter does not know, so a typo fails at start instead of being ignored.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, TypeVar

from aurea.errors import (
    AureaError,
    FieldViolation,
    ProviderError,
    ProviderServerError,
    StreamBroken,
    UnsupportedFeature,
)
from aurea.providers._base import ProviderRequest, ProviderSpec, required_capabilities

__all__ = ["MalformedReply", "adapter_boundary", "check_options", "json_type", "text_only"]

T = TypeVar("T")
_CALLS = ("complete", "embed", "list_models", "run")


class MalformedReply(ValueError):
    """An upstream reply broke the vendor's documented format. The message names the field and
    the JSON type found (never the value, which may be huge or hold secrets)."""


def json_type(value: Any) -> str:
    """The JSON type of ``value`` with its article, for MalformedReply messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    return "an object"


def check_options(spec: ProviderSpec, known: Iterable[str]) -> None:
    """ValueError naming the first option of ``spec`` that is not in ``known``."""
    names = sorted(known)
    for name in spec.options:
        if name not in names:
            kind = spec.kind.strip().lower()
            raise ValueError(
                f"unknown option {name!r} for kind {kind}; known: {', '.join(names) or 'none'}"
            )


def text_only(provider: str, request: ProviderRequest) -> None:
    """For adapters that carry text only: UnsupportedFeature naming what the request needs (a
    model whose catalog entry claims more than its provider carries gets a clear refusal, not
    an answer without it)."""
    if not request.rich:
        return
    needs = sorted(required_capabilities(request.messages, request.options))
    if not needs:
        return
    names = ", ".join(n.value for n in needs)
    raise UnsupportedFeature(
        f"{provider}: model {request.model!r} takes text only, and this request needs {names}",
        [FieldViolation(n.value, "not carried by this provider") for n in needs],
    )


def _convert(provider: str, exc: Exception, cls: type[ProviderError]) -> ProviderError:
    if isinstance(exc, MalformedReply):
        return cls(f"{provider}: malformed upstream reply: {exc}", provider=provider)
    # Only the exception's type: its text may quote upstream data of any size.
    return cls(
        f"{provider}: could not read the upstream reply ({type(exc).__name__})", provider=provider
    )


def _guard_call(fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(fn)
    async def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(self, *args, **kwargs)
        except AureaError:
            raise
        except Exception as exc:
            raise _convert(self.name, exc, ProviderServerError) from exc

    return call


def _guard_stream(
    fn: Callable[..., AsyncGenerator[Any, None]],
) -> Callable[..., AsyncIterator[Any]]:
    @functools.wraps(fn)
    async def stream(self: Any, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
        # aclosing: closing this stream closes the adapter's at once (and so its connection).
        async with contextlib.aclosing(fn(self, *args, **kwargs)) as inner:
            try:
                async for event in inner:
                    yield event
            except AureaError:
                raise
            except Exception as exc:
                raise _convert(self.name, exc, StreamBroken) from exc

    return stream


def adapter_boundary(cls: type[T]) -> type[T]:
    """Class decorator: guard the adapter's public calls (see the module docstring)."""
    for name in _CALLS:
        method = cls.__dict__.get(name)
        if method is not None:
            setattr(cls, name, _guard_call(method))
    stream = cls.__dict__.get("stream")
    if stream is not None:
        cls.stream = _guard_stream(stream)  # type: ignore[attr-defined]
    return cls
