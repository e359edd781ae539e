"""The input limits of the call being served (``[input]``): the edge sets them when it admits a
call, and request validation on both doors reads them, so one server's limits apply to all of its
calls without being passed through every servicer. Outside a call the defaults apply."""

from __future__ import annotations

from contextvars import ContextVar

from aurea.config import InputSettings

__all__ = ["InputLimits", "current_limits", "input_limits", "limit_text"]

InputLimits = InputSettings

_DEFAULT = InputSettings()
current_limits: ContextVar[InputSettings] = ContextVar("aurea_input_limits", default=_DEFAULT)


def input_limits() -> InputSettings:
    """The limits in force for the call this task serves."""
    return current_limits.get()


def limit_text(name: str) -> str:
    """How a refusal names the limit: ``(limit input.max_messages = 1000)``."""
    return f"(limit input.{name} = {getattr(current_limits.get(), name)})"
