"""The Router actor's protocol (``aurea.actors.router``): the asks it answers, their replies,
and the messages it posts to itself."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from aurea.config import ModelSpec
from aurea.routing import Candidate, Weights
from aurea.routing._state import ModelReport, Optimization
from aurea.runtime import Ask
from aurea.stores import ModelStats, Outcome
from aurea.types import Policy

__all__ = [
    "GetWeights",
    "ListModels",
    "ListStats",
    "OptimizeWeights",
    "RecordOutcome",
    "Route",
    "RouterMsg",
    "SetWeights",
    "WeightsChange",
    "WeightsView",
]


# -- replies -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightsView:
    weights: Weights
    defaults: bool  # no weights were ever set or optimized: the configured ones apply


@dataclass(frozen=True, slots=True, kw_only=True)
class WeightsChange:
    weights: Weights
    previous: Weights


@dataclass(frozen=True, slots=True, kw_only=True)
class Route(Ask[tuple[Candidate, ...]]):
    """Ask for the candidates of one call. ``model`` empty = choose by ``policy``."""

    model: str
    kind: str = "chat"  # chat | embedding
    policy: Policy | None = None
    fallbacks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ListModels(Ask[list[ModelSpec]]):
    """Ask for the catalog entries that may be served."""


@dataclass(frozen=True, slots=True, kw_only=True)
class GetWeights(Ask[WeightsView]):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class SetWeights(Ask[WeightsChange]):
    """Replace the weights (stored before the reply). Invalid weights: ``InvalidRequest``."""

    weights: Weights


@dataclass(frozen=True, slots=True, kw_only=True)
class OptimizeWeights(Ask[Optimization]):
    """Weights proportional to each factor's variance across the chat models with live
    figures; ``FailedPrecondition`` with fewer than two such models."""

    apply: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordOutcome(Ask[ModelReport]):
    """An outcome observed outside Aurea (validated by the caller; the model must be in the
    catalog). ``first_token_s``: successes only, when the answer began."""

    model: str
    outcome: Outcome
    first_token_s: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ListStats(Ask[list[ModelReport]]):
    """Every catalog model's report by name, or only those of ``models`` (unknown skipped)."""

    models: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class _Recorded:
    """Rows the store returned for new outcomes (posted by the pump or a RecordOutcome)."""

    rows: tuple[ModelStats, ...]
    ttfts: tuple[tuple[str, float], ...] = ()
    from_pump: bool = False
    # The store's weights as the pump read them back, and the router's weights epoch before the
    # read: weights set meanwhile (a later epoch) win over what the read saw.
    weights: Mapping[str, float] | None = None
    epoch: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class _WeightsStored:
    weights: Weights


@dataclass(frozen=True, slots=True, kw_only=True)
class _AutoOptimize:
    """The ``routing.optimize_interval_s`` timer fired."""


RouterMsg = (
    Route
    | ListModels
    | GetWeights
    | SetWeights
    | OptimizeWeights
    | RecordOutcome
    | ListStats
    | _Recorded
    | _WeightsStored
    | _AutoOptimize
)
