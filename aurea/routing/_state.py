"""What the router knows, without I/O: every model's recorded rows, the recent first-token times,
the weights, and what follows from them (the routing table, per-model reports, optimized
weights). The Router actor owns one and is the only one to touch it."""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from aurea.config import ModelSpec, RoutingSettings
from aurea.errors import FailedPrecondition
from aurea.routing._figures import effective_weight, figures_for, split_rows
from aurea.routing._score import Figures, Optimized, Weights, factor_scores, optimize
from aurea.routing._table import Health, RoutingTable, Scored, default_weights, permitted_names
from aurea.stores.router_stats import ModelStats

__all__ = ["TTFT_WINDOW", "ModelReport", "Optimization", "RouterState"]

TTFT_WINDOW = 512  # the latest first-token times per model behind p50/p95


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelReport:
    """One catalog model's figures. ``calls``: every outcome (total latency); ``first``: the
    first-token series (successes only); ``scored``: None for a model that is not permitted."""

    spec: ModelSpec
    calls: ModelStats
    first: ModelStats | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    ttft_window: int
    recent_samples: float  # what the decayed figures are worth now, in outcomes
    scored: Scored | None


@dataclass(frozen=True, slots=True, kw_only=True)
class Optimization:
    weights: Weights  # the new weights (the previous ones when nothing varies)
    previous: Weights
    result: Optimized
    models: tuple[str, ...]  # the models whose figures were used
    outcomes: int  # their recorded outcomes
    applied: bool
    reason: str


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted values."""
    k = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[k]


class RouterState:
    __slots__ = (
        "_health",
        "_models",
        "_pools",
        "_settings",
        "_wall",
        "calls",
        "defaults",
        "dirty",
        "epoch",
        "first",
        "ttft",
        "weights",
    )

    def __init__(
        self,
        *,
        models: Mapping[str, ModelSpec],
        settings: RoutingSettings,
        health: Health | None,
        wall_clock: Callable[[], float],
    ) -> None:
        self._models = dict(models)
        self._settings = settings
        self._health = health
        self._wall = wall_clock
        self.weights = default_weights(settings)
        self.defaults = True  # no weights were ever set or optimized
        self.epoch = 0  # counts weight changes, so a stale read-back never undoes one
        self.calls: dict[str, ModelStats] = {}
        self.first: dict[str, ModelStats] = {}
        self.ttft: dict[str, collections.deque[float]] = {}
        self.dirty = False  # rows changed since the last table
        # The candidates each model is scored against: the permitted models of its kind.
        self._pools: dict[str, list[ModelSpec]] = {}
        for name in sorted(permitted_names(self._models, settings)):
            self._pools.setdefault(self._models[name].kind, []).append(self._models[name])

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return self._models

    # -- changes ---------------------------------------------------------------------------------

    def merge(self, rows: Iterable[ModelStats], ttfts: Iterable[tuple[str, float]] = ()) -> None:
        """Rows the store returned; they may arrive out of order (the pump, RecordOutcome, a
        read-back), and a model's count only grows, so the row with the larger count wins."""
        calls, first = split_rows(rows)
        for mine, new in ((self.calls, calls), (self.first, first)):
            for name, row in new.items():
                old = mine.get(name)
                if (old is None or row.count >= old.count) and row != old:
                    mine[name] = row
                    self.dirty = True
        for name, ttft in ttfts:
            window = self.ttft.get(name)
            if window is None:
                window = self.ttft[name] = collections.deque(maxlen=TTFT_WINDOW)
            window.append(ttft)

    def set_weights(self, weights: Weights) -> None:
        self.weights, self.defaults = weights, False
        self.epoch += 1

    def read_back(self, stored: Mapping[str, float], epoch: int) -> None:
        """Weights a sibling sharing the store may have set, as read when ``epoch`` was current:
        ignored if the weights changed here since (the read may predate that change)."""
        weights = Weights.from_mapping(stored)
        if epoch == self.epoch and weights is not None and weights != self.weights:
            self.weights, self.defaults = weights, False
            self.dirty = True

    # -- what follows ----------------------------------------------------------------------------

    def _figures(
        self,
        pool: Sequence[ModelSpec],
        calls: Mapping[str, ModelStats],
        first: Mapping[str, ModelStats],
    ) -> list[Figures]:
        s = self._settings
        return figures_for(
            pool,
            calls,
            first,
            now=self._wall(),
            half_life_s=s.stats_half_life_s,
            min_samples=s.min_samples,
        )

    def table(self) -> RoutingTable:
        figures: dict[str, Figures] = {}
        for pool in self._pools.values():
            for spec, fig in zip(pool, self._figures(pool, self.calls, self.first), strict=True):
                figures[spec.name] = fig
        self.dirty = False
        return RoutingTable(
            models=self._models,
            settings=self._settings,
            weights=self.weights,
            figures=figures,
            health=self._health,
        )

    def reports(
        self,
        names: Sequence[str],
        calls_over: Mapping[str, ModelStats] | None = None,
        first_over: Mapping[str, ModelStats] | None = None,
    ) -> list[ModelReport]:
        """Reports of ``names``, with ``*_over`` rows in place of the state's, each model scored
        against the permitted models of its kind now."""
        calls = {**self.calls, **(calls_over or {})}
        first = {**self.first, **(first_over or {})}
        scored: dict[str, Scored] = {}
        for pool in self._pools.values():
            figs = self._figures(pool, calls, first)
            for spec, fig, fs in zip(pool, figs, factor_scores(figs), strict=True):
                scored[spec.name] = Scored(
                    model=spec,
                    score=fs.combine(self.weights),
                    factors=fs,
                    live=fig.live,
                    available=self._health is None or not self._health(spec),
                )
        now, half_life = self._wall(), self._settings.stats_half_life_s
        out: list[ModelReport] = []
        for name in names:
            ordered = sorted(self.ttft.get(name, ()))
            out.append(
                ModelReport(
                    spec=self._models[name],
                    calls=calls.get(name) or ModelStats(model=name),
                    first=first.get(name),
                    ttft_p50_s=_percentile(ordered, 50) if ordered else None,
                    ttft_p95_s=_percentile(ordered, 95) if ordered else None,
                    ttft_window=len(ordered),
                    recent_samples=effective_weight(calls.get(name), now, half_life),
                    scored=scored.get(name),
                )
            )
        return out

    def optimize(self) -> Optimization:
        """Weights proportional to each factor's variance across the chat models with live
        figures (not applied); ``FailedPrecondition`` with fewer than two such models."""
        chat = self._pools.get("chat", [])
        figs = self._figures(chat, self.calls, self.first)
        pool = [spec for spec, fig in zip(chat, figs, strict=True) if fig.live]
        if len(pool) < 2:
            raise FailedPrecondition(
                f"OptimizeWeights needs at least two chat models with live figures "
                f"({self._settings.min_samples} or more recent outcomes each); "
                f"{len(pool)} {'has' if len(pool) == 1 else 'have'} them"
            )
        result = optimize(factor_scores(self._figures(pool, self.calls, self.first)))
        names = tuple(spec.name for spec in pool)
        outcomes = sum(self.calls[n].count for n in names)
        if result.weights is None:
            weights = self.weights
            reason = f"no factor varies across the {len(names)} models: weights unchanged"
        else:
            weights = result.weights
            var = ", ".join(f"{f.value} {v:.4g}" for f, v in result.variances.items())
            reason = (
                f"weights proportional to the variance of each factor across {len(names)} "
                f"models ({var})"
            )
        return Optimization(
            weights=weights,
            previous=self.weights,
            result=result,
            models=names,
            outcomes=outcomes,
            applied=False,
            reason=reason,
        )
