"""What a call costs, from its usage and the model's catalog prices, in integer nano-dollars.

Prices are integer nano-dollars per million tokens (``ModelSpec.*_nanos_per_mtok``), so a token
count times a price is an exact integer in nano-dollars x 10^-6 ("micro-nanos").

**The one rounding rule.** The micro-nanos of every kind of token in one attempt are summed
exactly, and the sum is rounded *up* once, to a whole nano-dollar: ``ceil(sum / 10^6)``. Nothing
is rounded per token or per kind, so the same usage always costs the same, and a cost is never
below what the provider bills (many small calls never add up to less than they cost). Worked
examples (prices in USD per million tokens; $1/Mtok is 1,000,000,000 nano-dollars per Mtok):

* 1,234 input tokens (200 of them cached) and 56 output tokens (10 of them reasoning), at
  $0.15 input, $0.075 cached, $0.60 output and $2.40 reasoning::

    1,034 x 150,000,000 + 200 x 75,000,000 + 46 x 600,000,000 + 10 x 2,400,000,000
      = 221,700,000,000 micro-nanos  ->  221,700 nano-dollars (exact: nothing to round)

* 3 input and 7 output tokens at $0.1234567 input and $0.7654321 output::

    3 x 123,456,700 + 7 x 765,432,100 = 5,728,394,800 micro-nanos
      -> ceil(5,728.3948) = 5,729 nano-dollars

The ledger reserves ``worst_case_nanos`` before an attempt and settles ``cost_nanos`` after it,
both by this rule.
"""

from __future__ import annotations

from aurea.config import ModelSpec
from aurea.providers._base import Usage

__all__ = ["MICRO", "cost_nanos", "output_token_nanos", "worst_case_nanos"]

MICRO = 1_000_000
"""Tokens per price unit: prices are per million tokens."""


def cost_nanos(model: ModelSpec, usage: Usage) -> int:
    """The cost of ``usage`` on ``model``.

    Cached input tokens (a subset of ``input_tokens``) bill at the cached-input price, the rest
    of the input at the input price; reasoning tokens (a subset of ``output_tokens``) bill at the
    reasoning price, the rest of the output at the output price. A subset larger than its whole
    (a confused upstream) is capped at the whole, so no token is billed twice.
    """
    cached = min(max(usage.cached_input_tokens, 0), max(usage.input_tokens, 0))
    fresh = max(usage.input_tokens, 0) - cached
    reasoning = min(max(usage.reasoning_tokens, 0), max(usage.output_tokens, 0))
    visible = max(usage.output_tokens, 0) - reasoning
    micro = (
        fresh * model.input_nanos_per_mtok
        + cached * model.cached_input_nanos_per_mtok
        + visible * model.output_nanos_per_mtok
        + reasoning * model.reasoning_nanos_per_mtok
    )
    return -(-micro // MICRO)


def worst_case_nanos(model: ModelSpec, input_tokens: int, max_output_tokens: int) -> int:
    """The most an attempt with ``input_tokens`` of prompt and at most ``max_output_tokens`` of
    output can cost: no input cached (unless caching costs more) and every output token billed
    at the dearer of the output and reasoning prices."""
    per_in = max(model.input_nanos_per_mtok, model.cached_input_nanos_per_mtok)
    per_out = max(model.output_nanos_per_mtok, model.reasoning_nanos_per_mtok)
    micro = max(input_tokens, 0) * per_in + max(max_output_tokens, 0) * per_out
    return -(-micro // MICRO)


def output_token_nanos(model: ModelSpec) -> int:
    """The most one more output token can add to a cost, rounded up (for look-ahead checks)."""
    return -(-max(model.output_nanos_per_mtok, model.reasoning_nanos_per_mtok) // MICRO)
