"""The Router actor: turns a request's model choice into an ordered list of candidates.

It owns the model catalog view and the routing policy. Today it scores models by their catalog
priors; later capabilities feed it live stats and learned weights. Denied models are left out of
policy rankings and of the names it lists; enforcing the deny list on every attempt is the
allow/deny guard's job (``aurea.inference.guards``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, assert_never

from aurea.config import ModelSpec, RoutingSettings
from aurea.errors import InvalidRequest, ModelDenied, UnknownModel
from aurea.runtime import Actor, Ask
from aurea.types import Policy

__all__ = ["Candidate", "ListModels", "Policy", "Route", "Router", "RouterMsg"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    model: ModelSpec
    reason: str


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


RouterMsg = Route | ListModels


class Router(Actor[RouterMsg]):
    def __init__(self, *, models: Mapping[str, ModelSpec], settings: RoutingSettings) -> None:
        self._models = dict(models)
        self._settings = settings
        self._denied = set(settings.denied_models)
        self._allowed = set(settings.allowed_models)

    def _permitted(self, name: str) -> bool:
        return name not in self._denied and (not self._allowed or name in self._allowed)

    def _lookup(self, name: str, kind: str, field: str) -> ModelSpec:
        spec = self._models.get(name)
        name = _short(name)
        if spec is None:
            # Only names a caller may use: the deny list itself is not the caller's business.
            known = ", ".join(
                sorted(n for n, m in self._models.items() if m.kind == kind and self._permitted(n))
            )
            raise UnknownModel(f"model {name!r} is not in the catalog; known: {known}", field)
        if spec.kind != kind:
            raise InvalidRequest.field(field, f"model {name!r} serves {spec.kind}, not {kind}")
        return spec

    async def receive(self, msg: RouterMsg) -> Any:
        match msg:
            case Route():
                return self._route(msg)
            case ListModels():
                return [m for n, m in self._models.items() if self._permitted(n)]
            case _:
                assert_never(msg)

    def _route(self, msg: Route) -> tuple[Candidate, ...]:
        out: list[Candidate] = []
        if msg.model:
            spec = self._lookup(msg.model, msg.kind, "model")
            out.append(Candidate(model=spec, reason="requested explicitly"))
        elif msg.policy is None and (msg.kind != "chat" or self._settings.default_model):
            default = (
                self._settings.default_model
                if msg.kind == "chat"
                else self._settings.default_embedding_model
            )
            spec = self._lookup(default, msg.kind, "model")
            out.append(Candidate(model=spec, reason="server default model"))
        else:
            policy = msg.policy or Policy(self._settings.policy)
            pool = [m for n, m in self._models.items() if m.kind == msg.kind and self._permitted(n)]
            for m in sorted(pool, key=lambda m: _score(m, policy), reverse=True):
                out.append(Candidate(model=m, reason=f"best by {policy.value} policy"))
        seen = {c.model.name for c in out}
        for i, name in enumerate(msg.fallbacks):
            spec = self._lookup(name, msg.kind, f"fallback_models[{i}]")
            if spec.name not in seen:
                seen.add(spec.name)
                out.append(Candidate(model=spec, reason="requested fallback"))
        if not out:
            raise ModelDenied(f"no {msg.kind} model is permitted by this server's configuration")
        return tuple(out)


def _short(name: str, limit: int = 80) -> str:
    """A name safe to echo in an error (grpc caps the size of status messages)."""
    return name if len(name) <= limit else f"{name[:limit]}... ({len(name)} characters)"


def _score(m: ModelSpec, policy: Policy) -> float:
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
