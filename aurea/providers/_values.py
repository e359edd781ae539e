"""Validation of the numbers and texts an upstream sends, at the adapter boundary.

Upstream input is hostile: a usage count may be ``1e30``, ``-5``, ``true``, ``"12"`` or
``NaN`` (Python's ``json`` accepts ``NaN`` and ``Infinity``). Every adapter reads counts with
``token_count`` and builds its ``Usage`` with ``reported_usage``, so nothing past the adapters
ever sees a negative count, a float, or a number that overflows int64 once multiplied by a price.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aurea.providers._base import ChatMessage, Usage
from aurea.providers._tokens import (
    estimate_messages_tokens_async,
    estimate_text_tokens_async,
)

__all__ = [
    "MAX_TOKEN_COUNT",
    "Counts",
    "float_vector",
    "reported_usage",
    "token_count",
]

# The largest token count Aurea accepts from an upstream; more is clamped to it. A billion tokens
# is ~1000x the largest context window on offer, and at a price of even $10^6 per million tokens
# (10^15 nano-dollars) the cost stays below 2^63 nano-dollars.
MAX_TOKEN_COUNT = 10**9


def token_count(value: Any) -> int | None:
    """``value`` as a token count: a non-negative whole number, clamped to ``MAX_TOKEN_COUNT``.

    None (read: "not reported") for anything that is not a count: a missing value, a bool, a
    string, a negative or non-finite number, a container. A float is truncated (``12.0`` is 12).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, float):
        if math.isnan(value) or value < 0:
            return None
        if value >= MAX_TOKEN_COUNT:  # +inf and 1e30 included
            return MAX_TOKEN_COUNT
        return int(value)
    if value < 0:
        return None
    return min(value, MAX_TOKEN_COUNT)


@dataclass(frozen=True, slots=True, kw_only=True)
class Counts:
    """The raw counts an upstream reported (any JSON value; validated by ``reported_usage``)."""

    input_tokens: Any = None
    output_tokens: Any = None
    cached_input_tokens: Any = None
    reasoning_tokens: Any = None

    @classmethod
    def of(cls, data: Any, **names: str) -> Counts | None:
        """The counts in the JSON object ``data`` under the vendor's ``names``
        (``input_tokens="prompt_tokens"``), or None when ``data`` is not an object."""
        if not isinstance(data, Mapping):
            return None
        return cls(**{ours: data.get(theirs) for ours, theirs in names.items()})


async def reported_usage(
    counts: Counts | None,
    *,
    messages: Sequence[ChatMessage],
    output_text: str,
    model: str,
    extra_input_tokens: int = 0,
) -> Usage:
    """A valid ``Usage`` from what the upstream reported; a missing or invalid input or output
    count is estimated instead (and the usage marked ``estimated``; ``extra_input_tokens`` is
    what the prompt holds beyond ``messages``, from ``_tokens.prompt_extra_tokens``). Cached
    tokens never exceed the input, reasoning tokens never exceed the output; missing or invalid
    ones are 0."""
    counts = counts or Counts()
    input_tokens = token_count(counts.input_tokens)
    output_tokens = token_count(counts.output_tokens)
    estimated = input_tokens is None or output_tokens is None
    if input_tokens is None:
        input_tokens = await estimate_messages_tokens_async(messages, model)
        input_tokens += extra_input_tokens  # tool definitions, a response schema
    if output_tokens is None:
        output_tokens = await estimate_text_tokens_async(output_text, model)
    input_tokens = min(input_tokens, MAX_TOKEN_COUNT)
    output_tokens = min(output_tokens, MAX_TOKEN_COUNT)
    cached = min(token_count(counts.cached_input_tokens) or 0, input_tokens)
    reasoning = min(token_count(counts.reasoning_tokens) or 0, output_tokens)
    return Usage(
        input_tokens=input_tokens,
        cached_input_tokens=cached,
        output_tokens=output_tokens,
        reasoning_tokens=reasoning,
        estimated=estimated,
    )


def float_vector(value: Any) -> tuple[float, ...] | None:
    """An embedding as a tuple of finite floats, or None when ``value`` is anything else."""
    if not isinstance(value, list | tuple):
        return None
    out: list[float] = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int | float):
            return None
        try:
            number = float(item)
        except OverflowError:  # an int too big for a float
            return None
        if not math.isfinite(number):
            return None
        out.append(number)
    return tuple(out)
