"""Cost of a call from its usage and the model's catalog prices, in integer nano-dollars."""

from __future__ import annotations

from aurea.config import ModelSpec
from aurea.providers._base import Usage


def cost_nanos(model: ModelSpec, usage: Usage) -> int:
    """Cached input tokens bill at the cached price; the rest of the input at the input price.

    Rounds up to a whole nano-dollar so many small calls never add up to less than they cost.
    """
    fresh = max(usage.input_tokens - usage.cached_input_tokens, 0)
    micro = (
        fresh * model.input_nanos_per_mtok
        + usage.cached_input_tokens * model.cached_input_nanos_per_mtok
        + usage.output_tokens * model.output_nanos_per_mtok
    )
    return -(-micro // 1_000_000)
