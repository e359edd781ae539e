"""Prices: cached-input and reasoning tokens at their own prices, the worst case a lease holds,
and the one rounding rule (the exact sum, rounded up once), on the docstring's worked examples."""

from __future__ import annotations

from aurea.config import ModelSpec, build_settings
from aurea.pricing import cost_nanos, output_token_nanos, worst_case_nanos
from aurea.providers._base import Usage


def _model(**prices: str) -> ModelSpec:
    settings = build_settings(
        {
            "providers": {"p": {"kind": "simulated"}},
            "models": {"m": {"provider": "p", **prices}},
        },
        {},
    )
    return settings.models["m"]


def test_every_kind_of_token_at_its_price() -> None:
    m = _model(
        input_usd_per_mtok="0.15",
        cached_input_usd_per_mtok="0.075",
        output_usd_per_mtok="0.60",
        reasoning_usd_per_mtok="2.40",
    )
    usage = Usage(input_tokens=1234, cached_input_tokens=200, output_tokens=56, reasoning_tokens=10)
    assert cost_nanos(m, usage) == 221_700


def test_rounded_up_once_over_the_exact_sum() -> None:
    m = _model(input_usd_per_mtok="0.1234567", output_usd_per_mtok="0.7654321")
    assert cost_nanos(m, Usage(input_tokens=3, output_tokens=7)) == 5_729
    # Rounding per token would give 3 x 124 + 7 x 766 = 5,734: the sum is rounded, not its parts.
    assert cost_nanos(m, Usage(input_tokens=1)) == 124


def test_prices_default_to_the_plain_ones_and_subsets_never_bill_twice() -> None:
    m = _model(input_usd_per_mtok="1", output_usd_per_mtok="4")
    assert m.cached_input_nanos_per_mtok == m.input_nanos_per_mtok
    assert m.reasoning_nanos_per_mtok == m.output_nanos_per_mtok
    # A confused upstream reporting more cached (or reasoning) tokens than tokens at all.
    weird = Usage(input_tokens=10, cached_input_tokens=50, output_tokens=2, reasoning_tokens=9)
    assert cost_nanos(m, weird) == 10 * 1000 + 2 * 4000  # $1/Mtok: 1,000 nano-dollars a token
    assert cost_nanos(m, Usage(input_tokens=-5, output_tokens=-1)) == 0


def test_the_worst_case_bills_every_token_at_its_dearest_price() -> None:
    m = _model(
        input_usd_per_mtok="1",
        cached_input_usd_per_mtok="0.5",
        output_usd_per_mtok="4",
        reasoning_usd_per_mtok="8",
    )
    assert worst_case_nanos(m, 100, 50) == 100 * 1000 + 50 * 8000
    assert output_token_nanos(m) == 8000
    # Whatever the split, an attempt within its limits never costs more than its worst case.
    for cached in (0, 40, 100):
        for reasoning in (0, 25, 50):
            u = Usage(
                input_tokens=100,
                cached_input_tokens=cached,
                output_tokens=50,
                reasoning_tokens=reasoning,
            )
            assert cost_nanos(m, u) <= worst_case_nanos(m, 100, 50)
    cheap = _model(input_usd_per_mtok="0.0000001", output_usd_per_mtok="0.0000001")
    assert output_token_nanos(cheap) == 1  # a fraction of a nano-dollar still counts as one
