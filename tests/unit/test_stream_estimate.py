"""The stream's per-delta cost estimate equals ``cost_nanos`` on the usage it stands for (only
input and output tokens), rounding included, so a permit sees the same spend as before."""

from __future__ import annotations

import itertools

from aurea.config import ModelSpec, build_settings
from aurea.inference.stream import estimate_cost
from aurea.pricing import cost_nanos
from aurea.providers._base import Usage


def _model(**prices: str) -> ModelSpec:
    settings = build_settings(
        {"providers": {"p": {"kind": "simulated"}}, "models": {"m": {"provider": "p", **prices}}},
        {},
    )
    return settings.models["m"]


def test_the_estimate_is_cost_nanos_of_input_and_output_tokens() -> None:
    models = [
        _model(),
        _model(input_usd_per_mtok="0.1234567", output_usd_per_mtok="0.7654321"),
        _model(input_usd_per_mtok="3", output_usd_per_mtok="15", reasoning_usd_per_mtok="60"),
        _model(input_usd_per_mtok="0", output_usd_per_mtok="0.000001"),
    ]
    counts = [0, 1, 3, 7, 999, 1_000_001]
    for m, i, o in itertools.product(models, counts, counts):
        usage = Usage(input_tokens=i, output_tokens=o, estimated=True)
        assert estimate_cost(m, i, o) == cost_nanos(m, usage), (m.name, i, o)
