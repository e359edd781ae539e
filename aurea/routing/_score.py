"""The router's arithmetic, as pure functions: factor scores, the composite score, ranking, and
weights proportional to each factor's variance (seed 002's optimizer).

A model is scored on three factors, each in [0, 1], higher better:

* **cost**: the expected cost of a call, inverted and normalized across the candidates: the
  cheapest scores 1 and one that costs *k* times as much scores 1/k (``lowest / value``). A
  ratio, not min-max: with min-max two models a cent apart would score 1 and 0.
* **latency**: the same for the expected time to the answer's first token.
* **quality**: the success rate itself (already a fraction; not normalized).

The composite score is ``cost * w_cost + quality * w_quality + latency * w_latency`` with weights
in [0, 1] that sum to 1, so it is in [0, 1] too.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

__all__ = [
    "WEIGHT_SUM_TOLERANCE",
    "Factor",
    "FactorScores",
    "Figures",
    "Optimized",
    "Weights",
    "factor_scores",
    "inverse_ratio",
    "optimize",
    "rank",
    "weight_problems",
]

WEIGHT_SUM_TOLERANCE = 1e-6


class Factor(enum.StrEnum):
    COST = "cost"
    QUALITY = "quality"
    LATENCY = "latency"


@dataclass(frozen=True, slots=True, kw_only=True)
class Weights:
    """How much each factor counts. Valid weights (see ``weight_problems``) sum to 1."""

    cost: float
    quality: float
    latency: float

    def get(self, factor: Factor) -> float:
        match factor:
            case Factor.COST:
                return self.cost
            case Factor.QUALITY:
                return self.quality
            case Factor.LATENCY:
                return self.latency

    def as_dict(self) -> dict[str, float]:
        return {f.value: self.get(f) for f in Factor}

    @classmethod
    def from_mapping(cls, values: Mapping[str, float]) -> Weights | None:
        """Weights stored by name, or None unless they are exactly the three factors and
        valid (a store written by another version is ignored, not trusted)."""
        if set(values) != {f.value for f in Factor}:
            return None
        w = cls(cost=values["cost"], quality=values["quality"], latency=values["latency"])
        return None if weight_problems(w) else w

    def text(self) -> str:
        return f"cost {self.cost:.2f}, quality {self.quality:.2f}, latency {self.latency:.2f}"


def weight_problems(w: Weights) -> list[tuple[str, str]]:
    """What is wrong with ``w``, as (factor or "sum", description) pairs; empty when valid."""
    out: list[tuple[str, str]] = []
    for f in Factor:
        v = w.get(f)
        if not (math.isfinite(v) and 0.0 <= v <= 1.0):  # NaN fails every comparison
            out.append((f.value, f"must be a number in [0, 1], got {v!r}"))
    if not out:
        total = w.cost + w.quality + w.latency
        if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
            out.append(("sum", f"the weights must sum to 1 (within 1e-6), got {total!r}"))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class Figures:
    """What one model is scored on: the expected cost of a call (nano-dollars), its success
    rate, and the expected time to the first token (None: unknown, scored as the candidates'
    mean). ``live``: the figures are measured rather than catalog priors."""

    cost_nanos: float
    success_rate: float
    latency_s: float | None
    live: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FactorScores:
    """One model's factor scores, each in [0, 1], higher better."""

    cost: float
    quality: float
    latency: float

    def get(self, factor: Factor) -> float:
        match factor:
            case Factor.COST:
                return self.cost
            case Factor.QUALITY:
                return self.quality
            case Factor.LATENCY:
                return self.latency

    def combine(self, w: Weights) -> float:
        return self.cost * w.cost + self.quality * w.quality + self.latency * w.latency


def inverse_ratio(values: Sequence[float]) -> list[float]:
    """Lower is better: the lowest value scores 1, any other ``lowest / value``.

    One value scores 1; equal values all score 1. A zero (free, instant) scores 1 and makes
    every positive value score 0: the limit of the ratio.
    """
    if not values:
        return []
    low = min(values)
    return [1.0 if v <= low else low / v for v in values]


def factor_scores(figures: Sequence[Figures]) -> list[FactorScores]:
    """The factor scores of candidates, normalized across exactly these candidates."""
    costs = inverse_ratio([max(f.cost_nanos, 0.0) for f in figures])
    known = [f.latency_s for f in figures if f.latency_s is not None]
    if known:
        # A model with no measured latency is neither favoured nor punished: it is taken to be
        # as fast as the mean of those measured.
        mean = math.fsum(known) / len(known)
        latencies = inverse_ratio(
            [f.latency_s if f.latency_s is not None else mean for f in figures]
        )
    else:
        latencies = [1.0] * len(figures)
    return [
        FactorScores(cost=c, quality=min(max(f.success_rate, 0.0), 1.0), latency=lat)
        for f, c, lat in zip(figures, costs, latencies, strict=True)
    ]


def rank(
    names: Sequence[str], scores: Sequence[FactorScores], weights: Weights, tie: Weights
) -> list[int]:
    """Indices of the candidates, best first: by the composite under ``weights``, then under
    ``tie`` (a policy that looks at one factor breaks its ties on the others), then by name so
    the order never depends on the catalog's order."""
    return sorted(
        range(len(names)),
        key=lambda i: (-scores[i].combine(weights), -scores[i].combine(tie), names[i]),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Optimized:
    """The result of ``optimize``: per factor the mean and (population) variance of its
    normalized scores across the models, and the weights they give (None: no factor varies,
    so there is nothing to learn and the weights should stay as they are)."""

    means: Mapping[Factor, float]
    variances: Mapping[Factor, float]
    weights: Weights | None


def optimize(scores: Sequence[FactorScores]) -> Optimized:
    """Weights proportional to each factor's variance across the models: a factor on which
    the models differ much decides more; one on which they agree decides nothing."""
    n = len(scores)
    means: dict[Factor, float] = {}
    variances: dict[Factor, float] = {}
    for f in Factor:
        xs = [s.get(f) for s in scores]
        mean = math.fsum(xs) / n if n else 0.0
        means[f] = mean
        variances[f] = math.fsum((x - mean) ** 2 for x in xs) / n if n else 0.0
    total = math.fsum(variances.values())
    if not total > 0.0:
        return Optimized(means=means, variances=variances, weights=None)
    cost = variances[Factor.COST] / total
    latency = variances[Factor.LATENCY] / total
    # The third weight is what is left, so the three sum to 1 despite rounding.
    quality = max(0.0, 1.0 - cost - latency)
    return Optimized(
        means=means,
        variances=variances,
        weights=Weights(cost=cost, quality=quality, latency=latency),
    )
