"""From recorded stats to the figures a model is scored on, with catalog priors standing in until
a model has enough recent outcomes.

Two series are kept per model in the ``RouterStatsStore`` (one row each):

* ``<model>``: every outcome with the call's **total** latency: requests, success rate (lifetime
  and recent), average latency and cost, time to first token of streams (seed 002's figures).
* ``<model>\\x1ffirst_token``: successful outcomes only, each with the time until the answer
  began: a stream's time to first token, a unary call's total latency. Its recent average is the
  latency factor, so a long answer does not make a model look slow, and a fast failure does not
  make a failing model look fast.

"Recent" is the store's exponentially decayed average: an outcome counts half after
``routing.stats_half_life_s`` seconds. A model's figures are **live** while its decayed sample
weight, to the nearest whole outcome, is at least ``routing.min_samples`` (so five calls a moment
ago count as five, though each has faded a little); below it (never called, or not for a while) the
catalog priors apply: success rate = the catalog's ``quality``, latency = unknown (scored as the
mean of the others), cost = a reference call at the catalog prices, scaled by how the live models'
measured costs compare with their own reference calls. So a model that failed and was left alone
drifts back to its priors and is tried again. The measured cost is per answer (everything spent
over the successful calls), so a failing model never looks cheap.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from aurea.config import ModelSpec
from aurea.routing._score import Figures
from aurea.stores.router_stats import ModelStats

__all__ = [
    "FIRST_TOKEN_SUFFIX",
    "REFERENCE_INPUT_TOKENS",
    "REFERENCE_OUTPUT_TOKENS",
    "effective_weight",
    "figures_for",
    "first_token_key",
    "split_rows",
]

# The unit separator cannot be typed in a TOML bare key and nobody names a model with it.
FIRST_TOKEN_SUFFIX = "\x1ffirst_token"
REFERENCE_INPUT_TOKENS = 1000
REFERENCE_OUTPUT_TOKENS = 250


def first_token_key(model: str) -> str:
    return model + FIRST_TOKEN_SUFFIX


def split_rows(
    rows: Iterable[ModelStats],
) -> tuple[dict[str, ModelStats], dict[str, ModelStats]]:
    """The store's rows as (per-call series, first-token series), each by model name."""
    calls: dict[str, ModelStats] = {}
    first: dict[str, ModelStats] = {}
    for row in rows:
        if row.model.endswith(FIRST_TOKEN_SUFFIX):
            first[row.model[: -len(FIRST_TOKEN_SUFFIX)]] = row
        else:
            calls[row.model] = row
    return calls, first


def effective_weight(s: ModelStats | None, now: float, half_life_s: float) -> float:
    """How many outcomes ``s`` is worth at ``now``: its decayed sample weight, decayed further
    for the time since its last outcome (a clock that stepped back decays nothing)."""
    if s is None:
        return 0.0
    return s.decayed_weight * math.exp2(-max(0.0, now - s.last_updated) / half_life_s)


def enough(s: ModelStats | None, now: float, half_life_s: float, min_samples: float) -> bool:
    """Whether ``s`` holds enough recent outcomes to be trusted (to the nearest whole one)."""
    return effective_weight(s, now, half_life_s) >= min_samples - 0.5


def answer_cost_nanos(s: ModelStats) -> float:
    """What an answer costs: everything spent on the model, failed attempts included, over the
    calls that answered. Not the mean per outcome: failures cost little, and a failing model
    must not look cheap for it."""
    return s.cost_sum_nanos / s.successes if s.successes else 0.0


def reference_cost_nanos(spec: ModelSpec) -> float:
    """A reference call at the model's catalog prices, in nano-dollars."""
    return (
        REFERENCE_INPUT_TOKENS * spec.input_nanos_per_mtok
        + REFERENCE_OUTPUT_TOKENS * spec.output_nanos_per_mtok
    ) / 1e6


def figures_for(
    specs: Sequence[ModelSpec],
    calls: Mapping[str, ModelStats],
    first: Mapping[str, ModelStats],
    *,
    now: float,
    half_life_s: float,
    min_samples: float,
) -> list[Figures]:
    """The figures of each of ``specs`` (one list, same order), live where there is enough."""
    live: list[ModelStats | None] = []
    ratios: list[float] = []
    for spec in specs:
        s = calls.get(spec.name)
        ok = enough(s, now, half_life_s, min_samples)
        live.append(s if ok else None)
        ref = reference_cost_nanos(spec)
        if s is not None and ok and ref > 0 and s.successes:
            ratios.append(answer_cost_nanos(s) / ref)
    scale = math.fsum(ratios) / len(ratios) if ratios else 1.0
    out: list[Figures] = []
    for spec, s in zip(specs, live, strict=True):
        f = first.get(spec.name)
        latency = (
            f.recent_latency_s
            if f is not None and enough(f, now, half_life_s, min_samples)
            else None
        )
        prior_cost = reference_cost_nanos(spec) * scale
        if s is None:
            out.append(Figures(cost_nanos=prior_cost, success_rate=spec.quality, latency_s=latency))
        else:
            out.append(
                Figures(
                    cost_nanos=answer_cost_nanos(s) if s.successes else prior_cost,
                    success_rate=s.recent_success_rate,
                    latency_s=latency,
                    live=True,
                )
            )
    return out
