"""Routing tables: an immutable snapshot of everything needed to turn a request's model choice
into an ordered list of candidates, so the inference core routes a call synchronously instead of
asking the router actor per call. The router actor builds and publishes them (``RouterView``).

A request's ``model`` is a routing target:

* empty: the server's default model, or (with a policy, or no default) ``auto``;
* ``auto``: every permitted model of the call's kind, best score first under the request's
  policy (else ``routing.policy``), each later one a fallback;
* a route group's name (``[routing] groups``): its models in the listed order;
* a catalog model's name: that model alone.

The request's own fallbacks follow, without repeats. In ranked lists (``auto`` and groups) a model
whose breaker refuses every attempt right now (``health``) moves to the end, so calls go to
healthy models first and a recovered model is tried again as soon as its breaker lets a probe in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from aurea.config import ModelSpec, RoutingSettings
from aurea.errors import InvalidRequest, ModelDenied, UnknownModel
from aurea.routing._figures import figures_for
from aurea.routing._score import FactorScores, Figures, Weights, factor_scores, rank
from aurea.types import Policy

__all__ = [
    "AUTO",
    "POLICY_WEIGHTS",
    "Candidate",
    "Health",
    "RouterView",
    "RoutingTable",
    "Scored",
    "Selection",
    "default_weights",
    "permitted_names",
]

AUTO = "auto"

Health = Callable[[ModelSpec], bool]
"""True while ``model`` refuses every attempt (its breaker is open): synchronous and cheap."""

# A policy that optimizes one factor ranks by it alone; its ties fall to the balanced weights.
POLICY_WEIGHTS: Mapping[Policy, Weights] = {
    Policy.COST: Weights(cost=1.0, quality=0.0, latency=0.0),
    Policy.QUALITY: Weights(cost=0.0, quality=1.0, latency=0.0),
    Policy.LATENCY: Weights(cost=0.0, quality=0.0, latency=1.0),
}


def permitted_names(models: Iterable[str], settings: RoutingSettings) -> frozenset[str]:
    """The catalog models calls may use: not denied, and allowed when an allow list is set."""
    denied, allowed = set(settings.denied_models), set(settings.allowed_models)
    return frozenset(n for n in models if n not in denied and (not allowed or n in allowed))


def default_weights(settings: RoutingSettings) -> Weights:
    return Weights(
        cost=settings.cost_weight,
        quality=settings.quality_weight,
        latency=settings.latency_weight,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Candidate:
    model: ModelSpec
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Scored:
    """One model as the router sees it: its score under some weights, its factor scores, and
    whether the figures are measured (``live``) and it admits calls now (``available``)."""

    model: ModelSpec
    score: float
    factors: FactorScores
    live: bool
    available: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class Selection:
    """What ``RoutingTable.select`` chose: the ranked models, best first, and why."""

    policy: Policy
    weights: Weights  # the weights the ranking used
    ranked: tuple[Scored, ...]
    reason: str


def _short(name: str, limit: int = 80) -> str:
    """A name safe to echo in an error (grpc caps the size of status messages)."""
    return name if len(name) <= limit else f"{name[:limit]}... ({len(name)} characters)"


def _explain(s: Scored, w: Weights) -> str:
    f = s.factors
    text = (
        f"score {s.score:.3f} = cost {f.cost:.2f}x{w.cost:.2f} + quality {f.quality:.2f}"
        f"x{w.quality:.2f} + latency {f.latency:.2f}x{w.latency:.2f}"
    )
    return text if s.live else f"{text} (catalog priors)"


class RoutingTable:
    """One immutable view of the catalog, the allow/deny lists, the weights, every permitted
    model's scores and each policy's ranking.

    Denied models are left out of rankings, groups and of the names an error lists; enforcing
    the deny list on every attempt is the allow/deny guard's job.
    """

    __slots__ = (
        "_default",
        "_explicit",
        "_fallback",
        "_groups",
        "_health",
        "_models",
        "_permitted",
        "_policy",
        "_ranked",
        "_scored",
        "_settings",
        "weights",
    )

    def __init__(
        self,
        *,
        models: Mapping[str, ModelSpec],
        settings: RoutingSettings,
        weights: Weights | None = None,
        figures: Mapping[str, Figures] | None = None,
        health: Health | None = None,
    ) -> None:
        """``figures``: each model's measured figures (``routing._figures``); a model missing
        from it is scored on its catalog priors."""
        self._models = dict(models)
        self._settings = settings
        self._health = health
        self._policy = Policy(settings.policy)
        self.weights = weights if weights is not None else default_weights(settings)
        self._permitted = permitted_names(self._models, settings)
        self._explicit = {
            n: (Candidate(model=m, reason="requested explicitly"),) for n, m in self._models.items()
        }
        self._fallback = {
            n: Candidate(model=m, reason="requested fallback") for n, m in self._models.items()
        }
        self._scored: dict[str, Scored] = {}  # balanced, per permitted model
        self._ranked: dict[
            tuple[str, Policy], tuple[tuple[Scored, ...], tuple[Candidate, ...]]
        ] = {}
        for kind in sorted({m.kind for m in self._models.values()}):
            pool = sorted(
                (m for n, m in self._models.items() if m.kind == kind and n in self._permitted),
                key=lambda m: m.name,
            )
            self._rank_kind(pool, figures)
        self._default: dict[str, tuple[Candidate, ...]] = {}
        for kind, name in (
            ("chat", settings.default_model),
            ("embedding", settings.default_embedding_model),
        ):
            spec = self._models.get(name)
            if spec is not None and spec.kind == kind:
                self._default[kind] = (Candidate(model=spec, reason="server default model"),)
        self._groups: dict[str, tuple[Candidate, ...]] = {}
        for group, members in settings.groups:
            specs = [self._models[n] for n in members if n in self._permitted]
            self._groups[group] = tuple(
                Candidate(model=m, reason=self._group_reason(group, i, len(specs), m))
                for i, m in enumerate(specs)
            )

    def _rank_kind(self, pool: Sequence[ModelSpec], figures: Mapping[str, Figures] | None) -> None:
        if not pool:
            return
        priors = figures_for(pool, {}, {}, now=0.0, half_life_s=1.0, min_samples=1.0)
        figs = [(figures or {}).get(m.name) or prior for m, prior in zip(pool, priors, strict=True)]
        scores = factor_scores(figs)
        names = [m.name for m in pool]
        kind = pool[0].kind
        for m, f, s in zip(pool, figs, scores, strict=True):
            self._scored[m.name] = Scored(
                model=m, score=s.combine(self.weights), factors=s, live=f.live
            )
        n = len(pool)
        for policy in Policy:
            w = POLICY_WEIGHTS.get(policy, self.weights)
            order = rank(names, scores, w, self.weights)
            scored = tuple(
                Scored(
                    model=pool[i], score=scores[i].combine(w), factors=scores[i], live=figs[i].live
                )
                for i in order
            )
            where = f"by {policy.value} policy"
            cands = tuple(
                Candidate(
                    model=s.model,
                    reason=(f"best of {n} {where}" if j == 0 else f"#{j + 1} of {n} {where}")
                    + f": {_explain(s, w)}",
                )
                for j, s in enumerate(scored)
            )
            self._ranked[(kind, policy)] = (scored, cands)

    def _group_reason(self, group: str, i: int, n: int, m: ModelSpec) -> str:
        s = self._scored.get(m.name)
        where = f"route group {group!r}, #{i + 1} of {n}"
        return f"{where}: {_explain(s, self.weights)}" if s is not None else where

    # -- reading the table -------------------------------------------------------------------

    @property
    def models(self) -> Mapping[str, ModelSpec]:
        return self._models

    @property
    def groups(self) -> Mapping[str, tuple[Candidate, ...]]:
        return self._groups

    def permitted(self, name: str) -> bool:
        return name in self._permitted

    def permitted_models(self) -> list[ModelSpec]:
        return [m for n, m in self._models.items() if n in self._permitted]

    def scored(self, name: str) -> Scored | None:
        """A permitted model's score under the current weights (balanced), or None."""
        return self._scored.get(name)

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

    def _group(self, name: str, kind: str, field: str) -> tuple[Candidate, ...]:
        cands = self._groups[name]
        if cands and cands[0].model.kind != kind:
            raise InvalidRequest.field(
                field, f"route group {_short(name)!r} serves {cands[0].model.kind}, not {kind}"
            )
        return cands

    def _healthy_first(self, cands: tuple[Candidate, ...]) -> tuple[Candidate, ...]:
        health = self._health
        if health is None or len(cands) < 2:
            return cands
        for c in cands:
            if health(c.model):
                break
        else:
            return cands  # the usual case: nothing to move, nothing allocated
        up: list[Candidate] = []
        down: list[Candidate] = []
        for c in cands:
            (down if health(c.model) else up).append(c)
        return (*up, *down) if up else cands

    def route(
        self,
        model: str,
        kind: str = "chat",
        policy: Policy | None = None,
        fallbacks: tuple[str, ...] = (),
    ) -> tuple[Candidate, ...]:
        """The ordered candidates of one call (see the module docstring for ``model``)."""
        out: tuple[Candidate, ...]
        if not model and policy is None and kind in self._default:
            out = self._default[kind]
        elif not model or model == AUTO:
            policy = policy or self._policy
            out = self._healthy_first(self._ranked.get((kind, policy), ((), ()))[1])
        elif model in self._groups:
            out = self._healthy_first(self._group(model, kind, "model"))
        else:
            out = self._explicit.get(model) or ()
            if not out or out[0].model.kind != kind:
                self._lookup(model, kind, "model")  # raises the right error
        if fallbacks:
            seen = {c.model.name for c in out}
            more: list[Candidate] = []
            for i, name in enumerate(fallbacks):
                cand = self._fallback.get(name)
                if cand is None or cand.model.kind != kind:
                    self._lookup(name, kind, f"fallback_models[{i}]")  # raises the right error
                elif name not in seen:
                    seen.add(name)
                    more.append(cand)
            out = (*out, *more)
        if not out:
            raise ModelDenied(f"no {kind} model is permitted by this server's configuration")
        return out

    def select(self, target: str, kind: str = "chat", policy: Policy | None = None) -> Selection:
        """What a call to ``target`` would be routed to (``""`` means ``auto``), each candidate
        scored, best first; an explicit model comes first, then the others by the policy."""
        policy = policy or self._policy
        w = POLICY_WEIGHTS.get(policy, self.weights)
        scored, _ = self._ranked.get((kind, policy), ((), ()))
        ranked: Iterable[Scored]
        if not target or target == AUTO:
            ranked, reason = scored, f"best {kind} model by {policy.value} policy"
        elif target in self._groups:
            names = [c.model.name for c in self._group(target, kind, "target")]
            by_name = {s.model.name: s for s in scored}
            ranked = [by_name[n] for n in names if n in by_name]
            reason, w = f"first available model of route group {target!r}", self.weights
        else:
            spec = self._lookup(target, kind, "target")
            if spec.name not in self._permitted:
                raise ModelDenied(f"model {_short(target)!r} is not permitted on this server")
            ranked = sorted(scored, key=lambda s: s.model.name != spec.name)  # stable
            reason = "requested explicitly"
        out = [
            s if self._health is None or not self._health(s.model) else replace(s, available=False)
            for s in ranked
        ]
        if not out:
            raise ModelDenied(f"no {kind} model is permitted by this server's configuration")
        if target and target != AUTO and target not in self._groups:
            first, rest = out[:1], out[1:]
        else:
            first, rest = [], out
        # Like route(): models that refuse calls now go last.
        rest = [s for s in rest if s.available] + [s for s in rest if not s.available]
        return Selection(policy=policy, weights=w, ranked=(*first, *rest), reason=reason)


class RouterView:
    """Where the router publishes its latest table; readers take ``view.table`` (one attribute
    read: a reference swap is atomic for the single event loop that reads it)."""

    __slots__ = ("table",)

    def __init__(self, table: RoutingTable) -> None:
        self.table = table
