"""Routing tables: an immutable snapshot of everything needed to turn a request's model choice
into an ordered list of candidates, so the inference core routes a call synchronously instead of
asking the router actor per call. The router actor builds and publishes them (``RouterView``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import assert_never

from aurea.config import ModelSpec, RoutingSettings
from aurea.errors import InvalidRequest, ModelDenied, UnknownModel
from aurea.types import Policy

__all__ = ["Candidate", "RouterView", "RoutingTable", "prior_score"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    model: ModelSpec
    reason: str


def prior_score(m: ModelSpec, policy: Policy) -> float:
    """A model's score from its catalog priors alone (price and quality)."""
    price = (m.input_nanos_per_mtok + m.output_nanos_per_mtok) / 1e9  # USD per Mtok, both ways
    cheapness = 1.0 / (1.0 + price)
    match policy:
        case Policy.COST:
            return cheapness
        case Policy.QUALITY:
            return m.quality
        case Policy.LATENCY:
            return cheapness  # no latency stats yet: smaller (cheaper) models are faster
        case Policy.BALANCED:
            return 0.5 * cheapness + 0.5 * m.quality
        case _:
            assert_never(policy)


def _short(name: str, limit: int = 80) -> str:
    """A name safe to echo in an error (grpc caps the size of status messages)."""
    return name if len(name) <= limit else f"{name[:limit]}... ({len(name)} characters)"


class RoutingTable:
    """One immutable view of the catalog, the allow/deny lists and each policy's ranking.

    Denied models are left out of rankings and of the names an error lists; enforcing the deny
    list on every attempt is the allow/deny guard's job.
    """

    __slots__ = ("_models", "_permitted", "_ranked", "_settings")

    def __init__(
        self,
        *,
        models: Mapping[str, ModelSpec],
        settings: RoutingSettings,
        rankings: Mapping[tuple[str, Policy], Iterable[ModelSpec]] | None = None,
    ) -> None:
        self._models = dict(models)
        self._settings = settings
        denied, allowed = set(settings.denied_models), set(settings.allowed_models)
        self._permitted = frozenset(
            n for n in self._models if n not in denied and (not allowed or n in allowed)
        )
        ranked: dict[tuple[str, Policy], tuple[Candidate, ...]] = {}
        kinds = {m.kind for m in self._models.values()}
        for kind in kinds:
            pool = [m for n, m in self._models.items() if m.kind == kind and n in self._permitted]
            for policy in Policy:
                if rankings is not None and (kind, policy) in rankings:
                    order = list(rankings[(kind, policy)])
                else:
                    order = sorted(pool, key=lambda m: prior_score(m, policy), reverse=True)
                reason = f"best by {policy.value} policy"
                ranked[(kind, policy)] = tuple(Candidate(model=m, reason=reason) for m in order)
        self._ranked = ranked

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return self._models

    def permitted(self, name: str) -> bool:
        return name in self._permitted

    def permitted_models(self) -> list[ModelSpec]:
        return [m for n, m in self._models.items() if n in self._permitted]

    def _lookup(self, name: str, kind: str, field: str) -> ModelSpec:
        spec = self._models.get(name)
        if spec is None:
            ok = self._permitted
            known = ", ".join(
                sorted(n for n, m in self._models.items() if m.kind == kind and n in ok)
            )
            raise UnknownModel(
                f"model {_short(name)!r} is not in the catalog; known: {known}", field
            )
        if spec.kind != kind:
            raise InvalidRequest.field(
                field, f"model {_short(name)!r} serves {spec.kind}, not {kind}"
            )
        return spec

    def route(
        self,
        model: str,
        kind: str = "chat",
        policy: Policy | None = None,
        fallbacks: tuple[str, ...] = (),
    ) -> tuple[Candidate, ...]:
        """The ordered candidates of one call. ``model`` empty: the server default, or every
        permitted model ranked by ``policy``; then the request's fallbacks (no repeats)."""
        out: list[Candidate]
        if model:
            spec = self._lookup(model, kind, "model")
            out = [Candidate(model=spec, reason="requested explicitly")]
        elif policy is None and (kind != "chat" or self._settings.default_model):
            default = (
                self._settings.default_model
                if kind == "chat"
                else self._settings.default_embedding_model
            )
            spec = self._lookup(default, kind, "model")
            out = [Candidate(model=spec, reason="server default model")]
        else:
            out = list(self._ranked.get((kind, policy or Policy(self._settings.policy)), ()))
        if fallbacks:
            seen = {c.model.name for c in out}
            for i, name in enumerate(fallbacks):
                spec = self._lookup(name, kind, f"fallback_models[{i}]")
                if spec.name not in seen:
                    seen.add(spec.name)
                    out.append(Candidate(model=spec, reason="requested fallback"))
        if not out:
            raise ModelDenied(f"no {kind} model is permitted by this server's configuration")
        return tuple(out)


class RouterView:
    """Where the router publishes its latest table; readers take ``view.table`` (one attribute
    read: a reference swap is atomic for the single event loop that reads it)."""

    __slots__ = ("table",)

    def __init__(self, table: RoutingTable) -> None:
        self.table = table
