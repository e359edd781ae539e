"""The in-memory ``RouterStatsStore``: per-model figures and the weights in dicts."""

from __future__ import annotations

from collections.abc import Mapping

from aurea.stores.router_stats import ModelStats, Outcome, check_outcome, check_weights, fold

__all__ = ["MemoryRouterStatsStore"]


class MemoryRouterStatsStore:
    """Nothing survives the process; the SQLite store keeps the same figures durably."""

    def __init__(self) -> None:
        self._stats: dict[str, ModelStats] = {}
        self._weights: dict[str, float] | None = None

    async def record(
        self, model: str, outcome: Outcome, *, now: float, half_life_s: float
    ) -> ModelStats:
        check_outcome(model, outcome, now, half_life_s)
        stats = self._stats[model] = fold(self._stats.get(model), model, outcome, now, half_life_s)
        return stats

    async def get(self, model: str) -> ModelStats | None:
        return self._stats.get(model)

    async def all(self) -> tuple[ModelStats, ...]:
        return tuple(self._stats[m] for m in sorted(self._stats))

    async def get_weights(self) -> dict[str, float] | None:
        return None if self._weights is None else dict(self._weights)

    async def set_weights(self, weights: Mapping[str, float], *, now: float) -> None:
        check_weights(weights)
        self._weights = dict(weights)
