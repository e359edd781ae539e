"""The router stats store protocol: per-model outcome figures and the router's weights.

``record`` folds one outcome into a model's figures atomically (the fold is the pure function
``fold`` below, which every backend applies inside its own atomic step; Redis in Lua). Besides
lifetime sums it keeps time-decayed sums, so the router can read a recency-weighted latency and
success rate: each sample's weight halves every ``half_life_s`` seconds of wall time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from aurea.stores._common import check_finite, check_id, check_non_negative, check_positive

__all__ = ["ModelStats", "Outcome", "RouterStatsStore", "check_outcome", "check_weights", "fold"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Outcome:
    """One call's result for a model. ``ttft_s`` only for streams that produced a first token."""

    success: bool
    latency_s: float
    cost_nanos: int = 0
    ttft_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelStats:
    model: str
    count: int = 0
    successes: int = 0
    latency_sum_s: float = 0.0
    cost_sum_nanos: int = 0
    ttft_count: int = 0
    ttft_sum_s: float = 0.0
    decayed_weight: float = 0.0  # sum of decayed sample weights (each sample starts at 1)
    decayed_latency_s: float = 0.0  # decayed sum of latency_s
    decayed_successes: float = 0.0  # decayed sum of success (1 or 0)
    last_updated: float = 0.0

    @property
    def success_rate(self) -> float:
        return self.successes / self.count if self.count else 0.0

    @property
    def avg_latency_s(self) -> float:
        return self.latency_sum_s / self.count if self.count else 0.0

    @property
    def avg_cost_nanos(self) -> float:
        return self.cost_sum_nanos / self.count if self.count else 0.0

    @property
    def avg_ttft_s(self) -> float:
        return self.ttft_sum_s / self.ttft_count if self.ttft_count else 0.0

    @property
    def recent_latency_s(self) -> float:
        return self.decayed_latency_s / self.decayed_weight if self.decayed_weight else 0.0

    @property
    def recent_success_rate(self) -> float:
        return self.decayed_successes / self.decayed_weight if self.decayed_weight else 0.0


def check_outcome(model: str, outcome: Outcome, now: float, half_life_s: float) -> None:
    check_id("model", model)
    check_non_negative("latency_s", outcome.latency_s)
    check_finite("latency_s", outcome.latency_s)
    check_non_negative("cost_nanos", outcome.cost_nanos)
    if outcome.ttft_s is not None:
        check_non_negative("ttft_s", outcome.ttft_s)
        check_finite("ttft_s", outcome.ttft_s)
    check_finite("now", now)
    check_positive("half_life_s", half_life_s)
    check_finite("half_life_s", half_life_s)


def check_weights(weights: Mapping[str, float]) -> None:
    if not weights:
        raise ValueError("weights must not be empty")
    for name, value in weights.items():
        check_id("weight name", name)
        check_finite(f"weights[{name}]", value)


def fold(
    prev: ModelStats | None, model: str, outcome: Outcome, now: float, half_life_s: float
) -> ModelStats:
    """``prev`` with ``outcome`` added at ``now``; a clock that stepped back decays nothing."""
    p = prev or ModelStats(model=model, last_updated=now)
    decay = math.exp2(-max(0.0, now - p.last_updated) / half_life_s)
    has_ttft = outcome.ttft_s is not None
    return ModelStats(
        model=model,
        count=p.count + 1,
        successes=p.successes + int(outcome.success),
        latency_sum_s=p.latency_sum_s + outcome.latency_s,
        cost_sum_nanos=p.cost_sum_nanos + outcome.cost_nanos,
        ttft_count=p.ttft_count + int(has_ttft),
        ttft_sum_s=p.ttft_sum_s + (outcome.ttft_s or 0.0),
        decayed_weight=p.decayed_weight * decay + 1.0,
        decayed_latency_s=p.decayed_latency_s * decay + outcome.latency_s,
        decayed_successes=p.decayed_successes * decay + float(outcome.success),
        last_updated=max(now, p.last_updated),
    )


class RouterStatsStore(Protocol):
    """Per-model figures and the router's named weights. Bad arguments raise ``ValueError``."""

    async def record(
        self, model: str, outcome: Outcome, *, now: float, half_life_s: float
    ) -> ModelStats:
        """Fold ``outcome`` into ``model``'s figures atomically; returns the new figures."""
        ...

    async def get(self, model: str) -> ModelStats | None: ...

    async def all(self) -> tuple[ModelStats, ...]:
        """Every model's figures, sorted by model."""
        ...

    async def get_weights(self) -> dict[str, float] | None:
        """The weights last set, or None if none ever was."""
        ...

    async def set_weights(self, weights: Mapping[str, float], *, now: float) -> None:
        """Replace all weights at once (validation of their meaning is the router's job)."""
        ...
